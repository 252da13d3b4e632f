package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/pgkafka/pgkafka/offsets"
	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// Backfills run while streaming, in the manner of Netflix's DBLog (DESIGN
// §3). For each chunk the backfill stage finds the chunk's last key, hands
// the serializer the chunk's plan, writes a low watermark, reads the chunk,
// and writes a high watermark. In the WAL the serializer then sees:
//
//   - changes to rows behind the table's cursor: they pass;
//   - changes to rows beyond it: dropped, the backfill reads them later;
//   - between the watermarks, changes to rows of the chunk: they pass, and
//     the chunk forgets those rows, whose state the change already gave;
//   - at the high watermark, the chunk's remaining rows as 'r' records,
//     and the cursor moves to the chunk's last key.
//
// So for every key, the records never step back to an older state, never
// repeat a change, and end at the row's state. Everything from the low
// watermark to the high one goes in one Kafka transaction with the
// checkpoint holding the new cursor: a crash in between aborts it, and the
// next session, not knowing the old watermarks, reads the chunk again.
//
// Tables without a key are read by ctid ranges and filter nothing (without
// a key there is no per-key history to keep in order).

// Watermark values: "<prefix><chunk id>", and the re-backfill request
// "pgkafka-backfill:<schema>.<table>[,...]" that `pgkafka backfill` (or an
// operator, with an INSERT) writes.
const (
	lowMark      = "pgkafka-lw:"
	highMark     = "pgkafka-hw:"
	BackfillMark = "pgkafka-backfill:"
)

// progressEvery is how often the backfill logs its progress.
const progressEvery = 5 * time.Second

// tableBackfill is the serializer's view of one table being backfilled.
type tableBackfill struct {
	info  *pgsrc.Table
	order *pgsrc.KeyOrder // nil: read by ctid
	// cursor is the last key read (text values); nil before the first chunk.
	cursor [][]byte
	// ctid is the last ctid read of a keyless table.
	ctid string
	// windows are the chunks between their watermarks, in key order: at
	// most two, the next opened while the last is read.
	windows []*chunkPlan
	done    bool
	// chunkBytes sizes the next chunk's slab, from the last one's.
	chunkBytes int
	// chunkRows is how many rows the next chunk may hold so that its
	// values stay within maxChunkBytes, from the last chunk's average row
	// (0: no chunk read yet in this session).
	chunkRows int
}

// Chunk byte limits. A chunk's rows are held twice until the serializer
// emits it, as text in its slab and encoded, so backfill_chunk_size alone
// does not bound memory: a table's first chunk in a session holds at most
// firstChunkRows rows, and each next one at most as many rows of the
// last chunk's average size as fit in maxChunkBytes of text.
const (
	maxChunkBytes  = 4 << 20
	firstChunkRows = 8
)

// nextChunkRows is how many rows the table's next chunk reads: at most
// chunkSize (source.advanced.backfill_chunk_size).
func (b *tableBackfill) nextChunkRows(chunkSize int) int {
	if b.chunkRows == 0 {
		return min(chunkSize, firstChunkRows)
	}
	return min(chunkSize, b.chunkRows)
}

// arenaValues is how many values a block of a chunk's rows holds.
const arenaValues = 1 << 14

// state is the checkpoint's view of the table.
func (b *tableBackfill) state() offsets.TableState {
	if b.done {
		return offsets.TableState{State: offsets.StateStreaming}
	}
	st := offsets.TableState{State: offsets.StateBackfilling}
	switch {
	case b.order == nil && b.ctid != "":
		st.Cursor, _ = json.Marshal(map[string]string{"ctid": b.ctid})
	case b.cursor != nil:
		vals := make([]string, len(b.cursor))
		for i, v := range b.cursor {
			vals[i] = string(v)
		}
		st.Cursor, _ = json.Marshal(vals)
	}
	return st
}

// parseCursor restores a cursor written by state.
func (b *tableBackfill) parseCursor(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if b.order == nil {
		var c struct{ Ctid string }
		if err := json.Unmarshal(raw, &c); err != nil {
			return fmt.Errorf("the ctid cursor %s of %s: %w", raw, b.info.Ref(), err)
		}
		b.ctid = c.Ctid
		return nil
	}
	var vals []string
	if err := json.Unmarshal(raw, &vals); err != nil || len(vals) != len(b.order.Columns()) {
		return fmt.Errorf("the key cursor %s of %s does not fit its key (%s)", raw, b.info.Ref(), strings.Join(b.order.Columns(), ", "))
	}
	b.cursor = make([][]byte, len(vals))
	for i, v := range vals {
		b.cursor[i] = []byte(v)
	}
	return nil
}

// passes reports whether a change to the row with key k (from the WAL)
// passes (see the comment at the top of this file), noting a chunk row it
// supersedes. A key that cannot be placed (a value its type cannot parse)
// passes: better a change too many than one lost.
func (b *tableBackfill) passes(k [][]byte) bool {
	if b.done || b.order == nil {
		return true
	}
	if b.cursor != nil {
		if c, err := b.order.CompareChecked(k, b.cursor); err != nil || c <= 0 {
			return true
		}
	}
	// The open windows are contiguous, in key order, from the cursor.
	for _, w := range b.windows {
		in := w.end == nil
		if !in {
			c, err := b.order.CompareChecked(k, w.end)
			in = err != nil || c <= 0
		}
		if in {
			w.touched[keyString(k)] = struct{}{}
			return true
		}
	}
	return false
}

// keyString is a map key for a key tuple.
func keyString(k [][]byte) string {
	var sb strings.Builder
	for _, v := range k {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(v)))
		sb.Write(n[:])
		sb.Write(v)
	}
	return sb.String()
}

// chunkPlan is one chunk, from the backfill stage to the serializer.
type chunkPlan struct {
	id    string
	table pgsrc.TableRef
	after [][]byte // exclusive start; nil from the first key
	end   [][]byte // inclusive end; nil: the table's end (the last chunk)
	full  bool     // false for the last chunk
	ctid  string   // keyless: the ctid after which the chunk starts
	limit int      // rows at most

	// Filled by the backfill stage before it writes the high watermark,
	// then ready is closed: the rows and their records (recs[i] is
	// rows[i]'s, with a nil Value for a row its type cannot represent).
	rows    [][]pgsrc.Value
	slab    []byte
	lastTID string
	recs    []kgo.Record
	enc     []byte
	ready   chan struct{}

	// opened is closed by the serializer when it sees the low watermark,
	// once it has set tc, the codec of the chunk's rows.
	opened chan struct{}
	tc     *tableCodec

	// touched is the serializer's: keys a change superseded in the window.
	touched map[string]struct{}
	// done is closed by the serializer once the chunk is emitted.
	done chan struct{}
}

// onWatermark handles a write to the watermarks table: it opens or closes
// a chunk's window. Watermarks of chunks this session did not plan (a
// previous session's) are ignored.
func (s *serializerStage) onWatermark(ctx context.Context, ch *pgsrc.Change, nowMs int64, rb *recordBatch) error {
	if ch.Op != pgsrc.OpInsert && ch.Op != pgsrc.OpUpdate || ch.Rel == nil {
		return nil
	}
	var slot, mark string
	for i, c := range ch.Rel.Columns {
		if i >= len(ch.New) {
			break
		}
		switch c.Name {
		case "slot":
			slot = string(ch.New[i].Data)
		case "watermark":
			mark = string(ch.New[i].Data)
		}
	}
	if slot != s.cfg.Source.Advanced.SlotName {
		return nil
	}
	switch {
	case strings.HasPrefix(mark, lowMark):
		plan := s.plan(strings.TrimPrefix(mark, lowMark))
		if plan == nil {
			return nil
		}
		if b := s.backfills[plan.table]; b != nil {
			tc, err := s.backfillCodec(ctx, b)
			if err != nil {
				return err
			}
			plan.tc = tc
			plan.touched = make(map[string]struct{})
			b.windows = append(b.windows, plan)
			s.windows++
			if s.windows == 1 {
				s.busySince = time.Now()
			}
			s.checkBusy()
			close(plan.opened)
		}
	case strings.HasPrefix(mark, highMark):
		plan := s.plan(strings.TrimPrefix(mark, highMark))
		if plan == nil {
			return nil
		}
		return s.emitChunk(ctx, plan, rb)
	case strings.HasPrefix(mark, BackfillMark):
		s.requestBackfill(strings.TrimPrefix(mark, BackfillMark), rb)
	}
	return nil
}

// requestBackfill marks the bound tables named in a re-backfill request to
// be read again from their start: the checkpoint of this transaction says
// so, and the session restarts from it once it is committed (at the first
// commit with no chunk window open), so the new session backfills them
// while the others stream.
func (s *serializerStage) requestBackfill(list string, rb *recordBatch) {
	for _, name := range strings.Split(list, ",") {
		ref, err := pgsrc.ParseTableRef(strings.TrimSpace(name))
		if err != nil || s.bound[ref] == nil {
			s.log.Warn("re-backfill request for a table not captured: ignored", "table", strings.TrimSpace(name))
			continue
		}
		if rb.tables == nil {
			rb.tables = make(map[string]offsets.TableState)
		}
		rb.tables[ref.String()] = offsets.TableState{State: offsets.StateBackfilling}
		s.restartPending = true
		s.log.Info("re-backfill requested", "table", ref.String())
	}
}

// plan returns the plan with the given id, taking the plans sent so far.
func (s *serializerStage) plan(id string) *chunkPlan {
	for {
		select {
		case p, ok := <-s.plans:
			if !ok {
				s.plans = nil
				return s.pending[id]
			}
			s.pending[p.id] = p
			continue
		default:
		}
		return s.pending[id]
	}
}

// emitChunk closes a chunk's window: the records of its rows that no
// change superseded go out ('r', encoded by the backfill stage), and the
// table's cursor moves to the chunk's end.
func (s *serializerStage) emitChunk(ctx context.Context, plan *chunkPlan, rb *recordBatch) error {
	delete(s.pending, plan.id)
	b := s.backfills[plan.table]
	if b == nil || len(b.windows) == 0 || b.windows[0] != plan {
		return nil // a window this session never opened
	}
	select {
	case <-plan.ready:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	b.windows = slices.Delete(b.windows, 0, 1)
	s.windows--
	if s.windows == 0 {
		s.gate.open()
		s.gap = true
	}
	s.checkBusy()
	tc := plan.tc
	check := b.order != nil && len(plan.touched) > 0
	key := s.key[:0]
	n := 0
	rb.recs = slices.Grow(rb.recs, len(plan.recs))
	for i := range plan.recs {
		if plan.recs[i].Value == nil {
			continue
		}
		if check {
			key = key[:0]
			for _, c := range tc.key {
				key = append(key, plan.rows[i][c].Data)
			}
			if _, superseded := plan.touched[keyString(key)]; superseded {
				continue
			}
		}
		s.toast.observe(tc, plan.rows[i])
		rb.recs = append(rb.recs, plan.recs[i])
		n++
	}
	s.key = key
	tc.counts[schema.OpRead].Add(float64(n))
	if b.order == nil {
		b.ctid = plan.lastTID
	} else if plan.end != nil {
		b.cursor = plan.end
	}
	b.done = !plan.full
	if rb.tables == nil {
		rb.tables = make(map[string]offsets.TableState)
	}
	rb.tables[plan.table.String()] = b.state()
	close(plan.done)
	return nil
}

// chunkEncoder encodes a chunk's rows as 'r' records with its codec as the
// backfill stage reads them, so that encoding overlaps with PostgreSQL
// sending the rest. A table's chunks are encoded one after the other (the
// next is read only once the serializer has emitted this one), and its
// codec serves no one else meanwhile.
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

// checkBusy closes the gate when chunk windows have been open without a
// break for longer than a transaction window: the producer can commit
// only where none is open.
func (s *serializerStage) checkBusy() {
	if s.windows > 0 && time.Since(s.busySince) > s.cfg.Kafka.TransactionWindow {
		s.gate.close()
	}
}

// backfillCodec returns the codec of a table as the catalog describes it,
// for backfilled rows (which may come before any Relation message).
func (s *serializerStage) backfillCodec(ctx context.Context, b *tableBackfill) (*tableCodec, error) {
	ref := b.info.Ref()
	if tc := s.synthetic[ref]; tc != nil {
		return tc, nil
	}
	rel := &pgsrc.Relation{Namespace: ref.Schema, Name: ref.Name, ReplicaIdentity: b.info.ReplicaIdentity}
	for _, c := range b.info.Columns {
		if !c.Sent() {
			continue // generated, or not in the publication's column list: pgoutput does not send them either
		}
		rel.Columns = append(rel.Columns, pgsrc.RelationColumn{Name: c.Name, TypeOID: c.Type.OID, TypeMod: c.Typmod})
	}
	tc, err := s.build(ctx, rel)
	if err != nil {
		return nil, err
	}
	s.synthetic[ref] = tc
	return tc, nil
}

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
// soft ends. Chunk n+1 is read while the serializer emits chunk n: its low
// watermark follows chunk n's high one in the WAL, so windows of one table
// never overlap.
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
