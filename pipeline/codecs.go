package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// codecs resolves each relation to the codec of its current shape: it
// describes the table for the schema package (reading the catalog again
// when the shape changed, schemachange.go), registers the schemas, which
// the registry checks for compatibility, and keeps one codec per relation.
// It is the serializer's: only its goroutine calls it.
type codecs struct {
	cfg      *Config
	catalog  *pgsrc.Catalog
	registry *schema.Registry
	source   schema.Source
	toast    *toastReconciler // hands each codec its TOAST cache handle
	metrics  *Metrics
	log      *slog.Logger

	// watermarks is the watermarks table, which is not captured.
	watermarks pgsrc.TableRef
	// bound describes each captured table, as last read from the catalog;
	// byOID holds the same by relation ID, which a rename keeps.
	bound map[pgsrc.TableRef]*pgsrc.Table
	byOID map[uint32]*pgsrc.Table
	// byRelation holds, per relation ID, the codec of its latest shape.
	byRelation map[uint32]*tableCodec
	// backfilled holds, per table, the codec of the rows its backfill
	// reads, from the catalog (they may come before any Relation message).
	backfilled map[pgsrc.TableRef]*tableCodec
	// dropped holds the captured relations the catalog has lost whose
	// changes the stream may still carry, by relation ID; droppedByName,
	// those whose ID is unknown yet (dropped.go). drops lists them all,
	// newlyDropped those found since the last batch.
	dropped       map[uint32]*droppedTable
	droppedByName map[pgsrc.TableRef]*droppedTable
	drops         []*droppedTable
	newlyDropped  []*droppedTable
	// restartPending: a bound table was found created again while the
	// session runs; the session restarts after the transaction (dropped.go).
	restartPending bool
	// dropsChecked is when checkDrops last asked the catalog.
	dropsChecked time.Time
	// shapeLSN is the commit LSN of the transaction whose Relation message
	// is being handled, for the reports of a schema change; 0 outside.
	shapeLSN pglogrepl.LSN
}

func newCodecs(cfg *Config, catalog *pgsrc.Catalog, registry *schema.Registry, source schema.Source,
	bound map[pgsrc.TableRef]*pgsrc.Table, toast *toastReconciler, metrics *Metrics, log *slog.Logger) *codecs {
	c := &codecs{cfg: cfg, catalog: catalog, registry: registry, source: source, toast: toast, metrics: metrics, log: log,
		watermarks: cfg.Source.Watermarks(), bound: bound, byOID: make(map[uint32]*pgsrc.Table, len(bound)),
		byRelation: make(map[uint32]*tableCodec), backfilled: make(map[pgsrc.TableRef]*tableCodec),
		dropped: make(map[uint32]*droppedTable), droppedByName: make(map[pgsrc.TableRef]*droppedTable)}
	for _, t := range bound {
		if t.OID != 0 {
			c.byOID[t.OID] = t
		}
	}
	return c
}

// boundInfo returns the description of rel's captured table (nil: not
// captured): by name, or by relation ID for a relation that carries
// another name. That is the stream replaying changes made before a rename
// (the binding names the table as it is now): they are the binding's. Or
// the table was renamed since the session started: the capture stops
// (TableRenamedError) rather than let the changes under the new name go
// uncaptured. A relation the catalog has lost is a dropped table's
// (dropped.go), described from the stream.
func (c *codecs) boundInfo(ctx context.Context, rel *pgsrc.Relation) (*pgsrc.Table, error) {
	if d := c.droppedOf(rel); d != nil {
		return c.droppedInfo(ctx, rel, d)
	}
	ref := pgsrc.TableRef{Schema: rel.Namespace, Name: rel.Name}
	info := c.bound[ref]
	if info != nil && info.OID != 0 && rel.ID != 0 && rel.ID != info.OID {
		// Another relation under the bound name: the table was dropped
		// and created again before the session started.
		now, exists, err := c.catalog.RelationName(ctx, rel.ID)
		if err != nil {
			return nil, err
		}
		if !exists {
			d, err := c.noteDropped(ctx, ref, rel.ID, true)
			if err != nil {
				return nil, err
			}
			return c.droppedInfo(ctx, rel, d)
		}
		if now == ref && !c.restartPending {
			// The bound table was dropped and created again while the
			// session runs, and the stream carries the new one: the next
			// session backfills it.
			c.restartPending = true
			c.log.Info("captured table was dropped and created again: restarting the session after this transaction, to backfill the new table",
				"table", ref.String(), "relation", info.OID, "new_relation", rel.ID, "topic", c.cfg.TopicFor(ref), "commit_lsn", c.shapeLSN.String())
		}
	}
	if info != nil || rel.ID == 0 {
		return info, nil
	}
	info = c.byOID[rel.ID]
	if info == nil {
		return nil, nil
	}
	now, exists, err := c.catalog.RelationName(ctx, rel.ID)
	if err != nil {
		return nil, err
	}
	if exists && now == info.Ref() {
		return info, nil // a change made under a former name
	}
	if !exists {
		// Renamed, then dropped: its changes are the binding's.
		d, err := c.noteDropped(ctx, info.Ref(), rel.ID, false)
		if err != nil {
			return nil, err
		}
		return c.droppedInfo(ctx, rel, d)
	}
	return nil, &TableRenamedError{From: info.Ref(), To: now, OID: rel.ID, CommitLSN: c.shapeLSN, Topic: c.cfg.TopicFor(info.Ref())}
}

// tableCodec is a relation in one shape. A nil codec means the relation is
// not captured (not bound, or the watermarks table).
type tableCodec struct {
	ref        pgsrc.TableRef
	rel        *pgsrc.Relation
	codec      *schema.Codec
	key        []int // the table's own key's column indexes: its rows' identity
	msgKey     []int // the Kafka key's column indexes (keys.go)
	topic      string
	compacted  bool
	watermarks bool        // the watermarks table
	dropped    bool        // a dropped table's relation (dropped.go)
	counts     *opCounters // records by op, in metrics
	toast      toastTable
	headers    *recordHeaders // nil without kafka.headers
	outbox     *outboxTable   // an outbox's (outbox.go): no codec, no topic of its own
}

// captured reports whether ref is a captured table.
func (c *codecs) captured(ref pgsrc.TableRef) bool { return c.bound[ref] != nil }

// of returns the codec of rel's current shape, building it (and
// registering its schemas) the first time that shape is seen.
func (c *codecs) of(ctx context.Context, rel *pgsrc.Relation) (*tableCodec, error) {
	if tc := c.byRelation[rel.ID]; tc != nil && tc.rel == rel {
		return tc, nil
	}
	tc, err := c.build(ctx, rel)
	if err != nil {
		return nil, err
	}
	c.byRelation[rel.ID] = tc
	return tc, nil
}

// onRelation builds the codec of the shape a Relation message announces,
// in the transaction committing at commitLSN.
func (c *codecs) onRelation(ctx context.Context, rel *pgsrc.Relation, commitLSN pglogrepl.LSN) error {
	c.shapeLSN = commitLSN // pgoutput sends Relation messages at LSN 0
	defer func() { c.shapeLSN = 0 }()
	_, err := c.of(ctx, rel)
	return err
}

// forBackfill returns the codec of a table as the catalog describes it,
// for backfilled rows.
func (c *codecs) forBackfill(ctx context.Context, info *pgsrc.Table) (*tableCodec, error) {
	ref := info.Ref()
	if tc := c.backfilled[ref]; tc != nil {
		return tc, nil
	}
	rel := &pgsrc.Relation{Namespace: ref.Schema, Name: ref.Name, ReplicaIdentity: info.ReplicaIdentity}
	for _, col := range info.Columns {
		if !col.Sent() {
			continue // generated, or not in the publication's column list: pgoutput does not send them either
		}
		rel.Columns = append(rel.Columns, pgsrc.RelationColumn{Name: col.Name, TypeOID: col.Type.OID, TypeMod: col.Typmod})
	}
	tc, err := c.build(ctx, rel)
	if err != nil {
		return nil, err
	}
	c.backfilled[ref] = tc
	return tc, nil
}

// build makes the codec of rel (and registers its schemas).
func (c *codecs) build(ctx context.Context, rel *pgsrc.Relation) (*tableCodec, error) {
	ref := pgsrc.TableRef{Schema: rel.Namespace, Name: rel.Name}
	tc := &tableCodec{ref: ref, rel: rel, watermarks: ref == c.watermarks}
	info, err := c.boundInfo(ctx, rel)
	if err != nil || info == nil {
		return tc, err
	}
	if ob := c.cfg.outboxOf(ref); ob != nil { // info describes a dropped table too
		tc.outbox, err = newOutboxTable(ob, rel, info)
		return tc, err
	}
	var st schema.Table
	d := c.droppedOf(rel)
	if d == nil {
		st, err = c.schemaTable(ctx, rel, info)
		if errors.Is(err, errTableDropped) {
			// Gone from the catalog since: the stream is behind it.
			c.restartPending = c.restartPending || errors.Is(err, errTableRecreated)
			if d, err = c.noteDropped(ctx, info.Ref(), rel.ID, false); err == nil {
				info, err = c.droppedInfo(ctx, rel, d)
			}
		}
	}
	if d != nil && err == nil {
		tc.ref, tc.dropped = d.ref, true
		st, err = c.droppedSchemaTable(ctx, rel, d)
	}
	if err != nil {
		return nil, err
	}
	env, _ := c.cfg.Format.ParsedEnvelope() // Validate refused bad ones
	json := c.cfg.Format.JSON()             // JSON: no registry, nothing inherited or registered
	if !json {
		if err := c.registry.Inherit(ctx, &st, env); err != nil {
			return nil, fmt.Errorf("reading the registered schema of %s: %w", ref, err)
		}
	}
	codec, err := schema.NewCodec(st, c.cfg.Format, c.source)
	if err != nil {
		return nil, fmt.Errorf("building the schema of %s: %w", ref, err)
	}
	if !json {
		forced, err := c.registry.Register(ctx, codec)
		if err != nil {
			return nil, c.registerError(ref, err)
		}
		c.warnForced(ref, forced)
	}
	tc.codec, tc.topic, tc.key, tc.msgKey = codec, st.Topic, st.Key, st.Key
	if !tc.dropped && !slices.Equal(c.cfg.messageKey(info), info.KeyColumns) {
		tc.key = columnIndexes(rel, info.KeyColumns) // none for a table without a key
	}
	tc.compacted = isCompacted(c.cfg.Kafka.Topics.Config)
	tc.counts = c.metrics.opCounters(tc.topic)
	tc.toast = c.toast.table(info, rel)
	tc.toast.gone = tc.dropped
	if set, _ := parseHeaders(c.cfg.Kafka.Headers); set.any() { // Validate refused bad names
		tc.headers = &recordHeaders{set: set, table: []byte(tc.ref.Schema + "." + tc.ref.Name)}
	}
	c.log.Debug("relation", "table", ref.String(), "version", rel.Version, "topic", tc.topic)
	return tc, nil
}

// schemaTable describes rel for the schema package: column types from the
// catalog, re-read when rel no longer matches it (schemachange.go: a column
// added, renamed or of another type, or any later Relation message), key
// from the table's key columns. A column added with a default PostgreSQL
// gives older rows carries it; a renamed one, its former name.
func (c *codecs) schemaTable(ctx context.Context, rel *pgsrc.Relation, info *pgsrc.Table) (schema.Table, error) {
	ref := info.Ref()
	info, renamed, err := c.refresh(ctx, rel, info)
	if err != nil {
		return schema.Table{}, err
	}
	cols := columnsByName(info)
	n := c.cfg.naming(ref)
	st := schema.Table{
		Topic:     n.topic,
		Namespace: n.namespace,
		Schema:    ref.Schema,
		Name:      ref.Name,
		Subjects:  n.subjects,
	}
	for _, rc := range rel.Columns {
		col, err := c.schemaColumn(ctx, ref, rc, cols[rc.Name])
		if err != nil {
			return schema.Table{}, err
		}
		if old, ok := renamed[rc.Name]; ok {
			col.Aliases = []string{old}
		}
		st.Columns = append(st.Columns, col)
	}
	st.Key = columnIndexes(rel, c.cfg.messageKey(info))
	if len(st.Key) > 0 {
		st.KeyTag = n.tag
	}
	return st, nil
}

// schemaColumn describes a column of rel: its type is the catalog's c when
// they agree, else the type the Relation message names.
func (c *codecs) schemaColumn(ctx context.Context, ref pgsrc.TableRef, rc pgsrc.RelationColumn, col *pgsrc.Column) (schema.Column, error) {
	var t *pgsrc.Type
	mod := rc.TypeMod
	known := col != nil && col.Type.OID == rc.TypeOID
	if known {
		var dmod int32
		t, dmod = col.Resolved()
		if col.Type.Kind == pgsrc.KindDomain {
			mod = dmod
		}
	} else {
		var err error
		if t, err = c.catalog.Type(ctx, rc.TypeOID); err != nil {
			return schema.Column{}, fmt.Errorf("type of column %q of %s: %w", rc.Name, ref, err)
		}
		var dmod int32
		if t, dmod = t.Resolved(); dmod != -1 {
			mod = dmod
		}
	}
	sc := schema.Column{
		Name:     rc.Name,
		Type:     schemaType(t, mod),
		Nullable: col == nil || !col.NotNull,
		Policy:   c.cfg.columnPolicy(ref, rc.Name), // columns.go
	}
	if known && col.HasMissing {
		sc.Default, sc.HasDefault = col.Missing, true
	}
	if known && col.HasConstDefault {
		sc.Fallback, sc.HasFallback = col.ConstDefault, true
	}
	return sc, nil
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
