package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

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
	// window is the chunk between its watermarks, if any.
	window *chunkPlan
	done   bool
}

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
	if w := b.window; w != nil {
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

	// Filled by the backfill stage before it writes the high watermark,
	// then ready is closed.
	rows    [][]pgsrc.Value
	slab    []byte
	lastTID string
	ready   chan struct{}

	// opened is closed by the serializer when it sees the low watermark.
	opened chan struct{}

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
			plan.touched = make(map[string]struct{})
			b.window = plan
			s.windows++
			close(plan.opened)
		}
	case strings.HasPrefix(mark, highMark):
		plan := s.plan(strings.TrimPrefix(mark, highMark))
		if plan == nil {
			return nil
		}
		return s.emitChunk(ctx, plan, nowMs, rb)
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

// emitChunk closes a chunk's window: its rows that no change superseded go
// out as 'r' records, and the table's cursor moves to the chunk's end.
func (s *serializerStage) emitChunk(ctx context.Context, plan *chunkPlan, nowMs int64, rb *recordBatch) error {
	delete(s.pending, plan.id)
	b := s.backfills[plan.table]
	if b == nil || b.window != plan {
		return nil // a window this session never opened
	}
	select {
	case <-plan.ready:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	b.window = nil
	s.windows--
	tc, err := s.backfillCodec(ctx, b)
	if err != nil {
		return err
	}
	ch := &pgsrc.Change{Op: pgsrc.OpInsert, Rel: tc.rel}
	key := make([][]byte, len(tc.key))
	for _, row := range plan.rows {
		if len(row) != len(tc.rel.Columns) {
			return fmt.Errorf("backfill of %s: a row of %d columns for %d: the table changed during the backfill", plan.table, len(row), len(tc.rel.Columns))
		}
		if b.order != nil {
			for i, c := range tc.key {
				key[i] = row[c].Data
			}
			if _, superseded := plan.touched[keyString(key)]; superseded {
				continue
			}
		}
		s.toast.observe(tc, row)
		s.after = datums(s.after, row)
		s.setEvent(ch, schema.OpRead, nil, s.after, nowMs)
		s.ev.Snapshot = "true"
		s.ev.TxID, s.ev.LSN = -1, -1
		s.ev.TsMs = nowMs
		if err := s.emit(tc, ch, rb, s.after, false); err != nil {
			return err
		}
	}
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

// backfillCodec returns the codec of a table as the catalog describes it,
// for backfilled rows (which may come before any Relation message).
func (s *serializerStage) backfillCodec(ctx context.Context, b *tableBackfill) (*tableCodec, error) {
	ref := b.info.Ref()
	if tc := s.synthetic[ref]; tc != nil {
		return tc, nil
	}
	rel := &pgsrc.Relation{Namespace: ref.Schema, Name: ref.Name, ReplicaIdentity: b.info.ReplicaIdentity}
	for _, c := range b.info.Columns {
		if c.Generated {
			continue // pgoutput does not send them either
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

// backfillStage reads the tables being backfilled, one chunk at a time,
// each between two watermark writes.
type backfillStage struct {
	scanner   *pgsrc.Scanner
	marks     *pgsrc.Watermarks
	tables    []*tableBackfill // the serializer's, read only here: their starting cursors
	chunkSize int
	plans     chan<- *chunkPlan
	log       *slog.Logger
	// finished is set when every table is backfilled.
	finished bool
}

// run backfills every table until done, soft ends (after the chunk in
// flight is emitted) or ctx ends.
func (s *backfillStage) run(ctx, soft context.Context) error {
	defer close(s.plans)
	for _, t := range s.tables {
		if t.done {
			continue
		}
		after, ctid := t.cursor, t.ctid
		ref := t.info.Ref()
		rows, started, last := 0, time.Now(), time.Now()
		s.log.Info("backfilling", "table", ref.String(), "estimated_rows", t.info.Estimated, "resumed", after != nil || ctid != "")
		for {
			if soft.Err() != nil {
				return nil
			}
			plan, err := s.chunk(ctx, t, after, ctid)
			if err != nil {
				return fmt.Errorf("backfill of %s: %w", ref, err)
			}
			rows += len(plan.rows)
			if time.Since(last) >= progressEvery {
				last = time.Now()
				s.log.Info("backfill progress", "table", ref.String(), "rows", rows, "percent", percent(rows, t.info.Estimated),
					"eta", eta(rows, t.info.Estimated, time.Since(started)))
			}
			if !plan.full {
				break
			}
			after, ctid = plan.end, plan.lastTID
		}
		s.log.Info("backfill finished", "table", ref.String(), "rows", rows)
	}
	s.log.Info("backfills finished")
	s.finished = true
	return nil
}

// chunk reads one chunk between its watermarks and waits until the
// serializer has emitted it.
func (s *backfillStage) chunk(ctx context.Context, t *tableBackfill, after [][]byte, ctid string) (*chunkPlan, error) {
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	plan := &chunkPlan{id: hex.EncodeToString(id), table: t.info.Ref(), after: after, ctid: ctid,
		opened: make(chan struct{}), ready: make(chan struct{}), done: make(chan struct{})}
	if t.order != nil {
		end, full, err := s.scanner.ChunkEnd(ctx, t.info, t.order, after, s.chunkSize)
		if err != nil {
			return nil, err
		}
		plan.end, plan.full = end, full
	}
	if err := send(ctx, s.plans, plan); err != nil {
		return nil, err
	}
	if err := s.marks.Write(ctx, lowMark+plan.id); err != nil {
		return nil, err
	}
	// Invariant: the chunk is read only after the serializer has seen the
	// low watermark, in a snapshot that sees every transaction committed
	// before it: a change the serializer dropped as beyond the cursor (it
	// came before the low watermark) is then always in the chunk.
	select {
	case <-plan.opened:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	if err := s.scanner.BeginConsistent(ctx); err != nil {
		return nil, err
	}
	collect := func(row []pgsrc.Value) error {
		start := len(plan.slab)
		for _, v := range row {
			plan.slab = append(plan.slab, v.Data...)
		}
		copied := make([]pgsrc.Value, len(row))
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
		if _, err := s.scanner.ScanChunk(ctx, t.info, t.order, after, plan.end, collect); err != nil {
			return nil, err
		}
	} else {
		last, n, err := s.scanner.ScanCTID(ctx, t.info, ctid, s.chunkSize, func(_ string, row []pgsrc.Value) error { return collect(row) })
		if err != nil {
			return nil, err
		}
		plan.lastTID, plan.full = last, n == s.chunkSize
	}
	if err := s.scanner.End(ctx); err != nil {
		return nil, err
	}
	close(plan.ready)
	if err := s.marks.Write(ctx, highMark+plan.id); err != nil {
		return nil, err
	}
	select {
	case <-plan.done:
		return plan, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// eta is the time left at the rate so far, from the row estimate.
func eta(rows int, estimated int64, elapsed time.Duration) string {
	if rows == 0 || estimated <= int64(rows) {
		return "unknown"
	}
	left := time.Duration(float64(elapsed) * float64(estimated-int64(rows)) / float64(rows))
	return left.Round(time.Second).String()
}

func percent(rows int, estimated int64) string {
	if estimated <= 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f", min(100, 100*float64(rows)/float64(estimated)))
}
