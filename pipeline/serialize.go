package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/offsets"
	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// serializerStage turns changes into Kafka records: it resolves each
// relation to a codec (registering its schemas), encodes keys and values,
// and cuts record batches at transaction ends.
type serializerStage struct {
	cfg      *Config
	catalog  *pgsrc.Catalog
	registry *schema.Registry
	source   schema.Source
	log      *slog.Logger
	metrics  *Metrics

	// resume is the checkpoint the session started from (nil: none).
	resume *offsets.Checkpoint
	// messages writes logical decoding messages; nil when not captured.
	messages *messageTopic
	// bound maps each captured table to its description at start.
	bound map[pgsrc.TableRef]*pgsrc.Table
	// tables caches, per relation ID, the codec of its latest shape.
	tables map[uint32]*tableCodec

	// Backfills (backfill.go): the tables being backfilled, the plans of
	// their chunks from the backfill stage, the codecs of backfilled rows,
	// the watermarks table, and how many chunk windows are open.
	backfills map[pgsrc.TableRef]*tableBackfill
	plans     <-chan *chunkPlan
	pending   map[string]*chunkPlan
	synthetic map[pgsrc.TableRef]*tableCodec
	marksRef  pgsrc.TableRef
	windows   int
	// gate holds new chunks back when windows have stayed open longer than
	// a transaction window (busy since busySince); gap is set when the last
	// open window closed, so that the batch ends at that commit, where the
	// producer may commit.
	gate      *windowGate
	busySince time.Time
	gap       bool
	// restartPending: a re-backfill was requested; the session restarts
	// at the next commit with no window open.
	restartPending bool
	// relLSN is the commit LSN of the transaction whose Relation message is
	// being handled, for the reports of a schema change (schemachange.go);
	// 0 outside.
	relLSN pglogrepl.LSN

	// toast fills unchanged TOASTed values (toast.go).
	toast *toastReconciler
	// keyText renders binary key values as text (binary.go); nil when the
	// stream is text.
	keyText *keyText

	before, after []schema.Datum
	key           [][]byte
	ev            schema.Event
}

// tableCodec is a captured relation in one shape. A nil codec means the
// relation is not captured (not bound, or the watermarks table).
type tableCodec struct {
	rel       *pgsrc.Relation
	codec     *schema.Codec
	key       []int // key column indexes
	topic     string
	compacted bool
	marks     bool           // the watermarks table
	backfill  *tableBackfill // while the table is backfilled
	counts    *opCounters    // records by op, in metrics
	toast     toastTable
}

func (s *serializerStage) run(ctx context.Context, in <-chan *changeBatch, out chan<- *recordBatch) error {
	defer close(out)
	var (
		rb       = &recordBatch{}
		inTx     bool
		tx       txProgress
		skipAll  bool  // the transaction is wholly in Kafka already
		skipUpTo int64 // its first skipUpTo changes are
	)
	for cb := range in {
		now := time.Now().UnixMilli()
		if s.keyText != nil {
			if err := s.keyText.render(ctx, s, cb); err != nil {
				return err
			}
		}
		s.toast.batch(cb.changes)
		for i := range cb.changes {
			ch := &cb.changes[i]
			switch ch.Op {
			case pgsrc.OpBegin:
				inTx = true
				tx = txProgress{commitLSN: ch.CommitLSN, xid: ch.Xid}
				skipAll, skipUpTo = s.inKafka(ch.CommitLSN)
			case pgsrc.OpCommit:
				inTx = false
				if !skipAll {
					rb.commitLSN, rb.commitTime = ch.EndLSN, ch.CommitTime
				}
				if s.restartPending && s.windows == 0 {
					rb.restart = true
					if err := send(ctx, out, rb); err != nil {
						return err
					}
					return nil // the producer restarts the session after it
				}
				if rb.full() || s.gap {
					s.gap = false
					rb.hold = s.windows > 0
					if err := send(ctx, out, rb); err != nil {
						return err
					}
					rb = &recordBatch{}
				}
			case pgsrc.OpRelation:
				s.relLSN = ch.CommitLSN // pgoutput sends Relation messages at LSN 0
				_, err := s.table(ctx, ch.Rel)
				s.relLSN = 0
				if err != nil {
					return err
				}
			default:
				if ch.Op == pgsrc.OpMessage && !ch.Transactional {
					// Between transactions (protocol 1 never interleaves
					// one): its LSN is a position to checkpoint, as a
					// commit's end is (message.go).
					if s.messageInKafka(uint64(ch.LSN)) {
						continue
					}
					s.encodeMessage(ch, now, rb)
					if !inTx {
						rb.commitLSN = max(rb.commitLSN, ch.LSN)
						if rb.full() {
							rb.hold = s.windows > 0
							if err := send(ctx, out, rb); err != nil {
								return err
							}
							rb = &recordBatch{}
						}
					}
					continue
				}
				// A row change, a truncate or a transactional message: a
				// change of the transaction, counted for the resume.
				tx.changes++
				if skipAll || tx.changes <= skipUpTo {
					continue // Kafka has it: PostgreSQL sent it again
				}
				if ch.Op == pgsrc.OpMessage {
					s.encodeMessage(ch, now, rb)
				} else if err := s.encode(ctx, ch, now, rb); err != nil {
					return err
				}
				s.toast.release(ch)
				if inTx && rb.full() {
					// A transaction larger than a batch: cut it between
					// two changes; its progress goes with the batch.
					rb.partial, rb.tx, rb.hold = true, tx, s.windows > 0
					if err := send(ctx, out, rb); err != nil {
						return err
					}
					rb = &recordBatch{}
				}
			}
		}
		if cb.advance != 0 && !inTx {
			rb.commitLSN = max(rb.commitLSN, cb.advance)
		}
		if !inTx && (len(rb.recs) > 0 || rb.commitLSN != 0 || rb.tables != nil) {
			rb.hold = s.windows > 0
			if err := send(ctx, out, rb); err != nil {
				return err
			}
			rb = &recordBatch{}
		}
	}
	// The reader ends only between transactions; anything else is a failure
	// upstream, and the open transaction is resent after the restart.
	if !inTx && s.windows == 0 && (len(rb.recs) > 0 || rb.commitLSN != 0 || rb.tables != nil) {
		return send(ctx, out, rb)
	}
	return nil
}

// inKafka tells, from the checkpoint resumed from, whether the transaction
// committing at commitLSN is wholly in Kafka, or how many of its first
// changes are.
//
// Invariant: a change at or below the checkpoint is never produced twice.
// The checkpoint's LSN is the end of the last transaction in Kafka (or an
// idle position), so a transaction whose commit LSN is below it is in.
func (s *serializerStage) inKafka(commitLSN pglogrepl.LSN) (all bool, first int64) {
	cp := s.resume
	switch {
	case cp == nil:
		return false, 0
	case commitLSN < cp.LSN:
		return true, 0
	case cp.Partial != nil && cp.Partial.CommitLSN == commitLSN:
		return false, cp.Partial.Changes
	}
	return false, 0
}

// table returns the codec of rel's current shape, building it (and
// registering its schemas) the first time that shape is seen.
func (s *serializerStage) table(ctx context.Context, rel *pgsrc.Relation) (*tableCodec, error) {
	if tc := s.tables[rel.ID]; tc != nil && tc.rel == rel {
		return tc, nil
	}
	tc, err := s.build(ctx, rel)
	if err != nil {
		return nil, err
	}
	s.tables[rel.ID] = tc
	return tc, nil
}

// build makes the codec of rel (and registers its schemas).
func (s *serializerStage) build(ctx context.Context, rel *pgsrc.Relation) (*tableCodec, error) {
	ref := pgsrc.TableRef{Schema: rel.Namespace, Name: rel.Name}
	info := s.bound[ref]
	tc := &tableCodec{rel: rel, marks: ref == s.marksRef, backfill: s.backfills[ref]}
	if info == nil {
		return tc, nil
	}
	st, err := s.schemaTable(ctx, rel, info)
	if err != nil {
		return nil, err
	}
	if err := s.registry.Inherit(ctx, &st); err != nil {
		return nil, fmt.Errorf("reading the registered schema of %s: %w", ref, err)
	}
	codec, err := schema.NewCodec(st, s.cfg.Format, s.source)
	if err != nil {
		return nil, fmt.Errorf("building the schema of %s: %w", ref, err)
	}
	forced, err := s.registry.Register(ctx, codec)
	if err != nil {
		return nil, s.registerError(ref, err)
	}
	s.warnForced(ref, forced)
	tc.codec, tc.topic, tc.key = codec, st.Topic, st.Key
	tc.compacted = isCompacted(s.cfg.Kafka.Topics.Config)
	tc.counts = s.metrics.opCounters(tc.topic)
	tc.toast = s.toast.table(info, rel)
	s.log.Debug("relation", "table", ref.String(), "version", rel.Version, "topic", tc.topic)
	return tc, nil
}

// schemaTable describes rel for the schema package: column types from the
// catalog, re-read when rel no longer matches it (schemachange.go: a column
// added, renamed or of another type, or any later Relation message), key
// from the primary key or the replica identity index. A column added with a
// default PostgreSQL gives older rows carries it; a renamed one, its former
// name.
func (s *serializerStage) schemaTable(ctx context.Context, rel *pgsrc.Relation, info *pgsrc.Table) (schema.Table, error) {
	ref := info.Ref()
	info, renamed, err := s.refresh(ctx, rel, info)
	if err != nil {
		return schema.Table{}, err
	}
	cols := columnsByName(info)
	st := schema.Table{
		Topic:     s.cfg.TopicFor(ref),
		Namespace: s.cfg.Kafka.TopicPrefix + "." + ref.Schema + "." + ref.Name,
		Schema:    ref.Schema,
		Name:      ref.Name,
	}
	for _, rc := range rel.Columns {
		c := cols[rc.Name]
		var t *pgsrc.Type
		mod := rc.TypeMod
		known := c != nil && c.Type.OID == rc.TypeOID
		if known {
			var dmod int32
			t, dmod = c.Resolved()
			if c.Type.Kind == pgsrc.KindDomain {
				mod = dmod
			}
		} else {
			var err error
			if t, err = s.catalog.Type(ctx, rc.TypeOID); err != nil {
				return schema.Table{}, fmt.Errorf("type of column %q of %s: %w", rc.Name, ref, err)
			}
			var dmod int32
			if t, dmod = t.Resolved(); dmod != -1 {
				mod = dmod
			}
		}
		col := schema.Column{
			Name:     rc.Name,
			Type:     schemaType(t, mod),
			Nullable: c == nil || !c.NotNull,
		}
		if known && c.HasMissing {
			col.Default, col.HasDefault = c.Missing, true
		}
		if old, ok := renamed[rc.Name]; ok {
			col.Aliases = []string{old}
		}
		st.Columns = append(st.Columns, col)
	}
	keyCols := info.PrimaryKey
	if len(keyCols) == 0 && info.ReplicaIdentity == 'i' {
		keyCols = info.IdentityIndex
	}
	for _, name := range keyCols {
		for i, rc := range rel.Columns {
			if rc.Name == name {
				st.Key = append(st.Key, i)
			}
		}
	}
	return st, nil
}

func columnsByName(t *pgsrc.Table) map[string]*pgsrc.Column {
	m := make(map[string]*pgsrc.Column, len(t.Columns))
	for i := range t.Columns {
		m[t.Columns[i].Name] = &t.Columns[i]
	}
	return m
}

func schemaType(t *pgsrc.Type, typmod int32) schema.Type {
	st := schema.Type{OID: t.OID, Name: t.Name, Category: t.Category, Typmod: typmod}
	if t.Elem != nil {
		// The array's typmod is its elements' (numeric(10,2)[]); a domain
		// element (cents[], cents a domain over numeric(6,2)) has its own.
		e, emod := t.Elem.Resolved()
		if emod == -1 {
			emod = typmod
		}
		et := schemaType(e, emod)
		st.Elem = &et
	}
	return st
}

func isCompacted(topicConfig map[string]string) bool {
	return strings.Contains(topicConfig["cleanup.policy"], "compact")
}

// encode appends the records of one row change (or truncate) to rb.
func (s *serializerStage) encode(ctx context.Context, ch *pgsrc.Change, nowMs int64, rb *recordBatch) error {
	if ch.Op == pgsrc.OpTruncate {
		for _, rel := range ch.Truncated {
			tc, err := s.table(ctx, rel)
			if err != nil {
				return err
			}
			s.toast.forgetTable(tc)
			if tc.codec == nil || tc.compacted {
				continue // compacted topics refuse null keys
			}
			s.setEvent(ch, schema.OpTruncate, nil, nil, nowMs)
			if err := s.emit(tc, ch, rb, nil, false); err != nil {
				return err
			}
		}
		return nil
	}
	tc, err := s.table(ctx, ch.Rel)
	if err != nil {
		return err
	}
	if tc.marks {
		return s.onWatermark(ctx, ch, nowMs, rb)
	}
	if tc.codec == nil {
		return nil
	}
	// passes: a table being backfilled keeps only the changes the backfill
	// will not read (backfill.go).
	passes := func(tuple []pgsrc.Value) bool {
		b := tc.backfill
		if b == nil || b.done || b.order == nil {
			return true
		}
		k, ok := s.keyOf(tc, tuple)
		if !ok {
			// A key pgoutput did not send (an unchanged TOASTed key column)
			// cannot be placed: let the change through.
			return true
		}
		return b.passes(k)
	}
	switch ch.Op {
	case pgsrc.OpInsert:
		s.toast.observe(tc, ch.New)
		if !passes(ch.New) {
			return nil
		}
		s.after = datums(s.after, ch.New)
		s.setEvent(ch, schema.OpCreate, nil, s.after, nowMs)
		return s.emit(tc, ch, rb, s.after, false)
	case pgsrc.OpUpdate:
		// The TOASTed values pgoutput leaves out as unchanged (DESIGN §4).
		if err := s.toast.update(ctx, tc, ch, passes); err != nil {
			return err
		}
		s.after = datums(s.after, ch.New)
		var before []schema.Datum
		if ch.Old != nil {
			s.before = datums(s.before, ch.Old)
			before = s.before
			if tc.codec.Keyed() && (ch.OldKind == 'K' || s.keyChanged(tc, before, s.after)) {
				// The key changed: the old key is deleted, the new one created.
				if passes(ch.Old) {
					s.setEvent(ch, schema.OpDelete, before, nil, nowMs)
					if err := s.emit(tc, ch, rb, before, true); err != nil {
						return err
					}
				}
				if !passes(ch.New) {
					return nil
				}
				s.setEvent(ch, schema.OpCreate, nil, s.after, nowMs)
				return s.emit(tc, ch, rb, s.after, false)
			}
			if ch.OldKind != 'O' {
				before = nil
			}
		}
		if !passes(ch.New) {
			return nil
		}
		s.setEvent(ch, schema.OpUpdate, before, s.after, nowMs)
		return s.emit(tc, ch, rb, s.after, false)
	case pgsrc.OpDelete:
		s.toast.forget(tc, ch.Old)
		if !passes(ch.Old) {
			return nil
		}
		s.before = datums(s.before, ch.Old)
		s.setEvent(ch, schema.OpDelete, s.before, nil, nowMs)
		return s.emit(tc, ch, rb, s.before, true)
	}
	return nil
}

// keyOf returns the key columns' text of a tuple, in a reused buffer; ok
// is false when one of them was not sent.
func (s *serializerStage) keyOf(tc *tableCodec, tuple []pgsrc.Value) (key [][]byte, ok bool) {
	s.key = s.key[:0]
	for _, i := range tc.key {
		if tuple[i].Kind != pgsrc.ValueText {
			return nil, false
		}
		s.key = append(s.key, tuple[i].Data)
	}
	return s.key, true
}

// keyChanged reports whether the key columns differ between two images.
func (s *serializerStage) keyChanged(tc *tableCodec, before, after []schema.Datum) bool {
	for _, i := range tc.key {
		b, a := before[i], after[i]
		if b.Unchanged || a.Unchanged {
			continue
		}
		if b.Null != a.Null || !bytes.Equal(b.Text, a.Text) {
			return true
		}
	}
	return false
}

func (s *serializerStage) setEvent(ch *pgsrc.Change, op schema.Op, before, after []schema.Datum, nowMs int64) {
	s.ev = schema.Event{
		Op:       op,
		Before:   before,
		After:    after,
		TsMs:     ch.CommitTime.UnixMilli(),
		TxID:     int64(ch.Xid),
		LSN:      int64(ch.LSN),
		Snapshot: "false",
		NowMs:    nowMs,
	}
}

// emit appends the record of s.ev keyed by keyRow; a delete is followed by
// its tombstone.
func (s *serializerStage) emit(tc *tableCodec, ch *pgsrc.Change, rb *recordBatch, keyRow []schema.Datum, tombstone bool) error {
	var key []byte
	if tc.codec.Keyed() && s.ev.Op != schema.OpTruncate {
		off := len(rb.slab)
		var err error
		if rb.slab, err = tc.codec.AppendKey(rb.slab, keyRow); err != nil {
			return s.encodeError(tc, ch, err)
		}
		key = rb.slab[off:len(rb.slab):len(rb.slab)]
	}
	off := len(rb.slab)
	var err error
	rb.slab, err = tc.codec.AppendValue(rb.slab, &s.ev)
	switch {
	case errors.Is(err, schema.ErrNotRepresentable):
		rb.slab = rb.slab[:off]
	case err != nil:
		return s.encodeError(tc, ch, err)
	default:
		rb.recs = append(rb.recs, kgo.Record{Topic: tc.topic, Key: key, Value: rb.slab[off:len(rb.slab):len(rb.slab)]})
		tc.counts[s.ev.Op].Inc()
	}
	if tombstone && key != nil {
		rb.recs = append(rb.recs, kgo.Record{Topic: tc.topic, Key: key})
	}
	return nil
}

func (s *serializerStage) encodeError(tc *tableCodec, ch *pgsrc.Change, err error) error {
	err = fmt.Errorf("encoding %s of %s.%s at LSN %s: %w", ch.Op, tc.rel.Namespace, tc.rel.Name, pglogrepl.LSN(ch.LSN), err)
	if errors.Is(err, schema.ErrUnavailable) {
		ref := pgsrc.TableRef{Schema: tc.rel.Namespace, Name: tc.rel.Name}
		err = fmt.Errorf("%w: the update left it unchanged, no earlier value of it was seen, and the row is no longer in the database; "+
			"to write null instead in nullable columns, set toast.unavailable: null and restart; "+
			"to have later updates carry their unchanged values, run ALTER TABLE %s REPLICA IDENTITY FULL", err, ref.Quoted())
	}
	return err
}

// datums converts pgoutput values to schema datums, reusing buf.
func datums(buf []schema.Datum, vals []pgsrc.Value) []schema.Datum {
	buf = buf[:0]
	for _, v := range vals {
		buf = append(buf, schema.Datum{Text: v.Data, Binary: v.Kind == pgsrc.ValueBinary, Null: v.Kind == pgsrc.ValueNull, Unchanged: v.Kind == pgsrc.ValueUnchanged})
	}
	return buf
}
