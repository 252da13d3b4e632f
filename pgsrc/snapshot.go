package pgsrc

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
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

// racingSQL reads the transaction's snapshot, which it takes when it is
// the transaction's first statement: its xmax and in-progress xids
// (modulo 2^32, the list comma-separated), and whether the commit log
// says one of those is committed.
const racingSQL = `WITH snap AS (SELECT txid_current_snapshot() AS s)
	SELECT txid_snapshot_xmax(s) % 4294967296,
		array_to_string(ARRAY(SELECT x % 4294967296 FROM txid_snapshot_xip(s) x), ','),
		EXISTS (SELECT FROM txid_snapshot_xip(s) x WHERE txid_status(x) = 'committed')
	FROM snap`

// racing reports whether the transaction's snapshot, which its first
// statement takes, counts as in progress a transaction that is committed
// (see raced).
func (s *Scanner) racing(ctx context.Context, delivered []uint32) (bool, error) {
	var (
		xmax      int64
		xip       string
		committed bool
	)
	if err := s.conn.QueryRow(ctx, racingSQL).Scan(&xmax, &xip, &committed); err != nil {
		return false, err
	}
	return raced(strconv.FormatInt(xmax, 10), xip, committed, delivered)
}

// raced reports whether a snapshot of xmax and in-progress xids xip (as
// racingSQL prints them) counts as in progress a transaction that is
// committed: one in delivered (at or past xmax, or in xip), or one in xip
// that the commit log says is committed. Xids are compared modulo 2^32,
// in PostgreSQL's circular order.
func raced(xmaxText, xipText string, committed bool, delivered []uint32) (bool, error) {
	if committed {
		return true, nil
	}
	xmax, err := strconv.ParseUint(xmaxText, 10, 32)
	if err != nil {
		return false, fmt.Errorf("reading a snapshot's xmax %q: %w", xmaxText, err)
	}
	var xip []uint32
	if xipText != "" {
		for _, f := range strings.Split(xipText, ",") {
			x, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				return false, fmt.Errorf("reading a snapshot's in-progress xids %q: %w", xipText, err)
			}
			xip = append(xip, uint32(x))
		}
	}
	for _, d := range delivered {
		if int32(d-uint32(xmax)) >= 0 || slices.Contains(xip, d) {
			return true, nil
		}
	}
	return false, nil
}

// ScanChunkConsistent is BeginConsistent, ScanChunk and End in one round
// trip: the transaction's opening, the check of its snapshot, the chunk's
// read and the commit go to the server together. When the snapshot races
// a commit (see BeginConsistent), the rows read are dropped before fn sees
// them, and it tries again after snapshotRetry. The rows, their lifetime
// and fn's errors are as ScanChunk's.
func (s *Scanner) ScanChunkConsistent(ctx context.Context, delivered []uint32, t *Table, o *KeyOrder, after, upTo [][]byte, binary []bool, fn func(row []Value) error) (rows int, err error) {
	if err := s.checkOrder(t, o); err != nil {
		return 0, err
	}
	sql := s.chunkSQL(t, o, after, upTo)
	formats := s.resultFormats(false, binary)
	for {
		var batch pgconn.Batch
		batch.ExecParams("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", nil, nil, nil, nil)
		batch.ExecParams(racingSQL, nil, nil, nil, nil)
		batch.ExecParams(sql, s.params, nil, nil, formats)
		batch.ExecParams("COMMIT", nil, nil, nil, nil)
		mrr := s.conn.PgConn().ExecBatch(ctx, &batch)
		rows, racing, step, fnErr := s.readChunkBatch(mrr, delivered, binary, fn)
		err := mrr.Close()
		if err != nil && s.conn.PgConn().TxStatus() != 'I' {
			_, _ = s.conn.Exec(context.WithoutCancel(ctx), "ROLLBACK") // the error is the one to report
		}
		switch {
		case fnErr != nil:
			return rows, fnErr
		case err != nil && step == chunkStepScan:
			return rows, s.scanError("reading a chunk of", t.Ref(), err)
		case err != nil && step == chunkStepCommit:
			return rows, fmt.Errorf("ending a backfill snapshot: %w", err)
		case err != nil:
			return rows, fmt.Errorf("taking a backfill snapshot: %w", err)
		case !racing:
			return rows, nil
		}
		tm := time.NewTimer(snapshotRetry)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			return 0, context.Cause(ctx)
		}
	}
}

// The statements of ScanChunkConsistent's batch.
const (
	chunkStepBegin = iota
	chunkStepSnapshot
	chunkStepScan
	chunkStepCommit
)

// readChunkBatch reads the results of ScanChunkConsistent's batch: the
// snapshot's check, then the chunk's rows, which it hands fn unless the
// snapshot races a commit. step is the statement it read last.
func (s *Scanner) readChunkBatch(mrr *pgconn.MultiResultReader, delivered []uint32, binary []bool, fn func(row []Value) error) (rows int, racing bool, step int, fnErr error) {
	for step = chunkStepBegin; step <= chunkStepCommit; step++ {
		if !mrr.NextResult() {
			return rows, racing, step, nil
		}
		rr := mrr.ResultReader()
		switch step {
		case chunkStepSnapshot:
			if rr.NextRow() {
				v := rr.Values()
				if len(v) != 3 {
					return rows, racing, step, fmt.Errorf("a snapshot's check returned %d columns, want 3", len(v))
				}
				var err error
				if racing, err = raced(string(v[0]), string(v[1]), string(v[2]) == "t", delivered); err != nil {
					return rows, racing, step, err
				}
			}
		case chunkStepScan:
			if !racing {
				if rows, fnErr = s.readRows(rr, false, binary, func(_ []byte, row []Value) error { return fn(row) }); fnErr != nil {
					return rows, racing, step, fnErr
				}
			}
		}
		if _, err := rr.Close(); err != nil {
			return rows, racing, step, nil // mrr.Close reports it
		}
	}
	return rows, racing, chunkStepCommit, nil
}

// End ends the transaction BeginConsistent opened.
func (s *Scanner) End(ctx context.Context) error {
	if _, err := s.conn.Exec(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("ending a backfill snapshot: %w", err)
	}
	return nil
}
