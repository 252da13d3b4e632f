package pipeline

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/offsets"
	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// A lost slot without losing deletes (source.advanced.onSlotLost:
// rebackfill). When the slot is gone or invalidated while a checkpoint
// exists, the changes since the checkpoint are gone from the WAL. Reading
// the tables again brings every row back, but not the rows deleted during
// the gap: their keys would live on in the topics. So the session
//
//  1. writes a checkpoint marking every keyed table to be backfilled again
//     from its start with the mark "purge after backfill" (Purge), and the
//     loss itself (SlotLost, Pending);
//  2. drops the slot if it remains (an invalidated slot cannot be used),
//     lets pgsrc.Setup create it again, and writes the checkpoint again at
//     the new slot's start (Pending cleared);
//  3. backfills every table (DBLog, dblog.go) while streaming from the new
//     slot;
//  4. at the end of each table's backfill, in the Kafka transaction that
//     marks the table streaming, writes a 'd' record and a tombstone for
//     each key the purge set still holds.
//
// The purge set of a table is the keys its topic holds (its compacted
// state as a read_committed consumer sees it) when the session starts,
// before this session writes anything, minus every key the backfill read
// (every row of every chunk, whatever became of its record), minus every
// key of a change the stream emitted for the table during the backfill
// (dblog.admit). A key left is one no chunk read, so absent from the
// table in its chunk's snapshot, and that no later change gave back: a
// change after that snapshot to a key of the chunk's range is admitted
// (in the window, or behind the cursor), and one before it is in the
// snapshot. So a key left is absent from the table at the point of the
// stream where the purge is written, and its delete is right there. A key
// the stream deleted during the backfill got its delete and tombstone from
// the stream and has left the set (a second one would be harmless, a
// missing one is the bug avoided); a key inserted by the stream has left
// the set too, and is never deleted.
//
// A session that stops during the re-backfill restarts the table's
// backfill from its start (the cursor is not kept), since the keys read
// behind it are not known to the next session: the rows are read again,
// and the purge set is read from the topic again.
//
// Cost: the purge set holds each key once (its Avro bytes) with 16 bytes
// of position, about 60 bytes plus the key's size per key in Go's map, per
// table backfilled at once; reading it reads the whole topic once.

// recordPos is where the latest record of a key sits.
type recordPos struct {
	partition int32
	offset    int64
}

// purgeSet is the keys of a table's topic not yet seen in the re-backfill
// of the table, by their unframed Avro bytes. The serializer's alone.
type purgeSet struct {
	topic string
	why   string // "after a lost slot", "for a repair": for the log
	keys  map[string]recordPos
	// scratch
	key   []byte
	after []schema.Datum
}

// listedKeys reads purge keys (base64, checked by
// BackfillRequest.checkPurge) into the set of their unframed bytes.
func listedKeys(listed []string) map[string]bool {
	keys := make(map[string]bool, len(listed))
	for _, k := range listed {
		if b, err := base64.StdEncoding.DecodeString(k); err == nil {
			keys[string(b)] = true
		}
	}
	return keys
}

// seen drops the key encoded (framed) as key from the set.
func (p *purgeSet) seen(key []byte) {
	if len(key) >= 5 {
		delete(p.keys, string(key[5:]))
	}
}

// seenRow drops the key of row (all the table's columns sent) from the set.
func (p *purgeSet) seenRow(tc *tableCodec, row []pgsrc.Value) {
	p.after = datums(p.after, row)
	var err error
	if p.key, err = tc.codec.AppendKey(p.key[:0], p.after); err == nil {
		p.seen(p.key)
	}
}

// rebackfillLostSlot handles a slot found lost (or a re-backfill whose new
// slot was never made) under onSlotLost: rebackfill: steps 1 and 2 above,
// up to the slot's drop; recreateSlot finishes step 2 after pgsrc.Setup.
func (s *session) rebackfillLostSlot(ctx context.Context, slot *pgsrc.SlotStatus, why string) error {
	cfg := s.cfg
	cp := s.resumed.Clone()
	if cp.SlotLost == nil || !cp.SlotLost.Pending {
		s.log.Warn("replication slot lost: creating it again and backfilling every table again, then removing from each topic the keys its table no longer has (source.advanced.onSlotLost: rebackfill)",
			"slot", slot.Name, "why", why, "lsn", cp.LSN.String(), "tables", len(s.tables))
		if m := s.r.metrics; m != nil {
			m.slotLost.Inc()
		}
		cp.SlotLost = &offsets.SlotLost{Slot: slot.Name, LSN: cp.LSN, At: time.Now(), Pending: true}
		if cp.Tables == nil {
			cp.Tables = map[string]offsets.TableState{}
		}
		for i := range s.tables {
			t := &s.tables[i]
			if cfg.outboxOf(t.Ref()) != nil {
				continue // its rows there are past events
			}
			cp.Tables[t.Ref().String()] = offsets.TableState{State: offsets.StateBackfilling, OID: t.OID, Purge: s.purgeable(t)}
		}
		cp.Partial = nil
		if err := s.writeCheckpoint(ctx, cp); err != nil {
			return err
		}
	} else {
		s.log.Warn("re-backfill after a lost slot: the new slot was not made; making it again", "slot", slot.Name, "lsn", cp.SlotLost.LSN.String())
	}
	if slot.Exists {
		if err := s.catalog.DropSlot(ctx, slot.Name); err != nil {
			return err
		}
	}
	s.resumed = cp
	s.slotRecreated = true
	return nil
}

// recreateSlot ends step 2: the slot made again by pgsrc.Setup, the
// checkpoint moves to its start.
func (s *session) recreateSlot(ctx context.Context) error {
	slot, err := s.catalog.Slot(ctx, s.cfg.Source.Advanced.SlotName)
	if err != nil {
		return err
	}
	if !slot.Exists {
		return fmt.Errorf("%w: slot %q was not created again", ErrSlotLost, slot.Name)
	}
	cp := s.resumed
	cp.LSN = slot.ConfirmedFlush
	cp.SlotLost.Pending = false
	if err := s.writeCheckpoint(ctx, cp); err != nil {
		return err
	}
	s.log.Warn("replication slot created again: every table is backfilled again from its start", "slot", slot.Name, "lsn", cp.LSN.String(), "lost_at_lsn", cp.SlotLost.LSN.String())
	return nil
}

// purgeable reports whether t's topic can be purged of keys t no longer
// has: t has a key and its topic is its own.
func (s *session) purgeable(t *pgsrc.Table) bool {
	if len(t.KeyColumns) == 0 {
		return false
	}
	topic := s.cfg.TopicFor(t.Ref())
	for _, ref := range s.refs {
		if ref != t.Ref() && s.cfg.TopicFor(ref) == topic {
			return false
		}
	}
	return true
}

// writeCheckpoint writes cp alone in a Kafka transaction.
func (s *session) writeCheckpoint(ctx context.Context, cp *offsets.Checkpoint) error {
	cp.UpdatedAt = time.Now()
	rec, err := cp.Record(s.cfg.Kafka.OffsetsTopic, s.cfg.Name)
	if err != nil {
		return err
	}
	if err := s.client.BeginTransaction(); err != nil {
		return s.r.refused(ctx, fmt.Errorf("beginning a Kafka transaction: %w", err))
	}
	if err := s.client.ProduceSync(ctx, rec).FirstErr(); err != nil {
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		return errors.Join(fmt.Errorf("writing the checkpoint: %w", err), s.client.EndTransaction(ectx, kgo.TryAbort))
	}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	if err := s.client.EndTransaction(ectx, kgo.TryCommit); err != nil {
		return s.r.refused(ctx, fmt.Errorf("committing the checkpoint: %w", err))
	}
	return nil
}

// readPurgeSets reads, for each table to backfill with the purge mark, the
// keys its topic holds (step 4's set), before the stages start.
func (s *session) readPurgeSets(ctx context.Context) error {
	var marked []*tableBackfill
	for _, b := range s.order {
		if b.purgeMark {
			marked = append(marked, b)
		}
	}
	if len(marked) == 0 {
		return nil
	}
	kopts, err := s.cfg.Kafka.clientOpts(discardLogger())
	if err != nil {
		return err
	}
	dec, err := schema.NewDecoder(s.cfg.SchemaRegistry)
	if err != nil {
		return err
	}
	v := &verifier{cfg: s.cfg, kopts: kopts, dec: dec, seed: maphash.MakeSeed()}
	for _, b := range marked {
		topic := s.cfg.TopicFor(b.info.Ref())
		start := time.Now()
		var only map[string]bool
		if b.purgeKeys != nil {
			only = listedKeys(b.purgeKeys)
		}
		p, err := readPurgeSet(ctx, v, s.admin, topic, s.cfg.Format.Envelope == string(schema.EnvelopeFlat), only)
		if err != nil {
			return fmt.Errorf("reading the keys of topic %s for the re-backfill of %s: %w", topic, b.info.Ref(), err)
		}
		p.why = "after a lost slot"
		if only != nil {
			p.why = "for a repair"
		}
		b.purge = p
		s.log.Info("re-backfill "+p.why+": keys of the topic read; those the backfill does not find are removed at its end",
			"table", b.info.Ref().String(), "topic", topic, "keys", len(p.keys), "took", time.Since(start).Round(time.Millisecond).String())
	}
	s.purger = &purger{kopts: kopts, dec: dec, metrics: s.r.metrics, log: s.log.With("stage", "serializer")}
	return nil
}

// readPurgeSet reads topic up to its end into the keys it holds; only
// those of only, when set (a key it lists that the topic does not hold
// has nothing to remove).
func readPurgeSet(ctx context.Context, v *verifier, adm *kadm.Client, topic string, flat bool, only map[string]bool) (*purgeSet, error) {
	ts := &topicSide{v: v, topic: topic, flat: flat, adm: adm, next: map[int32]int64{}, state: map[string]topicEntry{}, only: only}
	defer func() {
		if ts.client != nil {
			ts.client.Close()
		}
	}()
	if err := ts.readToEnd(ctx); err != nil {
		return nil, err
	}
	p := &purgeSet{topic: topic, keys: make(map[string]recordPos, len(ts.state))}
	for k, e := range ts.state {
		if e.present {
			p.keys[k] = recordPos{partition: e.partition, offset: e.offset}
		}
	}
	return p, nil
}

// purger writes the removal of the keys a purge set holds at the end of a
// table's re-backfill.
type purger struct {
	kopts   []kgo.Opt
	dec     *schema.Decoder
	metrics *Metrics
	log     *slog.Logger
}

// purge appends to rb, for each key p still holds, a 'd' record (before:
// the key's latest record's after image) and a tombstone (unless
// format.tombstones is off), keyed by the topic's own key bytes.
func (pg *purger) purge(ctx context.Context, ref pgsrc.TableRef, p *purgeSet, tombstones bool, rb *recordBatch) error {
	if len(p.keys) == 0 {
		pg.log.Info("re-backfill "+p.why+": no key to remove", "table", ref.String(), "topic", p.topic)
		return nil
	}
	want := map[int32]map[int64]bool{}
	for _, pos := range p.keys {
		if want[pos.partition] == nil {
			want[pos.partition] = map[int64]bool{}
		}
		want[pos.partition][pos.offset] = true
	}
	from := map[int32]kgo.Offset{}
	for part, offs := range want {
		from[part] = kgo.NewOffset().At(slices.Min(slices.Collect(maps.Keys(offs))))
	}
	cl, err := kgo.NewClient(append(slices.Clone(pg.kopts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{p.topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return fmt.Errorf("kafka consumer: %w", err)
	}
	defer cl.Close()
	nowMs := time.Now().UnixMilli()
	left, keyOnly := len(p.keys), 0
	for left > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		for _, fe := range fs.Errors() {
			return fmt.Errorf("reading topic %s[%d]: %w", fe.Topic, fe.Partition, fe.Err)
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			if !want[r.Partition][r.Offset] {
				continue
			}
			delete(want[r.Partition], r.Offset)
			left--
			val, err := pg.dec.DeleteOf(ctx, r.Value, nowMs)
			if err != nil {
				keyOnly++ // the tombstone alone removes the key
				pg.log.Debug("re-backfill "+p.why+": no delete record for a key, only its tombstone", "table", ref.String(), "err", err)
			} else {
				rb.recs = append(rb.recs, kgo.Record{Topic: p.topic, Key: r.Key, Value: val})
			}
			if tombstones || err != nil {
				rb.recs = append(rb.recs, kgo.Record{Topic: p.topic, Key: r.Key})
			}
		}
	}
	if pg.metrics != nil {
		pg.metrics.purged.WithLabelValues(ref.String()).Add(float64(len(p.keys)))
	}
	pg.log.Warn("re-backfill "+p.why+": keys the table no longer has removed from the topic",
		"table", ref.String(), "topic", p.topic, "keys", len(p.keys), "tombstone_only", keyOnly)
	return nil
}

// purgeable reports whether b's table can have its topic purged: keyed,
// and read in the whole, or by a condition that reads each of the keys to
// purge (a repair's).
func (b *tableBackfill) purgeable() bool {
	return b.order != nil && (b.where == "" || len(b.purgeKeys) > 0)
}
