package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/offsets"
)

// endTxnTimeout bounds EndTransaction, which runs even when ctx is done.
const endTxnTimeout = 30 * time.Second

// producerStage writes record batches to Kafka in transactions, each with
// the checkpoint of what it holds as its last record, and publishes the
// checkpoint's LSN once the transaction is committed.
//
// A Kafka transaction gathers batches for kafka.transactionWindow and then
// commits, but only between two PostgreSQL transactions, unless it holds
// kafka.maxTransactionRecords records already: then it commits inside one,
// and the checkpoint records how far into it (offsets.Partial).
type producerStage struct {
	client       *kgo.Client
	committed    *atomic.Uint64
	cp           *offsets.Checkpoint // the checkpoint committed last
	offsetsTopic string
	name         string
	window       time.Duration
	maxRecords   int
	log          *slog.Logger
	metrics      *Metrics

	mu       sync.Mutex
	firstErr error
}

func (s *producerStage) run(ctx context.Context, in <-chan *recordBatch) error {
	for {
		var b *recordBatch
		select {
		case b = <-in:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if b == nil {
			return nil // upstream drained: soft stop
		}
		more, err := s.transaction(ctx, in, b)
		if err != nil || !more {
			return err
		}
	}
}

// transaction runs one Kafka transaction from b on. more is false once in
// is closed.
func (s *producerStage) transaction(ctx context.Context, in <-chan *recordBatch, b *recordBatch) (more bool, err error) {
	next := s.cp.Clone()
	if next == nil {
		next = &offsets.Checkpoint{}
	}
	if len(b.recs) == 0 && !b.partial && !b.hold && b.tables == nil && b.commitLSN <= next.LSN {
		return true, nil // nothing new to write or to checkpoint
	}
	if err := s.client.BeginTransaction(); err != nil {
		return false, s.classify(fmt.Errorf("beginning a Kafka transaction: %w", err))
	}
	defer func() {
		if err != nil {
			s.abort(err)
		}
	}()
	promise := s.promise // one method value per transaction, not per record
	records, batches := 0, 0
	hold, restart := false, false
	add := func(b *recordBatch) {
		for i := range b.recs {
			s.client.Produce(ctx, &b.recs[i], promise)
		}
		records += len(b.recs)
		batches++
		if b.commitLSN > next.LSN {
			next.LSN = b.commitLSN
			if !b.commitTime.IsZero() {
				next.CommitTime = b.commitTime
			}
		}
		next.Partial = nil
		if b.partial {
			next.Partial = &offsets.Partial{CommitLSN: b.tx.commitLSN, Xid: b.tx.xid, Changes: b.tx.changes}
		}
		if b.tables != nil {
			if next.Tables == nil {
				next.Tables = make(map[string]offsets.TableState, len(b.tables))
			}
			for t, st := range b.tables {
				next.Tables[t] = st
			}
		}
		hold = b.hold
		restart = restart || b.restart
	}
	add(b)
	more = true
	window := time.NewTimer(s.window)
	defer window.Stop()
	windowDone := false
gather:
	for records < s.maxRecords || hold {
		// A backfill chunk's window (hold) stays in one transaction,
		// whatever its size.
		boundary := next.Partial == nil && !hold
		if boundary && windowDone {
			break
		}
		var timeout <-chan time.Time
		if boundary {
			timeout = window.C // inside a transaction: wait for more, whatever the time
		}
		select {
		case nb, ok := <-in:
			if !ok {
				more = false
				break gather
			}
			add(nb)
		case <-timeout:
			windowDone = true
		case <-ctx.Done():
			return false, context.Cause(ctx)
		}
	}
	if (next.Partial != nil || hold) && !more {
		return false, errors.New("the stream ended inside a PostgreSQL transaction")
	}
	if err := s.commit(ctx, next, records, batches); err != nil {
		return false, err
	}
	if restart {
		return false, errRestart
	}
	return more, nil
}

// commit writes the checkpoint, flushes, and commits the transaction; then
// it publishes the checkpoint's LSN.
func (s *producerStage) commit(ctx context.Context, next *offsets.Checkpoint, records, batches int) error {
	next.UpdatedAt = time.Now()
	rec, err := next.Record(s.offsetsTopic, s.name)
	if err != nil {
		return err
	}
	s.client.Produce(ctx, rec, s.promise)
	if err := s.client.Flush(ctx); err != nil {
		return fmt.Errorf("flushing %d records: %w", records+1, err)
	}
	s.mu.Lock()
	err = s.firstErr
	s.mu.Unlock()
	if err != nil {
		return s.classify(err)
	}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endTxnTimeout)
	defer cancel()
	if err := s.client.EndTransaction(ectx, kgo.TryCommit); err != nil {
		return s.classify(fmt.Errorf("committing a Kafka transaction of %d records up to LSN %s: %w", records, next.LSN, err))
	}
	// Invariant: the LSN is published only once Kafka has committed the
	// transaction holding every record before it and the checkpoint saying
	// so; and only forward.
	s.cp = next
	s.metrics.transactions.Inc()
	s.metrics.committedLSN.Set(float64(next.LSN))
	s.metrics.commitTime.SetToCurrentTime()
	storeMax(s.committed, uint64(next.LSN))
	s.log.Debug("transaction committed", "rows", records, "batches", batches, "lsn", next.LSN.String(), "partial", next.Partial != nil)
	return nil
}

// abort ends the open transaction without committing it, after err.
func (s *producerStage) abort(cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), endTxnTimeout)
	defer cancel()
	if err := s.client.AbortBufferedRecords(ctx); err != nil {
		s.log.Warn("dropping the records of the aborted transaction", "err", err, "cause", cause)
		return
	}
	if err := s.client.EndTransaction(ctx, kgo.TryAbort); err != nil && !errors.Is(cause, ErrFenced) {
		s.log.Warn("aborting the Kafka transaction", "err", err, "cause", cause)
		return
	}
	s.metrics.aborted.Inc()
}

func (s *producerStage) promise(r *kgo.Record, err error) {
	if err == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.firstErr == nil {
		s.firstErr = &ProduceError{Topic: r.Topic, Err: err}
	}
}

func (s *producerStage) classify(err error) error {
	if isFenced(err) {
		return fmt.Errorf("%w: another pgkafka with name %q (the transactional id) started; this one stops, having confirmed nothing past its last commit: %v", ErrFenced, s.name, err)
	}
	return err
}

// ProduceError is a record Kafka refused.
type ProduceError struct {
	Topic string
	Err   error
}

func (e *ProduceError) Error() string {
	return fmt.Sprintf("producing to topic %q: %v", e.Topic, e.Err)
}

func (e *ProduceError) Unwrap() error { return e.Err }
