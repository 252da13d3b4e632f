package pgsrc

import (
	"context"
	"fmt"
	"time"
)

// snapshotRetry is how long BeginConsistent waits before trying again.
const snapshotRetry = 5 * time.Millisecond

// BeginConsistent opens a REPEATABLE READ transaction on the scanner's
// connection, so the reads until End share one snapshot, and makes sure
// that snapshot sees every transaction already committed: a transaction
// writes its commit to the WAL (and the commit log) a moment before it
// becomes visible to other sessions, and for much longer when it waits for
// a synchronous standby. A snapshot taken in that moment would miss a
// change the replication stream has already delivered. So while the
// snapshot counts as in progress a transaction the commit log says is
// committed, it is dropped and taken again.
func (s *Scanner) BeginConsistent(ctx context.Context) error {
	for {
		if _, err := s.conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
			return fmt.Errorf("starting a backfill snapshot: %w", err)
		}
		// The first statement of the transaction takes its snapshot.
		var racing int
		err := s.conn.QueryRow(ctx, `SELECT count(*) FROM txid_snapshot_xip(txid_current_snapshot()) x
			WHERE txid_status(x) = 'committed'`).Scan(&racing)
		if err != nil {
			_, _ = s.conn.Exec(context.WithoutCancel(ctx), "ROLLBACK") // the error above is the one to report
			return fmt.Errorf("taking a backfill snapshot: %w", err)
		}
		if racing == 0 {
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

// End ends the transaction BeginConsistent opened.
func (s *Scanner) End(ctx context.Context) error {
	if _, err := s.conn.Exec(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("ending a backfill snapshot: %w", err)
	}
	return nil
}
