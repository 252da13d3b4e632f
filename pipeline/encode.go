package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// rowEncoder writes the records of row changes; its buffers are reused
// from one change to the next.
type rowEncoder struct {
	before, after []schema.Datum
	ev            schema.Event
	limit         *oversize // kafka.maxRecordBytes
	tombstones    bool      // format.tombstones
	txm           *txMeta   // format.transactionMetadata; nil when off
}

// encode appends the records of one row change (or truncate) to rb.
func (s *serializerStage) encode(ctx context.Context, ch *pgsrc.Change, nowMs int64, rb *recordBatch) error {
	if ch.Op == pgsrc.OpTruncate {
		return s.encodeTruncate(ctx, ch, nowMs, rb)
	}
	tc, err := s.codecs.of(ctx, ch.Rel)
	if err != nil {
		return err
	}
	if tc.watermarks {
		return s.dblog.onWatermark(ctx, s.codecs, ch, rb)
	}
	if tc.outbox != nil {
		return s.outbox.encode(ctx, tc, ch, rb)
	}
	if tc.codec == nil {
		return nil
	}
	e := &s.rows
	switch ch.Op {
	case pgsrc.OpInsert:
		s.toast.observe(tc, ch.New)
		if !s.dblog.admit(tc, ch.New) {
			return nil
		}
		e.after = datums(e.after, ch.New)
		e.set(ch, schema.OpCreate, nil, e.after, nowMs)
		return e.emit(tc, ch, rb, e.after, false)
	case pgsrc.OpUpdate:
		return s.encodeUpdate(ctx, tc, ch, nowMs, rb)
	case pgsrc.OpDelete:
		s.toast.forget(tc, ch.Old)
		if !s.dblog.admit(tc, ch.Old) {
			return nil
		}
		e.before = datums(e.before, ch.Old)
		e.set(ch, schema.OpDelete, e.before, nil, nowMs)
		return e.emit(tc, ch, rb, e.before, true)
	}
	return nil
}

// encodeTruncate appends a 't' record for each truncated table whose topic
// takes null keys.
func (s *serializerStage) encodeTruncate(ctx context.Context, ch *pgsrc.Change, nowMs int64, rb *recordBatch) error {
	for _, rel := range ch.Truncated {
		tc, err := s.codecs.of(ctx, rel)
		if err != nil {
			return err
		}
		s.toast.forgetTable(tc)
		if tc.codec == nil || tc.compacted {
			continue // compacted topics refuse null keys
		}
		s.rows.set(ch, schema.OpTruncate, nil, nil, nowMs)
		if err := s.rows.emit(tc, ch, rb, nil, false); err != nil {
			return err
		}
	}
	return nil
}

// encodeUpdate appends the records of an update: its unchanged TOASTed
// values filled (DESIGN §4), and, when it changed the key, a delete of the
// old key and a create of the new one.
func (s *serializerStage) encodeUpdate(ctx context.Context, tc *tableCodec, ch *pgsrc.Change, nowMs int64, rb *recordBatch) error {
	if err := s.toast.update(ctx, tc, ch, func(tuple []pgsrc.Value) bool { return s.dblog.admit(tc, tuple) }); err != nil {
		return err
	}
	e := &s.rows
	e.after = datums(e.after, ch.New)
	var before []schema.Datum
	if ch.Old != nil {
		e.before = datums(e.before, ch.Old)
		before = e.before
		// An old key tuple ('K') says the table's own key changed: the
		// Kafka key did when it is that key (a binding's key may not have).
		ownKey := slices.Equal(tc.key, tc.msgKey)
		if tc.codec.Keyed() && ((ch.OldKind == 'K' && ownKey) || keyChanged(tc, before, e.after)) {
			// The key changed: the old key is deleted, the new one created.
			if s.dblog.admit(tc, ch.Old) {
				e.set(ch, schema.OpDelete, before, nil, nowMs)
				if err := e.emit(tc, ch, rb, before, true); err != nil {
					return err
				}
			}
			if !s.dblog.admit(tc, ch.New) {
				return nil
			}
			e.set(ch, schema.OpCreate, nil, e.after, nowMs)
			return e.emit(tc, ch, rb, e.after, false)
		}
		if ch.OldKind != 'O' {
			before = nil
		}
	}
	if !s.dblog.admit(tc, ch.New) {
		return nil
	}
	e.set(ch, schema.OpUpdate, before, e.after, nowMs)
	return e.emit(tc, ch, rb, e.after, false)
}

// keyChanged reports whether the Kafka key's columns differ between two
// images.
func keyChanged(tc *tableCodec, before, after []schema.Datum) bool {
	for _, i := range tc.msgKey {
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

// set makes the event of the record to write.
func (e *rowEncoder) set(ch *pgsrc.Change, op schema.Op, before, after []schema.Datum, nowMs int64) {
	e.ev = schema.Event{
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

// emit appends the record of the event keyed by keyRow; a delete is
// followed by its tombstone.
func (e *rowEncoder) emit(tc *tableCodec, ch *pgsrc.Change, rb *recordBatch, keyRow []schema.Datum, tombstone bool) error {
	var key []byte
	if tc.codec.Keyed() && e.ev.Op != schema.OpTruncate {
		off := len(rb.slab)
		var err error
		if rb.slab, err = tc.codec.AppendKey(rb.slab, keyRow); err != nil {
			return encodeError(tc, ch, err)
		}
		key = rb.slab[off:len(rb.slab):len(rb.slab)]
	}
	off := len(rb.slab)
	e.ev.Tx = e.txm.next(tc)
	var err error
	rb.slab, err = tc.codec.AppendValue(rb.slab, &e.ev)
	switch {
	case errors.Is(err, schema.ErrNotRepresentable):
		rb.slab = rb.slab[:off]
	case err != nil:
		return encodeError(tc, ch, err)
	default:
		rec := kgo.Record{Topic: tc.topic, Key: key, Value: rb.slab[off:len(rb.slab):len(rb.slab)]}
		if !e.limit.fits(rec.Key, rec.Value) {
			dead, err := e.limit.handle(&rec, recordSite{tc: tc, keyRow: keyRow, lsn: ch.LSN, op: e.ev.Op})
			rb.slab = rb.slab[:off]
			if err != nil {
				return err
			}
			if dead != nil {
				rb.recs = append(rb.recs, *dead)
			}
			break
		}
		if e.ev.Tx != nil {
			e.txm.written(tc, rb) // a BEGIN goes before the first
		}
		rec.Headers = e.headers(tc, rb)
		rb.recs = append(rb.recs, rec)
		tc.counts[e.ev.Op].Inc()
	}
	if tombstone && key != nil && e.tombstones {
		rb.recs = append(rb.recs, kgo.Record{Topic: tc.topic, Key: key, Headers: e.headers(tc, rb)})
	}
	return nil
}

// headers appends the kafka.headers of the event to rb and returns them
// (nil without kafka.headers).
func (e *rowEncoder) headers(tc *tableCodec, rb *recordBatch) []kgo.RecordHeader {
	if tc.headers == nil {
		return nil
	}
	start := len(rb.hdrs)
	rb.hdrs, rb.slab = tc.headers.appendTo(rb.hdrs, rb.slab, e.ev.Op, e.ev.LSN, e.ev.TxID, e.ev.TsMs)
	return rb.hdrs[start:len(rb.hdrs):len(rb.hdrs)]
}

func encodeError(tc *tableCodec, ch *pgsrc.Change, err error) error {
	err = fmt.Errorf("encoding %s of %s at LSN %s: %w", ch.Op, tc.ref, pglogrepl.LSN(ch.LSN), err)
	if errors.Is(err, schema.ErrUnavailable) {
		err = fmt.Errorf("%w: the update left it unchanged, no earlier value of it was seen, and the row is no longer in the database; "+
			"to write null instead in nullable columns, set toast.unavailable: null and restart; "+
			"to have later updates carry their unchanged values, run ALTER TABLE %s REPLICA IDENTITY FULL", err, tc.ref.Quoted())
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
