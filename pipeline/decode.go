package pipeline

import (
	"context"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// decoderStage decodes walBatches into changeBatches. It owns the relation
// cache, so it must see every message in WAL order.
type decoderStage struct {
	dec *pgsrc.Decoder
}

func (s *decoderStage) run(ctx context.Context, in <-chan *walBatch, out chan<- *changeBatch) error {
	defer close(out)
	for b := range in {
		cb := &changeBatch{wal: b, changes: make([]pgsrc.Change, 0, len(b.msgs)), vals: make([]pgsrc.Value, 0, 8*len(b.msgs)), idleLSN: b.idleLSN}
		var ch pgsrc.Change
		for _, m := range b.msgs {
			var err error
			if cb.vals, err = s.dec.Decode(m.lsn, b.slab[m.off:m.end:m.end], &ch, cb.vals); err != nil {
				return err
			}
			if ch.Op != 0 {
				cb.changes = append(cb.changes, ch)
			}
		}
		if err := send(ctx, out, cb); err != nil {
			return err
		}
	}
	return nil
}

// send hands b to the next stage, or gives up when ctx ends.
func send[T any](ctx context.Context, out chan<- T, b T) error {
	select {
	case out <- b:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
