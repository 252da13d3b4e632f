package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// The backfill stage: its workers read the tables (backfill.go holds the
// serializer's side, the windows in the stream).

// progressEvery is how often the backfill logs its progress.
const progressEvery = 5 * time.Second

// arenaValues is how many values a block of a chunk's rows holds.
const arenaValues = 1 << 14

// backfillStage reads the tables being backfilled, chunk by chunk, each
// chunk between two watermark writes. Up to one table per scanner is read
// at a time (source.advanced.backfill_parallelism); a table's chunks go in
// key order, and the next chunk is read while the serializer emits the
// last one.
type backfillStage struct {
	scanners  []*pgsrc.Scanner // one per worker
	marks     *pgsrc.Watermarks
	tables    []*tableBackfill // the serializer's, read only here: their starting cursors
	chunkSize int
	plans     chan<- *chunkPlan
	// awaited counts the low watermarks waited for (see readerStage).
	awaited *atomic.Int32
	gate    *windowGate
	prog    *backfillProgress
	log     *slog.Logger

	marksMu sync.Mutex
	// finished is set when every table is backfilled.
	finished bool
}

// run backfills every table until done, soft ends (after the chunks in
// flight are emitted) or ctx ends.
func (s *backfillStage) run(ctx, soft context.Context) error {
	defer close(s.plans)
	next := make(chan *tableBackfill, len(s.tables))
	for _, t := range s.tables {
		if !t.done {
			next <- t
		}
	}
	close(next)
	g, gctx := errgroup.WithContext(ctx)
	for _, sc := range s.scanners {
		g.Go(func() error {
			for t := range next {
				if soft.Err() != nil || gctx.Err() != nil {
					return nil
				}
				if err := s.table(gctx, soft, sc, t); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if soft.Err() != nil {
		return nil
	}
	s.log.Info("backfills finished")
	s.finished = true
	return nil
}

// table backfills one table with sc, from its cursor to its end or until
// soft ends. For a keyed table, chunk n+1 is planned and its window opened
// while chunk n is read: the two windows are contiguous in key order, and
// chunk n's high watermark precedes chunk n+1's in the WAL.
func (s *backfillStage) table(ctx, soft context.Context, sc *pgsrc.Scanner, t *tableBackfill) error {
	after, ctid := t.cursor, t.ctid
	ref := t.info.Ref()
	p := s.prog.start(ref.String(), t.info.Estimated)
	resumed := after != nil || ctid != ""
	if resumed && t.info.Estimated > 0 {
		// Progress counts the rows behind the cursor as read. It is only
		// progress: without the estimate the backfill goes on.
		if left, err := sc.EstimateAfter(ctx, t.info, t.order, after, ctid); err != nil {
			s.log.Warn("cannot estimate the rows behind the backfill's cursor: its progress counts from there", "table", ref.String(), "err", err)
		} else {
			p.before.Store(max(0, t.info.Estimated-left))
		}
	}
	if t.order != nil {
		if advice, err := sc.IndexAdvice(ctx, t.info, t.order, s.chunkSize); err != nil {
			s.log.Warn("cannot plan the backfill's chunk queries", "table", ref.String(), "err", err)
		} else if advice != "" {
			s.log.Warn("the backfill's chunk queries sort the rest of the table each time: its key is text in a collation other than C, compared byte-wise; an index in that order makes each chunk an index walk",
				"table", ref.String(), "sql", advice)
		}
	}
	s.log.Info("backfilling", "table", ref.String(), "estimated_rows", t.info.Estimated, "resumed", resumed)
	var emitting *chunkPlan // the chunk the serializer may still be emitting
	wait := func() error {
		if emitting == nil {
			return nil
		}
		select {
		case <-emitting.done:
			emitting = nil
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	last := time.Now()
	var plan *chunkPlan
	finished := false
	if soft.Err() == nil {
		var err error
		if plan, err = s.newPlan(ctx, sc, t, after, ctid); err != nil {
			return fmt.Errorf("backfill of %s: %w", ref, err)
		}
		if opened, err := s.open(ctx, soft, plan); err != nil {
			return fmt.Errorf("backfill of %s: %w", ref, err)
		} else if !opened {
			plan = nil
		}
	}
	for plan != nil {
		// A keyed table's next chunk is planned and opened while this one
		// is read: its window, right after this one's in key order, opens
		// before this one closes, so that reading goes on from one chunk
		// to the next without waiting for the stream.
		var next chan openedPlan
		if t.order != nil && plan.full && soft.Err() == nil {
			np, err := s.newPlan(ctx, sc, t, plan.end, "")
			if err != nil {
				return fmt.Errorf("backfill of %s: %w", ref, err)
			}
			next = make(chan openedPlan, 1)
			go func() {
				opened, err := s.open(ctx, soft, np)
				if !opened {
					np = nil
				}
				next <- openedPlan{np, err}
			}()
		}
		if err := s.read(ctx, sc, t, plan); err != nil {
			return fmt.Errorf("backfill of %s: %w", ref, err)
		}
		if err := wait(); err != nil {
			return err
		}
		emitting = plan
		p.add(len(plan.rows))
		if time.Since(last) >= progressEvery {
			last = time.Now()
			v := p.view()
			s.log.Info("backfill progress", "table", ref.String(), "rows", v.Before+v.Rows, "percent", percent(v), "eta", eta(v))
		}
		switch {
		case next != nil:
			o := <-next
			if o.err != nil {
				return fmt.Errorf("backfill of %s: %w", ref, o.err)
			}
			plan = o.plan // nil: soft stop while held at the gate
		case !plan.full:
			finished, plan = true, nil
		case soft.Err() != nil:
			plan = nil
		default: // a keyless table: the next chunk starts after this one's last ctid
			np, err := s.newPlan(ctx, sc, t, nil, plan.lastTID)
			if err != nil {
				return fmt.Errorf("backfill of %s: %w", ref, err)
			}
			if opened, err := s.open(ctx, soft, np); err != nil {
				return fmt.Errorf("backfill of %s: %w", ref, err)
			} else if !opened {
				np = nil
			}
			plan = np
		}
	}
	if !finished {
		return wait() // soft stop
	}
	if err := wait(); err != nil {
		return err
	}
	p.finish()
	v := p.view()
	s.log.Info("backfill finished", "table", ref.String(), "rows", v.Rows, "took", v.Elapsed.Round(time.Millisecond).String())
	return nil
}

// watermark writes a watermark; the workers share the connection.
func (s *backfillStage) watermark(ctx context.Context, value string) error {
	s.marksMu.Lock()
	defer s.marksMu.Unlock()
	return s.marks.Write(ctx, value)
}

// openedPlan is a chunk whose window is open (nil: soft stop), or why not.
type openedPlan struct {
	plan *chunkPlan
	err  error
}

// newPlan plans the chunk after the key after (or the ctid ctid): for a
// keyed table, its end, which sc finds.
func (s *backfillStage) newPlan(ctx context.Context, sc *pgsrc.Scanner, t *tableBackfill, after [][]byte, ctid string) (*chunkPlan, error) {
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	plan := &chunkPlan{id: hex.EncodeToString(id), table: t.info.Ref(), after: after, ctid: ctid, limit: t.nextChunkRows(s.chunkSize),
		opened: make(chan struct{}), ready: make(chan struct{}), done: make(chan struct{})}
	if t.order != nil {
		end, full, err := sc.ChunkEnd(ctx, t.info, t.order, after, plan.limit)
		if err != nil {
			return nil, err
		}
		plan.end, plan.full = end, full
	}
	return plan, nil
}

// open hands the serializer the plan, writes its low watermark and waits
// until the serializer has opened its window. It returns false when soft
// ends while the gate holds the chunk back.
func (s *backfillStage) open(ctx, soft context.Context, plan *chunkPlan) (bool, error) {
	if err := s.gate.wait(ctx); err != nil {
		return false, err
	}
	if soft.Err() != nil {
		return false, nil
	}
	if err := send(ctx, s.plans, plan); err != nil {
		return false, err
	}
	s.awaited.Add(1)
	err := s.watermark(ctx, lowMark+plan.id)
	if err == nil {
		// Invariant: the chunk is read only after the serializer has seen
		// the low watermark, in a snapshot that sees every transaction
		// committed before it: a change the serializer dropped as beyond
		// the cursor (it came before the low watermark) is then always in
		// the chunk.
		select {
		case <-plan.opened:
		case <-ctx.Done():
			err = context.Cause(ctx)
		}
	}
	s.awaited.Add(-1)
	return err == nil, err
}

// read reads an opened chunk with sc and writes its high watermark.
func (s *backfillStage) read(ctx context.Context, sc *pgsrc.Scanner, t *tableBackfill, plan *chunkPlan) error {
	if err := sc.BeginConsistent(ctx); err != nil {
		return err
	}
	rows := plan.limit
	plan.slab = make([]byte, 0, t.chunkBytes)
	plan.rows = make([][]pgsrc.Value, 0, rows)
	var arena []pgsrc.Value // the rows' values, allocated in blocks
	enc := newChunkEncoder(plan, t.chunkBytes, rows)
	collect := func(row []pgsrc.Value) error {
		if err := enc.add(row); err != nil {
			return err
		}
		start := len(plan.slab)
		for _, v := range row {
			plan.slab = append(plan.slab, v.Data...)
		}
		if cap(arena)-len(arena) < len(row) {
			arena = make([]pgsrc.Value, 0, max(len(row), arenaValues))
		}
		copied := arena[len(arena) : len(arena)+len(row) : len(arena)+len(row)]
		arena = arena[:len(arena)+len(row)]
		off := start
		for i, v := range row {
			copied[i] = pgsrc.Value{Kind: v.Kind}
			if v.Kind == pgsrc.ValueText || v.Kind == pgsrc.ValueBinary {
				copied[i].Data = plan.slab[off : off+len(v.Data) : off+len(v.Data)]
				off += len(v.Data)
			}
		}
		plan.rows = append(plan.rows, copied)
		return nil
	}
	if t.order != nil {
		if _, err := sc.ScanChunk(ctx, t.info, t.order, plan.after, plan.end, collect); err != nil {
			return err
		}
	} else {
		last, n, err := sc.ScanCTID(ctx, t.info, plan.ctid, rows, func(_ string, row []pgsrc.Value) error { return collect(row) })
		if err != nil {
			return err
		}
		plan.lastTID, plan.full = last, n == rows
	}
	if err := sc.End(ctx); err != nil {
		return err
	}
	if n := len(plan.rows); n > 0 {
		avg := max(1, len(plan.slab)/n)
		t.chunkRows = max(1, maxChunkBytes/avg)
		t.chunkBytes = t.nextChunkRows(s.chunkSize) * avg * 9 / 8
	}
	close(plan.ready)
	return s.watermark(ctx, highMark+plan.id)
}

// windowGate keeps a Kafka transaction from being held open for ever by
// the windows of tables backfilled in parallel. The producer commits only
// where no window is open; the serializer closes the gate when windows
// have stayed open longer than a transaction window, and new chunks wait
// at it (before their low watermark) until the open ones have closed.
type windowGate struct {
	mu     sync.Mutex
	closed chan struct{} // non-nil while closed
}

func newWindowGate() *windowGate { return &windowGate{} }

// close makes new chunks wait.
func (g *windowGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed == nil {
		g.closed = make(chan struct{})
	}
}

// open lets waiting chunks go.
func (g *windowGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed != nil {
		close(g.closed)
		g.closed = nil
	}
}

// wait returns once the gate is open.
func (g *windowGate) wait(ctx context.Context) error {
	g.mu.Lock()
	c := g.closed
	g.mu.Unlock()
	if c == nil {
		return nil
	}
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// eta and percent format a progress for the log.
func eta(p TableProgress) string {
	if d := p.ETA(); d >= 0 {
		return d.Round(time.Second).String()
	}
	return "unknown"
}

func percent(p TableProgress) string {
	if v := p.Percent(); v >= 0 {
		return fmt.Sprintf("%.1f", v)
	}
	return "unknown"
}

// chunkEncoder encodes a chunk's rows as 'r' records with its codec as the
// backfill stage reads them, so that encoding overlaps with PostgreSQL
// sending the rest. A table's chunks are read, so encoded, one after the
// other, and its codec serves no one else meanwhile.
type chunkEncoder struct {
	plan  *chunkPlan
	ev    schema.Event
	after []schema.Datum
}

func newChunkEncoder(plan *chunkPlan, chunkBytes, chunkSize int) *chunkEncoder {
	e := &chunkEncoder{plan: plan, ev: schema.Event{Op: schema.OpRead, TxID: -1, LSN: -1, Snapshot: "true"}}
	e.ev.NowMs = time.Now().UnixMilli()
	e.ev.TsMs = e.ev.NowMs
	plan.recs = make([]kgo.Record, 0, chunkSize)
	plan.enc = make([]byte, 0, chunkBytes+chunkSize*encodedRowOverhead(plan.tc))
	return e
}

// add encodes row, which it does not keep; a row its type cannot
// represent gets a record with a nil Value.
func (e *chunkEncoder) add(row []pgsrc.Value) error {
	plan, tc := e.plan, e.plan.tc
	if len(row) != len(tc.rel.Columns) {
		return fmt.Errorf("a row of %d columns for %d: the table changed during the backfill; the next session reads it again", len(row), len(tc.rel.Columns))
	}
	e.after = datums(e.after, row)
	e.ev.After = e.after
	var key []byte
	var err error
	if tc.codec.Keyed() {
		off := len(plan.enc)
		if plan.enc, err = tc.codec.AppendKey(plan.enc, e.after); err != nil {
			return fmt.Errorf("encoding the key of a row: %w", err)
		}
		key = plan.enc[off:len(plan.enc):len(plan.enc)]
	}
	off := len(plan.enc)
	plan.enc, err = tc.codec.AppendValue(plan.enc, &e.ev)
	switch {
	case errors.Is(err, schema.ErrNotRepresentable):
		plan.enc = plan.enc[:off]
		plan.recs = append(plan.recs, kgo.Record{})
	case err != nil:
		return fmt.Errorf("encoding a row: %w", err)
	default:
		plan.recs = append(plan.recs, kgo.Record{Topic: tc.topic, Key: key, Value: plan.enc[off:len(plan.enc):len(plan.enc)]})
	}
	return nil
}

// encodedRowOverhead is about how many bytes a row's record takes beyond
// its values' text: the envelope, source block and key.
func encodedRowOverhead(tc *tableCodec) int { return 160 + 8*len(tc.rel.Columns) }
