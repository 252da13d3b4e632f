package pipeline

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

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
// firstChunkRows rows (and so does the second, planned while the first
// is read), and each next one at most as many rows of the last chunk's
// average size as fit in maxChunkBytes of text.
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
