package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
)

// producerStage writes record batches to Kafka and publishes the LSN up to
// which Kafka holds everything.
//
// Each batch is one unit: produce every record, flush, and only then
// publish the batch's commit LSN. The unit is where a Kafka transaction
// (BeginTransaction ... EndTransaction with the checkpoint record) goes.
type producerStage struct {
	client    *kgo.Client
	committed *atomic.Uint64
	log       *slog.Logger

	mu       sync.Mutex
	firstErr error
}

func (s *producerStage) run(ctx context.Context, in <-chan *recordBatch) error {
	for b := range in {
		if err := s.write(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

func (s *producerStage) write(ctx context.Context, b *recordBatch) error {
	promise := s.promise // one method value per batch, not per record
	for i := range b.recs {
		s.client.Produce(ctx, &b.recs[i], promise)
	}
	if err := s.client.Flush(ctx); err != nil {
		return fmt.Errorf("flushing %d records: %w", len(b.recs), err)
	}
	s.mu.Lock()
	err := s.firstErr
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if b.commitLSN != 0 {
		// Invariant: the commit LSN is published only after Kafka
		// acknowledged every record of the transactions before it, and
		// only forward.
		for {
			cur := s.committed.Load()
			if uint64(b.commitLSN) <= cur || s.committed.CompareAndSwap(cur, uint64(b.commitLSN)) {
				break
			}
		}
	}
	s.log.Debug("batch written", "rows", len(b.recs), "bytes", len(b.slab), "lsn", b.commitLSN.String(), "partial", b.partial)
	return nil
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

// ProduceError is a record Kafka refused.
type ProduceError struct {
	Topic string
	Err   error
}

func (e *ProduceError) Error() string {
	return fmt.Sprintf("producing to topic %q: %v", e.Topic, e.Err)
}

func (e *ProduceError) Unwrap() error { return e.Err }
