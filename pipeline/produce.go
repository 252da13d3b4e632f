package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/offsets"
)

// endTxnTimeout bounds EndTransaction, which runs even when ctx is done.
const endTxnTimeout = 30 * time.Second

// producerStage writes record batches to Kafka in transactions, each with
// the checkpoint of what it holds as its last record, and publishes the
// checkpoint's LSN once the transaction is committed.
//
// A Kafka transaction gathers the batches that wait, for at most
// kafka.transactionWindow, and commits as soon as none waits, but only
// between two PostgreSQL transactions, unless it holds
// kafka.maxTransactionRecords records already: then it commits inside one,
// and the checkpoint records how far into it (offsets.Partial).
type producerStage struct {
	client    *kgo.Client
	committed *atomic.Uint64
	// lastCommitted is the checkpoint committed last: at first, the one
	// the session starts from.
	lastCommitted *offsets.Checkpoint
	offsetsTopic  string
	name          string
	window        time.Duration
	maxRecords    int
	log           *slog.Logger
	metrics       *Metrics
	// refused classifies an error refusing the producer's epoch: fenced,
	// or aborted by the broker (Runner.refused).
	refused func(context.Context, error) error

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

// kafkaTxn is what the open Kafka transaction holds so far.
type kafkaTxn struct {
	// pending is the checkpoint it is to commit.
	pending          *offsets.Checkpoint
	records, batches int
	// inWindow is its last batch's: a backfill chunk's window is open,
	// and the transaction must not commit before its high watermark,
	// whatever its size.
	inWindow bool
	// restart is set once a batch asks for a new session after the commit.
	restart bool
	// promise is the producer's, one method value per transaction, not
	// per record.
	promise func(*kgo.Record, error)
}

// transaction runs one Kafka transaction from b on. more is false once in
// is closed.
func (s *producerStage) transaction(ctx context.Context, in <-chan *recordBatch, b *recordBatch) (more bool, err error) {
	pending := s.lastCommitted.Clone()
	if pending == nil {
		pending = &offsets.Checkpoint{}
	}
	if len(b.recs) == 0 && !b.partial && !b.inWindow && b.tables == nil && b.commitLSN <= pending.LSN {
		return true, nil // nothing new to write or to checkpoint
	}
	if err := s.client.BeginTransaction(); err != nil {
		return false, s.refused(ctx, fmt.Errorf("beginning a Kafka transaction: %w", err))
	}
	defer func() {
		if err != nil {
			s.abort(err)
		}
	}()
	tx := &kafkaTxn{pending: pending, promise: s.promise}
	s.add(ctx, tx, b)
	if more, err = s.gather(ctx, in, tx); err != nil {
		return false, err
	}
	if (tx.pending.Partial != nil || tx.inWindow) && !more {
		return false, errors.New("the stream ended inside a PostgreSQL transaction")
	}
	if err := s.commit(ctx, tx.pending, tx.records, tx.batches); err != nil {
		return false, err
	}
	if tx.restart {
		return false, errRestart
	}
	return more, nil
}

// gather adds to tx the batches that wait, at most kafka.transactionWindow
// after tx began, then those up to the end of the PostgreSQL transaction
// in progress. Between two PostgreSQL transactions it commits as soon as
// no batch waits: what comes while this transaction commits makes the
// next one, so that transactions are small under a light load (a change
// is visible to read_committed consumers at once) and large under a heavy
// one. It stops at kafka.maxTransactionRecords records, even inside a
// PostgreSQL transaction, but never inside a backfill chunk's window. more
// is false once in is closed.
func (s *producerStage) gather(ctx context.Context, in <-chan *recordBatch, tx *kafkaTxn) (more bool, err error) {
	window := time.NewTimer(s.window)
	defer window.Stop()
	for tx.records < s.maxRecords || tx.inWindow {
		if tx.pending.Partial == nil && !tx.inWindow {
			// A boundary: take a batch that waits, while the window lasts.
			select {
			case <-window.C:
				return true, nil
			default:
			}
			select {
			case nb, ok := <-in:
				if !ok {
					return false, nil
				}
				s.add(ctx, tx, nb)
				continue
			default:
				return true, nil
			}
		}
		// Inside a PostgreSQL transaction, or a backfill chunk's window
		// (which stays in one transaction whatever its size): wait for
		// more, whatever the time.
		select {
		case nb, ok := <-in:
			if !ok {
				return false, nil
			}
			s.add(ctx, tx, nb)
		case <-ctx.Done():
			return false, context.Cause(ctx)
		}
	}
	return true, nil
}

// add produces b's records in tx and moves tx's checkpoint past b.
func (s *producerStage) add(ctx context.Context, tx *kafkaTxn, b *recordBatch) {
	for i := range b.recs {
		s.client.Produce(ctx, &b.recs[i], tx.promise)
	}
	tx.records += len(b.recs)
	tx.batches++
	pending := tx.pending
	if b.commitLSN > pending.LSN {
		pending.LSN = b.commitLSN
		if !b.commitTime.IsZero() {
			pending.CommitTime = b.commitTime
		}
	}
	pending.Partial = nil
	if b.partial {
		pending.Partial = &offsets.Partial{CommitLSN: b.tx.commitLSN, Xid: b.tx.xid, Changes: b.tx.changes, Events: b.tx.events}
	}
	if b.tables != nil {
		if pending.Tables == nil {
			pending.Tables = make(map[string]offsets.TableState, len(b.tables))
		}
		for t, st := range b.tables {
			pending.Tables[t] = st
		}
	}
	tx.inWindow = b.inWindow
	tx.restart = tx.restart || b.restart
}

// commit writes the checkpoint, flushes, and commits the transaction; then
// it publishes the checkpoint's LSN.
func (s *producerStage) commit(ctx context.Context, pending *offsets.Checkpoint, records, batches int) error {
	pending.UpdatedAt = time.Now()
	rec, err := pending.Record(s.offsetsTopic, s.name)
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
		return s.refused(ctx, err)
	}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endTxnTimeout)
	defer cancel()
	if err := s.client.EndTransaction(ectx, kgo.TryCommit); err != nil {
		return s.refused(ctx, fmt.Errorf("committing a Kafka transaction of %d records up to LSN %s: %w", records, pending.LSN, err))
	}
	// Invariant: the LSN is published only once Kafka has committed the
	// transaction holding every record before it and the checkpoint saying
	// so; and only forward.
	s.lastCommitted = pending
	s.metrics.transactions.Inc()
	s.metrics.committedLSN.Set(float64(pending.LSN))
	s.metrics.commitTime.SetToCurrentTime()
	storeMax(s.committed, uint64(pending.LSN))
	s.log.Debug("transaction committed", "rows", records, "batches", batches, "lsn", pending.LSN.String(), "partial", pending.Partial != nil)
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
		s.firstErr = &ProduceError{Topic: r.Topic, Bytes: len(r.Key) + len(r.Value), Err: err}
	}
}

// ProduceError is a record Kafka refused.
type ProduceError struct {
	Topic string
	Bytes int // the record's key and value
	Err   error
}

func (e *ProduceError) Error() string {
	if errors.Is(e.Err, kerr.MessageTooLarge) {
		return fmt.Sprintf("producing a record of %d bytes to topic %q: %v: the broker's message.max.bytes or the topic's max.message.bytes is below it; "+
			"raise them, or lower kafka.maxRecordBytes to them so that kafka.oversizedRecords decides", e.Bytes, e.Topic, e.Err)
	}
	return fmt.Sprintf("producing to topic %q: %v", e.Topic, e.Err)
}

func (e *ProduceError) Unwrap() error { return e.Err }
