package pipeline

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/pgkafka/pgkafka/offsets"
	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// Backfills run while streaming, in the manner of Netflix's DBLog (DESIGN
// §3). For each chunk the backfill stage (backfill.go) finds the chunk's
// last key, hands the serializer the chunk's plan, writes a low watermark,
// reads the chunk, and writes a high watermark (chunk.go). In the WAL the
// serializer's dblog then sees:
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

// dblog is the serializer's side of the backfills: which changes pass,
// the chunk windows open in the stream, and their emission. It is the
// serializer's, and only its goroutine reads or writes its fields (and the
// tableBackfills and chunkWindows it holds); the backfill stage talks to
// it through chunk.go's handover alone.
type dblog struct {
	slot  string // watermarks of other slots are not ours
	toast *toastReconciler
	log   *slog.Logger

	// tables are the tables being backfilled in this session.
	tables map[pgsrc.TableRef]*tableBackfill
	// plans brings the chunks planned; planned keeps them by id until
	// their high watermark.
	plans   <-chan *chunkPlan
	planned map[string]*chunkPlan

	// openWindows counts the chunk windows open, all tables together.
	openWindows int
	// gate holds new chunks back when windows have stayed open longer than
	// txWindow (kafka.transactionWindow), open since busySince.
	gate      *windowGate
	txWindow  time.Duration
	busySince time.Time
	// commitPoint is set when the last open window closes: the batch
	// should end there, since the producer may commit there.
	commitPoint bool
	// restartPending: a re-backfill was requested; the session restarts
	// at the next commit with no window open.
	restartPending bool
	// delivered is a ring of the xids of the last deliveredXIDs commits
	// the stream delivered (while tables are backfilled), the next written
	// at deliveredNext: a chunk's snapshot must see those before its low
	// watermark.
	delivered     []uint32
	deliveredNext int

	// purger removes the keys left at the end of a re-backfill after a
	// lost slot (nil when none is run); tombstones is format.tombstones.
	purger     *purger
	tombstones bool

	key [][]byte // scratch
}

func newDBLog(slot string, tables map[pgsrc.TableRef]*tableBackfill, plans <-chan *chunkPlan, gate *windowGate, txWindow time.Duration, toast *toastReconciler, log *slog.Logger) *dblog {
	return &dblog{slot: slot, tables: tables, plans: plans, planned: make(map[string]*chunkPlan),
		gate: gate, txWindow: txWindow, toast: toast, log: log}
}

// tableBackfill is one table being backfilled, as the serializer sees it.
type tableBackfill struct {
	info  *pgsrc.Table
	order *pgsrc.KeyOrder // nil: read by ctid
	// cursor is the last key emitted (text values); nil before the first
	// chunk.
	cursor [][]byte
	// ctid is the last ctid emitted of a keyless table.
	ctid string
	// windows are the chunks between their watermarks, in key order: at
	// most two, the next opened while the last is read.
	windows []*chunkWindow
	done    bool
	// where is the condition of a filtered backfill (info.BackfillWhere),
	// or "".
	where string
	// purgeMark: a backfill with a purge, after a lost slot or for a
	// repair (slotlost.go); purge is the keys of its topic not seen yet,
	// removed at its end; purgeKeys, when set, the only keys it may
	// remove (base64, offsets.TableState.PurgeKeys).
	purgeMark bool
	purge     *purgeSet
	purgeKeys []string
}

// chunkWindow is a chunk between its watermarks.
type chunkWindow struct {
	plan *chunkPlan
	tc   *tableCodec // the codec of its rows
	// superseded holds the keys that a change between the watermarks gave
	// a newer state of than the chunk's.
	superseded map[string]struct{}
}

// backfillJob is where the backfill stage starts a table: a copy of the
// serializer's tableBackfill made before the stages start.
type backfillJob struct {
	info   *pgsrc.Table
	order  *pgsrc.KeyOrder
	cursor [][]byte
	ctid   string
}

func (b *tableBackfill) job() backfillJob {
	return backfillJob{info: b.info, order: b.order, cursor: b.cursor, ctid: b.ctid}
}

// state is the checkpoint's view of the table.
func (b *tableBackfill) state() offsets.TableState {
	if b.done {
		return offsets.TableState{State: offsets.StateStreaming, OID: b.info.OID}
	}
	st := offsets.TableState{State: offsets.StateBackfilling, OID: b.info.OID, Where: b.where, Purge: b.purgeMark}
	if b.purgeMark {
		st.PurgeKeys = b.purgeKeys
	}
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

// admits reports whether a change to the row with key k (from the WAL)
// passes (see the top of this file), noting a chunk row it supersedes. A
// key that cannot be placed (a value its type cannot parse) passes: better
// a change too many than one lost.
func (b *tableBackfill) admits(k [][]byte) bool {
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
		in := w.plan.end == nil
		if !in {
			c, err := b.order.CompareChecked(k, w.plan.end)
			in = err != nil || c <= 0
		}
		if in {
			w.superseded[keyString(k)] = struct{}{}
			return true
		}
	}
	// Beyond the windows: a filtered backfill reads a row later only if
	// its condition passes the row then, which nothing here can tell, so
	// the change passes (its row's 'r' record, if one comes, holds the
	// same state or a newer one: never an older one).
	return b.where != ""
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

// admit reports whether a change to a row of tc's table, whose image is
// tuple, is emitted: a table being backfilled keeps only the changes the
// backfill will not read.
func (d *dblog) admit(tc *tableCodec, tuple []pgsrc.Value) bool {
	b := d.tables[tc.ref]
	if b == nil || b.done || b.order == nil || tc.dropped {
		return true // a dropped relation's changes are not the backfilled table's
	}
	k, ok := d.keyOf(tc, tuple)
	if !ok {
		// A key pgoutput did not send (an unchanged TOASTed key column)
		// cannot be placed: let the change through.
		return true
	}
	if !b.admits(k) {
		return false
	}
	if b.purge != nil {
		// The stream gives this key's state from here on: never removed
		// at the backfill's end (slotlost.go).
		b.purge.seenRow(tc, tuple)
	}
	return true
}

// keyOf returns the key columns' text of a tuple, in a reused buffer; ok
// is false when one of them was not sent.
func (d *dblog) keyOf(tc *tableCodec, tuple []pgsrc.Value) (key [][]byte, ok bool) {
	d.key = d.key[:0]
	for _, i := range tc.key {
		if tuple[i].Kind != pgsrc.ValueText {
			return nil, false
		}
		d.key = append(d.key, tuple[i].Data)
	}
	return d.key, true
}

// deliveredXIDs is how many of the last commits a chunk's snapshot is
// checked against: a transaction leaves the snapshots' in-progress list
// moments after its commit reaches the stream, far fewer commits than
// these later even under load.
const deliveredXIDs = 8192

// noteCommit records the commit of transaction xid, delivered by the
// stream, while tables are backfilled.
func (d *dblog) noteCommit(xid uint32) {
	if len(d.tables) == 0 {
		return
	}
	if d.delivered == nil {
		d.delivered = make([]uint32, 0, deliveredXIDs)
	}
	if len(d.delivered) < deliveredXIDs {
		d.delivered = append(d.delivered, xid)
		return
	}
	d.delivered[d.deliveredNext] = xid
	d.deliveredNext = (d.deliveredNext + 1) % deliveredXIDs
}

// holding reports whether a chunk window is open: the producer must not
// commit after the batch being made.
func (d *dblog) holding() bool { return d.openWindows > 0 }

// takeCommitPoint reports, once, that the last open window has closed.
func (d *dblog) takeCommitPoint() bool {
	p := d.commitPoint
	d.commitPoint = false
	return p
}

// restartDue reports whether a re-backfill waits for this commit.
func (d *dblog) restartDue() bool { return d.restartPending && d.openWindows == 0 }

// onWatermark handles a write to the watermarks table: it opens or closes
// a chunk's window, or takes a re-backfill request. Watermarks of chunks
// this session did not plan (a previous session's) are ignored.
func (d *dblog) onWatermark(ctx context.Context, c *codecs, ch *pgsrc.Change, rb *recordBatch) error {
	if ch.Op != pgsrc.OpInsert && ch.Op != pgsrc.OpUpdate || ch.Rel == nil {
		return nil
	}
	var slot, mark string
	for i, col := range ch.Rel.Columns {
		if i >= len(ch.New) {
			break
		}
		switch col.Name {
		case "slot":
			slot = string(ch.New[i].Data)
		case "watermark":
			mark = string(ch.New[i].Data)
		}
	}
	if slot != d.slot {
		return nil
	}
	switch {
	case strings.HasPrefix(mark, lowMark):
		if plan := d.plan(strings.TrimPrefix(mark, lowMark)); plan != nil {
			return d.open(ctx, c, plan)
		}
	case strings.HasPrefix(mark, highMark):
		if plan := d.plan(strings.TrimPrefix(mark, highMark)); plan != nil {
			return d.emit(ctx, plan, rb)
		}
	case strings.HasPrefix(mark, BackfillMark):
		d.requestBackfill(c, strings.TrimPrefix(mark, BackfillMark), rb)
	}
	return nil
}

// plan returns the plan with the given id, taking the plans sent so far.
func (d *dblog) plan(id string) *chunkPlan {
	for {
		select {
		case p, ok := <-d.plans:
			if !ok {
				d.plans = nil
				return d.planned[id]
			}
			d.planned[p.id] = p
			continue
		default:
		}
		return d.planned[id]
	}
}

// open opens a chunk's window at its low watermark and hands the backfill
// stage the codec of its rows and the commits delivered so far.
func (d *dblog) open(ctx context.Context, c *codecs, plan *chunkPlan) error {
	b := d.tables[plan.table]
	if b == nil {
		return nil
	}
	tc, err := c.forBackfill(ctx, b.info)
	if err != nil {
		return err
	}
	b.windows = append(b.windows, &chunkWindow{plan: plan, tc: tc, superseded: make(map[string]struct{})})
	d.openWindows++
	if d.openWindows == 1 {
		d.busySince = time.Now()
	}
	d.checkBusy()
	plan.opened <- chunkOpening{tc: tc, delivered: slices.Clone(d.delivered)} // capacity 1, sent once
	return nil
}

// emit closes a chunk's window at its high watermark: the records of its
// rows that no change superseded go out ('r', encoded by the backfill
// stage), and the table's cursor moves to the chunk's end.
func (d *dblog) emit(ctx context.Context, plan *chunkPlan, rb *recordBatch) error {
	delete(d.planned, plan.id)
	b := d.tables[plan.table]
	if b == nil || len(b.windows) == 0 || b.windows[0].plan != plan {
		return nil // a window this session never opened
	}
	var res *chunkResult
	select {
	case res = <-plan.result:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	w := b.windows[0]
	b.windows = slices.Delete(b.windows, 0, 1)
	d.openWindows--
	if d.openWindows == 0 {
		d.gate.open()
		d.commitPoint = true
	}
	d.checkBusy()
	n := d.appendRows(b, w, res, rb)
	w.tc.counts[schema.OpRead].Add(float64(n))
	if b.order == nil {
		b.ctid = res.lastTID
	} else if plan.end != nil {
		b.cursor = plan.end
	}
	b.done = !res.more
	if b.done && b.purge != nil {
		if err := d.purger.purge(ctx, plan.table, b.purge, d.tombstones, rb); err != nil {
			return fmt.Errorf("re-backfill of %s: removing the keys the table no longer has: %w", plan.table, err)
		}
		b.purge, b.purgeMark, b.purgeKeys = nil, false, nil
	}
	if rb.tables == nil {
		rb.tables = make(map[string]offsets.TableState)
	}
	rb.tables[plan.table.String()] = b.state()
	close(plan.emitted)
	return nil
}

// appendRows appends to rb the records of a chunk's rows that no change
// superseded, and returns how many.
func (d *dblog) appendRows(b *tableBackfill, w *chunkWindow, res *chunkResult, rb *recordBatch) int {
	check := b.order != nil && len(w.superseded) > 0
	key := d.key[:0]
	n := 0
	rb.recs = slices.Grow(rb.recs, len(res.recs))
	for i := range res.recs {
		if b.purge != nil {
			b.purge.seenRow(w.tc, res.rows[i]) // whatever became of its record
		}
		if res.recs[i].Value == nil {
			continue
		}
		if check {
			key = key[:0]
			for _, c := range w.tc.key {
				key = append(key, res.rows[i][c].Data)
			}
			if _, superseded := w.superseded[keyString(key)]; superseded {
				continue
			}
		}
		d.toast.observe(w.tc, res.rows[i])
		rb.recs = append(rb.recs, res.recs[i])
		if res.recs[i].Topic == w.tc.topic {
			n++ // not a dead letter (kafka.oversizedRecords: dlq)
		}
	}
	d.key = key
	return n
}

// checkBusy closes the gate when chunk windows have been open without a
// break for longer than a transaction window: the producer can commit
// only where none is open.
func (d *dblog) checkBusy() {
	if d.openWindows > 0 && time.Since(d.busySince) > d.txWindow {
		d.gate.close()
	}
}

// requestBackfill marks the captured tables named in a re-backfill request
// to be read again from their start: the checkpoint of this transaction
// says so, and the session restarts from it once it is committed (at the
// first commit with no chunk window open), so the new session backfills
// them while the others stream.
//
// A request with a condition (pgkafka backfill --where) reads only the
// rows it passes; it is ignored for a table whose full backfill is not
// done yet (which reads those rows anyway), and it replaces a filtered
// backfill in progress, as a request without one does.
func (d *dblog) requestBackfill(c *codecs, value string, rb *recordBatch) {
	req, err := ParseBackfillRequest(value)
	if err != nil {
		d.log.Warn("re-backfill request unreadable: ignored", "err", err)
		return
	}
	if req.Where != "" {
		if err := pgsrc.CheckCondition(req.Where); err != nil {
			d.log.Warn("re-backfill request with a condition refused: ignored", "tables", strings.Join(req.Tables, ","), "where", req.Where, "err", err)
			return
		}
	}
	if err := req.checkPurge(); err != nil {
		d.log.Warn("re-backfill request with a purge refused: ignored", "tables", strings.Join(req.Tables, ","), "err", err)
		return
	}
	for _, name := range req.Tables {
		ref, err := pgsrc.ParseTableRef(name)
		if err != nil || !c.captured(ref) {
			d.log.Warn("re-backfill request for a table not captured: ignored", "table", name)
			continue
		}
		if b := d.tables[ref]; req.Where != "" && b != nil && !b.done && b.where == "" {
			d.log.Warn("re-backfill request with a condition for a table whose full backfill is not done: ignored (the backfill reads those rows)", "table", ref.String(), "where", req.Where)
			continue
		}
		if rb.tables == nil {
			rb.tables = make(map[string]offsets.TableState)
		}
		rb.tables[ref.String()] = offsets.TableState{State: offsets.StateBackfilling, Where: req.Where, Purge: req.Purge, PurgeKeys: req.PurgeKeys}
		d.restartPending = true
		attrs := []any{"table", ref.String()}
		if req.Where != "" {
			attrs = append(attrs, "where", abbreviate(req.Where, 200))
		}
		if req.Purge {
			attrs = append(attrs, "purge_keys", len(req.PurgeKeys))
		}
		d.log.Info("re-backfill requested", attrs...)
	}
}
