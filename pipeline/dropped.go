package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pgkafka/pgkafka/offsets"
	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// Dropped tables. pgoutput sends no DDL: a DROP TABLE shows in the stream
// only as the end of the table's changes, and the changes committed before
// it still come, decoded by PostgreSQL with the catalog as it was, after
// the catalog has lost the table. So pgkafka cannot read the catalog to
// know them, and must not fail for want of it:
//
//   - The stream describes them. A Relation message carries the relation
//     ID, its name, and each column's name, type and typmod; the topic's
//     registered schemas (schema.Registry.Registered) give the rest: which
//     fields make the key (so key bytes, partitions and compaction keys
//     stay what they were, whatever the replica identity) and which are
//     nullable. The codec of a dropped relation is built from those alone
//     (droppedSchemaTable), never from a table of the same name that may
//     exist now, and its changes pass no backfill filter and read no row
//     from the database (TOAST): the rows are gone.
//   - The drop is known by the catalog's lack of the relation, when pgkafka
//     reads it: at the start of a session (a bound table missing that the
//     checkpoint knows: dropped while pgkafka was stopped, or before a
//     crash) and whenever a Relation message makes it read the catalog (the
//     stream behind the catalog). The WAL position read then (droppedTable.at)
//     is past the DROP's commit, so every change of the table is below it.
//     The checkpoint records the table as dropped at that position (state
//     dropped, droppedAt), in the Kafka transaction that follows; once the
//     checkpoint's LSN reaches it, Kafka holds every change of the table,
//     exactly once like any other change, and the binding ends with a log
//     line. A restart before that replays them from the slot as usual; a
//     restart after it warns that the binding names a dropped table whose
//     changes are all in its topic, and starts.
//   - A table dropped and created again under the same name is another
//     relation (another ID). The former relation's changes up to the drop
//     go to the topic as above; the binding goes on with the new table, as
//     Debezium's does, from its creation: its changes before this session
//     added it to the publication are not in the stream, so it is
//     backfilled (unless listed in source.advanced.skip_backfills). The
//     checkpoint keeps each table's relation ID to tell them apart.
//   - A bound table the checkpoint never knew that does not exist is a
//     wrong binding, and fails as before (pgsrc.TableNotFoundError).
//
// A table created again while pgkafka runs is not in the publication (or
// is, and its earlier rows are not in the stream): when pgkafka sees it (a
// Relation message of either relation, read against the catalog), the
// session restarts once the transaction is in Kafka (restartPending), and
// the next one backfills the new table.
//
// Without a Relation message of the table after the drop, the serializer
// finds it out every dropCheckInterval, between transactions
// (checkDrops): the bound relations gone from the catalog are dropped,
// as above.
type droppedTable struct {
	ref   pgsrc.TableRef // the binding's table
	oid   uint32         // its relation ID; 0 until a Relation message tells it
	topic string
	// at is a WAL position the DROP committed before.
	at pglogrepl.LSN
	// replaced: the binding captures another relation of the same name in
	// this session (the table was created again before it started); the
	// name's checkpoint state is that one's.
	replaced bool
	// info describes the relation as the stream and the registered schemas
	// do, from its first Relation message on.
	info *pgsrc.Table
	// ended: the stream passed at (the binding's end is logged).
	ended bool
}

func (d *droppedTable) state() offsets.TableState {
	return offsets.TableState{State: offsets.StateDropped, OID: d.oid, DroppedAt: d.at}
}

// errTableDropped is refresh finding a captured relation gone from the
// catalog: the codecs describe it from the stream. errTableRecreated: and
// its name is another table's now.
var (
	errTableDropped   = errors.New("table dropped")
	errTableRecreated = fmt.Errorf("%w and created again", errTableDropped)
)

// settleDropped decides, once the checkpoint is read, what becomes of the
// bound tables the catalog lacks (s.missing) and of the tables that are
// other relations than the checkpoint's: see droppedTable.
func (s *session) settleDropped(ctx context.Context) error {
	cp := s.resumed
	if cp == nil {
		cp = &offsets.Checkpoint{}
	}
	var wal pglogrepl.LSN
	walNow := func() (pglogrepl.LSN, error) {
		var err error
		if wal == 0 {
			wal, err = s.catalog.CurrentWAL(ctx)
		}
		return wal, err
	}
	s.carried = make(map[string]offsets.TableState, len(s.missing))
	var wrong []error
	for _, nf := range s.missing {
		name := nf.Table.String()
		st, known := cp.Tables[name]
		topic := s.cfg.TopicFor(nf.Table)
		switch {
		case !known:
			wrong = append(wrong, nf) // never captured: a wrong binding
			continue
		case st.DropCaptured(cp.LSN):
			s.log.Warn("the binding names a dropped table whose changes are all in its topic: remove the binding",
				"table", name, "relation", st.OID, "topic", topic, "lsn", st.DroppedAt.String())
			s.carried[name] = st
			continue
		}
		if st.OID != 0 {
			// Renamed, not dropped: the relation lives on.
			now, exists, err := s.catalog.RelationName(ctx, st.OID)
			if err != nil {
				return err
			}
			if exists {
				return &TableRenamedError{From: nf.Table, To: now, OID: st.OID, Topic: topic}
			}
		}
		d := &droppedTable{ref: nf.Table, oid: st.OID, topic: topic, at: st.DroppedAt}
		if st.State != offsets.StateDropped {
			var err error
			if d.at, err = walNow(); err != nil {
				return err
			}
		}
		s.log.Info("captured table was dropped: its changes committed before the drop go to its topic, then its binding ends",
			"table", name, "relation", d.oid, "topic", topic, "lsn", d.at.String())
		s.dropped = append(s.dropped, d)
		s.carried[name] = d.state()
	}
	if len(wrong) > 0 {
		return errors.Join(wrong...)
	}
	for _, t := range s.tables {
		name := t.Ref().String()
		st, known := cp.Tables[name]
		if !known || st.State != offsets.StateDropped && (st.OID == 0 || st.OID == t.OID) {
			continue
		}
		// Dropped and created again: the new relation is a table new to
		// the capture.
		delete(cp.Tables, name)
		topic := s.cfg.TopicFor(t.Ref())
		s.log.Info("captured table was dropped and created again: the former relation's changes committed before the drop go to its topic; the binding captures the new table from its creation (backfilled unless in source.advanced.skip_backfills)",
			"table", name, "relation", st.OID, "new_relation", t.OID, "topic", topic)
		if st.OID == 0 || st.DropCaptured(cp.LSN) {
			continue // known by its relation ID in the stream (codecs.boundInfo), if anything of it is left
		}
		at := st.DroppedAt
		if st.State != offsets.StateDropped {
			var err error
			if at, err = walNow(); err != nil {
				return err
			}
		}
		s.dropped = append(s.dropped, &droppedTable{ref: t.Ref(), oid: st.OID, topic: topic, at: at, replaced: true})
	}
	return nil
}

// addDropped hands the codecs the tables found dropped at the session's
// start.
func (c *codecs) addDropped(ds []*droppedTable) {
	c.drops = append(c.drops, ds...)
	for _, d := range ds {
		if d.oid != 0 {
			c.dropped[d.oid] = d
		} else {
			c.droppedByName[d.ref] = d
		}
	}
}

// droppedOf returns the dropped table rel is a relation of, if it is one:
// by relation ID, or by name for a table dropped while pgkafka was stopped
// that the checkpoint holds no relation ID of (the name then is no table's
// in the catalog).
func (c *codecs) droppedOf(rel *pgsrc.Relation) *droppedTable {
	if d := c.dropped[rel.ID]; d != nil {
		return d
	}
	d := c.droppedByName[pgsrc.TableRef{Schema: rel.Namespace, Name: rel.Name}]
	if d != nil && rel.ID != 0 {
		d.oid = rel.ID
		c.dropped[rel.ID] = d
		delete(c.droppedByName, d.ref)
	}
	return d
}

// noteDropped records that the relation oid of the binding of ref is gone
// from the catalog, found while streaming: the drop committed before the
// WAL position now. replaced: the binding captures another relation of
// that name in this session (see droppedTable.replaced); else the
// checkpoint records the drop.
func (c *codecs) noteDropped(ctx context.Context, ref pgsrc.TableRef, oid uint32, replaced bool) (*droppedTable, error) {
	at, err := c.catalog.CurrentWAL(ctx)
	if err != nil {
		return nil, err
	}
	d := &droppedTable{ref: ref, oid: oid, topic: c.cfg.TopicFor(ref), at: at, replaced: replaced}
	c.dropped[oid] = d
	c.drops = append(c.drops, d)
	if !replaced {
		c.newlyDropped = append(c.newlyDropped, d)
	}
	c.log.Info("captured table was dropped: its changes committed before the drop go to its topic; the binding ends once the stream reaches lsn",
		"table", ref.String(), "relation", oid, "topic", d.topic, "lsn", at.String(), "replaced", replaced)
	return d, nil
}

// droppedInfo describes the dropped relation rel for the codecs: the
// binding's name, rel's replica identity, and the key the topic's
// registered schemas have.
func (c *codecs) droppedInfo(ctx context.Context, rel *pgsrc.Relation, d *droppedTable) (*pgsrc.Table, error) {
	if d.info != nil {
		return d.info, nil
	}
	// A relation known by its name only (droppedByName) may be a renamed
	// table: its changes under the new name would be lost.
	if now, exists, err := c.catalog.RelationName(ctx, rel.ID); err != nil {
		return nil, err
	} else if exists {
		return nil, &TableRenamedError{From: d.ref, To: now, OID: rel.ID, CommitLSN: c.shapeLSN, Topic: d.topic}
	}
	key, _, err := c.droppedShape(ctx, d.ref, rel) // json.go
	if err != nil {
		return nil, fmt.Errorf("reading the registered schemas of dropped table %s (topic %s): %w", d.ref, d.topic, err)
	}
	info := &pgsrc.Table{Schema: d.ref.Schema, Name: d.ref.Name, OID: rel.ID, ReplicaIdentity: rel.ReplicaIdentity}
	if len(key) == 0 {
		// Nothing registered yet: the replica identity's columns, as
		// pgoutput flags them.
		for _, i := range rel.KeyColumns() {
			info.KeyColumns = append(info.KeyColumns, rel.Columns[i].Name)
		}
	}
	for _, field := range key {
		for _, rc := range rel.Columns {
			if schema.SanitizeName(rc.Name) == field {
				info.KeyColumns = append(info.KeyColumns, rc.Name)
				break
			}
		}
	}
	if len(info.KeyColumns) != len(key) {
		return nil, fmt.Errorf("dropped table %s (relation %d): its last columns %v lack a field of the key registered for topic %s (%v)",
			d.ref, rel.ID, relColumnNames(rel), d.topic, key)
	}
	d.info = info
	return info, nil
}

func relColumnNames(rel *pgsrc.Relation) []string {
	names := make([]string, len(rel.Columns))
	for i, c := range rel.Columns {
		names[i] = c.Name
	}
	return names
}

// droppedSchemaTable describes a dropped relation for the schema package
// from the stream alone: the Relation message's columns, each nullable as
// its registered field is (nullable when new), and the key droppedInfo
// found.
func (c *codecs) droppedSchemaTable(ctx context.Context, rel *pgsrc.Relation, d *droppedTable) (schema.Table, error) {
	ref := d.ref
	_, nullable, err := c.droppedShape(ctx, ref, rel) // json.go
	if err != nil {
		return schema.Table{}, fmt.Errorf("reading the registered schemas of dropped table %s (topic %s): %w", ref, d.topic, err)
	}
	n := c.cfg.naming(ref)
	st := schema.Table{
		Topic:     d.topic,
		Namespace: n.namespace,
		Schema:    ref.Schema,
		Name:      ref.Name,
		Subjects:  n.subjects,
	}
	for i, rc := range rel.Columns {
		col, err := c.schemaColumn(ctx, ref, rc, nil)
		if err != nil {
			return schema.Table{}, err
		}
		if n, ok := nullable[schema.SanitizeName(rc.Name)]; ok {
			col.Nullable = n
		}
		st.Columns = append(st.Columns, col)
		if slices.Contains(d.info.KeyColumns, rc.Name) {
			st.Key = append(st.Key, i)
		}
	}
	if len(st.Key) > 0 {
		st.KeyTag = n.tag
	}
	return st, nil
}

// dropCheckInterval is how often the serializer asks the catalog whether
// the bound relations still exist: one query on an index.
const dropCheckInterval = 10 * time.Second

// checkDrops finds the bound relations dropped since the last check (at
// most every dropCheckInterval), and the tables created again under their
// names, which the next session backfills (restartPending).
func (c *codecs) checkDrops(ctx context.Context, now time.Time) error {
	if now.Sub(c.dropsChecked) < dropCheckInterval {
		return nil
	}
	c.dropsChecked = now
	oids := make([]uint32, 0, len(c.bound))
	for _, info := range c.bound {
		if info.OID != 0 && c.dropped[info.OID] == nil {
			oids = append(oids, info.OID)
		}
	}
	if len(oids) == 0 {
		return nil
	}
	exist, err := c.catalog.RelationsExist(ctx, oids)
	if err != nil {
		return err
	}
	for _, info := range c.bound {
		if info.OID == 0 || exist[info.OID] || c.dropped[info.OID] != nil {
			continue
		}
		if _, err := c.noteDropped(ctx, info.Ref(), info.OID, false); err != nil {
			return err
		}
		again, _, err := c.catalog.DiscoverPresent(ctx, []pgsrc.TableRef{info.Ref()})
		if err != nil {
			return err
		}
		if len(again) > 0 {
			c.restartPending = true
		}
	}
	return nil
}

// passDrops tells the codecs the stream reached lsn (a commit's end, or an
// idle position) and adds to rb the checkpoint states of the tables found
// dropped since the last call. A dropped table whose position lsn passes
// has every change of its own in the batches sent so far: its binding
// ends.
func (c *codecs) passDrops(lsn pglogrepl.LSN, rb *recordBatch) {
	for _, d := range c.newlyDropped {
		if rb.tables == nil {
			rb.tables = make(map[string]offsets.TableState)
		}
		rb.tables[d.ref.String()] = d.state()
	}
	c.newlyDropped = c.newlyDropped[:0]
	if lsn == 0 {
		return
	}
	for _, d := range c.drops {
		if d.ended || lsn < d.at {
			continue
		}
		d.ended = true
		if d.replaced {
			c.log.Info("dropped table's changes are captured; its binding captures the table created since under its name",
				"table", d.ref.String(), "relation", d.oid, "topic", d.topic, "lsn", d.at.String())
			continue
		}
		c.log.Info("dropped table's changes are captured: its binding ends (remove it from bindings)",
			"table", d.ref.String(), "relation", d.oid, "topic", d.topic, "lsn", d.at.String())
	}
}
