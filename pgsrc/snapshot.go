package pgsrc

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// snapshotRetry is how long BeginConsistent waits before trying again.
const snapshotRetry = 5 * time.Millisecond

// BeginConsistent opens a REPEATABLE READ transaction on the scanner's
// connection, so the reads until End share one snapshot, and makes sure
// that snapshot sees every transaction whose commit the replication stream
// has already delivered. A commit reaches the WAL, and so the stream,
// before it marks the commit log, and marks the commit log before it
// becomes visible to other sessions (for much longer when it then waits
// for a synchronous standby): a snapshot taken in those moments counts the
// transaction as in progress, and would miss a change the stream has
// delivered. So the snapshot is dropped and taken again while it counts as
// in progress a transaction that delivered lists (the xids, modulo 2^32,
// whose commits the stream delivered before the chunk's low watermark) or
// that the commit log says is committed.
func (s *Scanner) BeginConsistent(ctx context.Context, delivered []uint32) error {
	for {
		if _, err := s.conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
			return fmt.Errorf("starting a backfill snapshot: %w", err)
		}
		// The first statement of the transaction takes its snapshot.
		racing, err := s.racing(ctx, delivered)
		if err != nil {
			_, _ = s.conn.Exec(context.WithoutCancel(ctx), "ROLLBACK") // the error above is the one to report
			return fmt.Errorf("taking a backfill snapshot: %w", err)
		}
		if !racing {
			return nil
		}
		if _, err := s.conn.Exec(ctx, "ROLLBACK"); err != nil {
			return fmt.Errorf("retaking a backfill snapshot: %w", err)
		}
		t := time.NewTimer(snapshotRetry)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		}
	}
}

// racing reports whether the transaction's snapshot, which its first
// statement takes, counts as in progress a transaction that is committed:
// one in delivered (at or past the snapshot's xmax, or in its in-progress
// list), or one in the list that the commit log says is committed. Xids
// are compared modulo 2^32, in PostgreSQL's circular order.
func (s *Scanner) racing(ctx context.Context, delivered []uint32) (bool, error) {
	var (
		xmax      int64
		xip       []int64
		committed bool
	)
	err := s.conn.QueryRow(ctx, `WITH snap AS (SELECT txid_current_snapshot() AS s)
		SELECT txid_snapshot_xmax(s) % 4294967296,
			ARRAY(SELECT x % 4294967296 FROM txid_snapshot_xip(s) x),
			EXISTS (SELECT FROM txid_snapshot_xip(s) x WHERE txid_status(x) = 'committed')
		FROM snap`).Scan(&xmax, &xip, &committed)
	if err != nil || committed {
		return committed, err
	}
	for _, d := range delivered {
		if int32(d-uint32(xmax)) >= 0 || slices.Contains(xip, int64(d)) {
			return true, nil
		}
	}
	return false, nil
}

// End ends the transaction BeginConsistent opened.
func (s *Scanner) End(ctx context.Context) error {
	if _, err := s.conn.Exec(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("ending a backfill snapshot: %w", err)
	}
	return nil
}
