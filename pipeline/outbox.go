package pipeline

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// An outbox binding (bindings[].outbox, Debezium's outbox EventRouter)
// turns each row inserted into its table into an event, not a change
// record:
//
//   - topic: outbox.topic with ${routedByValue} replaced by the routeBy
//     column's value, the characters Kafka refuses replaced by '_' (the
//     offsets topic refused); created, with kafka.topics' settings, the
//     first time the session sees it, before its first record;
//   - key: the key column's text (Debezium's key with a StringConverter);
//     null when the column is;
//   - value: the payload column's text (json, jsonb, text, ...: the JSON
//     or text itself, as Debezium's StringConverter writes a string
//     payload), a bytea payload's bytes; no Avro, no registry. A null
//     payload, or with tombstoneOnEmptyPayload an empty or blank one (an
//     empty bytea too), is a null value (a tombstone);
//   - headers: "id", the id column's text (Debezium's), then each of
//     outbox.headers ("column" or "column:header"), as text, null when null.
//
// Updates of the outbox table are ignored (onUpdate: warn logs the first
// one a session sees, ignore logs none, fail stops the capture), deletes
// and truncates always (an application empties its outbox after the
// fact), and the table is not backfilled: its rows already there are past
// events. Its own topic is neither created nor written. The events go in
// the record batches of the other changes, so in the same Kafka
// transactions as the checkpoint: exactly once for read_committed
// consumers, where Debezium's outbox is at least once.
//
// The stream of an outbox table's changes is read in text form: binary
// pgoutput (source.advanced.pgoutputBinary) stays off while one is bound.

// OutboxConfig is bindings[].outbox. The column names default to
// Debezium's (table.field.event.id, .event.key, .payload, route.by.field).
type OutboxConfig struct {
	// ID is the event id column, sent as the header "id"; default "id".
	ID string `koanf:"id"`
	// Key is the column whose value keys the event; default "aggregateid".
	Key string `koanf:"key"`
	// Payload is the column written as the event's value; default "payload".
	Payload string `koanf:"payload"`
	// RouteBy is the column whose value chooses the topic; default
	// "aggregatetype".
	RouteBy string `koanf:"routeBy"`
	// Topic is the topic template; ${routedByValue} is the routeBy
	// column's value. Default "outbox.event.${routedByValue}", without
	// kafka.topicPrefix, as Debezium's route.topic.replacement.
	Topic string `koanf:"topic"`
	// Headers are more columns sent as headers, "column" or
	// "column:header" (Debezium's table.fields.additional.placement with
	// placement header), e.g. "type:eventType".
	Headers []string `koanf:"headers"`
	// TombstoneOnEmptyPayload writes an empty or blank payload as a null
	// value too (Debezium's route.tombstone.on.empty.payload); default false.
	TombstoneOnEmptyPayload bool `koanf:"tombstoneOnEmptyPayload"`
	// OnUpdate is what an update of the outbox table does: warn (default:
	// ignored, the first one of a session logged), ignore, or fail
	// (Debezium's debezium.op.invalid.behavior).
	OnUpdate string `koanf:"onUpdate"`
}

// Outbox defaults.
const (
	DefaultOutboxTopic = "outbox.event.${routedByValue}"
	outboxRoutedBy     = "${routedByValue}"
	OutboxUpdateWarn   = "warn"
	OutboxUpdateIgnore = "ignore"
	OutboxUpdateFail   = "fail"
)

func (o *OutboxConfig) setDefaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.ID, "id")
	def(&o.Key, "aggregateid")
	def(&o.Payload, "payload")
	def(&o.RouteBy, "aggregatetype")
	def(&o.Topic, DefaultOutboxTopic)
	def(&o.OnUpdate, OutboxUpdateWarn)
}

// completeOutboxes fills the outbox bindings' defaults.
func (c *Config) completeOutboxes() {
	for i := range c.Bindings {
		if o := c.Bindings[i].Outbox; o != nil {
			o.setDefaults()
		}
	}
}

// outboxHeader is one of OutboxConfig.Headers.
type outboxHeader struct{ column, name string }

func parseOutboxHeader(s string) (outboxHeader, bool) {
	col, name, aliased := strings.Cut(s, ":")
	if !aliased {
		name = col
	}
	return outboxHeader{col, name}, col != "" && name != "" && !strings.Contains(name, ":")
}

// validateOutboxes checks the outbox bindings, each problem with its key
// path.
func (c *Config) validateOutboxes(p *problems) {
	for i := range c.Bindings {
		b := &c.Bindings[i]
		o := b.Outbox
		if o == nil {
			continue
		}
		key := fmt.Sprintf("bindings[%d].outbox", i)
		o.setDefaults() // Validate may come without Complete
		if len(b.Key) > 0 {
			p.add(fmt.Sprintf("bindings[%d].key", i), "an outbox's events are keyed by its key column: set %s.key instead", key)
		}
		if b.Target != "" {
			p.add(fmt.Sprintf("bindings[%d].target", i), "an outbox's table has no topic: its events go to %s.topic", key)
		}
		if sample := strings.ReplaceAll(o.Topic, outboxRoutedBy, "x"); !validTopicName(sample) {
			p.add(key+".topic", "%q is not a valid Kafka topic name template (letters, digits, '.', '_', '-' and %s)", o.Topic, outboxRoutedBy)
		} else if o.Topic == c.Kafka.OffsetsTopic {
			p.add(key+".topic", "%q is kafka.offsetsTopic", o.Topic)
		}
		switch o.OnUpdate {
		case OutboxUpdateWarn, OutboxUpdateIgnore, OutboxUpdateFail:
		default:
			p.add(key+".onUpdate", "%q is not one of %s, %s, %s", o.OnUpdate, OutboxUpdateWarn, OutboxUpdateIgnore, OutboxUpdateFail)
		}
		names := []string{"id"}
		for j, h := range o.Headers {
			oh, ok := parseOutboxHeader(h)
			switch {
			case !ok:
				p.add(fmt.Sprintf("%s.headers[%d]", key, j), "%q is not \"column\" or \"column:header\"", h)
			case slices.Contains(names, oh.name):
				p.add(fmt.Sprintf("%s.headers[%d]", key, j), "header %q is set twice", oh.name)
			default:
				names = append(names, oh.name)
			}
		}
	}
}

// outboxOf returns the outbox of ref's binding, nil when it is not one.
func (c *Config) outboxOf(ref pgsrc.TableRef) *OutboxConfig {
	for i := range c.Bindings {
		b := &c.Bindings[i]
		if b.Resource.Namespace == ref.Schema && b.Resource.Stream == ref.Name {
			return b.Outbox
		}
	}
	return nil
}

// checkOutboxes checks, against the catalog, that the columns each outbox
// binding names exist and are sent by the publication.
func (c *Config) checkOutboxes(tables []pgsrc.Table) error {
	var p problems
	for i := range tables {
		t := &tables[i]
		for j := range c.Bindings {
			b := &c.Bindings[j]
			if b.Outbox == nil || b.Resource.Namespace != t.Schema || b.Resource.Stream != t.Name {
				continue
			}
			o := b.Outbox
			key := fmt.Sprintf("bindings[%d].outbox", j)
			check := func(path, col string) {
				if !slices.ContainsFunc(t.Columns, func(c pgsrc.Column) bool { return c.Name == col && c.Sent() }) {
					p.add(path, "table %s has no column %q that its publication sends (columns: %s)", t.Ref(), col, columnNames(t))
				}
			}
			check(key+".id", o.ID)
			check(key+".key", o.Key)
			check(key+".payload", o.Payload)
			check(key+".routeBy", o.RouteBy)
			for k, h := range o.Headers {
				oh, _ := parseOutboxHeader(h)
				check(fmt.Sprintf("%s.headers[%d]", key, k), oh.column)
			}
		}
	}
	return errors.Join(p...)
}

func columnNames(t *pgsrc.Table) string {
	names := make([]string, 0, len(t.Columns))
	for _, c := range t.Columns {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}

// outboxTables are the bound outbox tables, by name.
func (c *Config) outboxTables() []pgsrc.TableRef {
	var refs []pgsrc.TableRef
	for _, b := range c.Bindings {
		if b.Outbox != nil {
			refs = append(refs, b.Resource.ref())
		}
	}
	return refs
}

// outboxTable is an outbox relation in one shape: its columns' positions.
type outboxTable struct {
	cfg                       *OutboxConfig
	id, key, payload, routeBy int
	byteaPayload              bool
	headers                   []int
	headerNames               []string
}

// newOutboxTable resolves cfg's columns in rel; info gives their types.
func newOutboxTable(cfg *OutboxConfig, rel *pgsrc.Relation, info *pgsrc.Table) (*outboxTable, error) {
	ref := pgsrc.TableRef{Schema: rel.Namespace, Name: rel.Name}
	at := func(col string) (int, error) {
		for i, rc := range rel.Columns {
			if rc.Name == col {
				return i, nil
			}
		}
		return 0, fmt.Errorf("outbox table %s has no column %q: it was dropped or renamed; restore it, or change the binding's outbox block and restart", ref, col)
	}
	ot := &outboxTable{cfg: cfg}
	var err error
	for _, f := range []struct {
		to  *int
		col string
	}{{&ot.id, cfg.ID}, {&ot.key, cfg.Key}, {&ot.payload, cfg.Payload}, {&ot.routeBy, cfg.RouteBy}} {
		if *f.to, err = at(f.col); err != nil {
			return nil, err
		}
	}
	for _, h := range cfg.Headers {
		oh, _ := parseOutboxHeader(h)
		i, err := at(oh.column)
		if err != nil {
			return nil, err
		}
		ot.headers, ot.headerNames = append(ot.headers, i), append(ot.headerNames, oh.name)
	}
	for i := range info.Columns {
		if c := &info.Columns[i]; c.Name == cfg.Payload {
			t, _ := c.Resolved()
			ot.byteaPayload = t.Name == "bytea"
		}
	}
	return ot, nil
}

// outboxRouter writes outbox events; the serializer's.
type outboxRouter struct {
	admin   *kadm.Client
	topics  TopicsConfig
	offsets string          // kafka.offsetsTopic, never routed to
	created map[string]bool // the topics known to exist
	limit   *oversize
	warned  map[pgsrc.TableRef]bool // a session warns of one ignored update per table
	log     *slog.Logger
}

func newOutboxRouter(cfg *Config, admin *kadm.Client, limit *oversize, log *slog.Logger) *outboxRouter {
	return &outboxRouter{admin: admin, topics: cfg.Kafka.Topics, offsets: cfg.Kafka.OffsetsTopic,
		created: map[string]bool{}, limit: limit, warned: map[pgsrc.TableRef]bool{}, log: log}
}

// encode appends the event of an insert into an outbox table to rb;
// updates, deletes and truncates write nothing.
func (r *outboxRouter) encode(ctx context.Context, tc *tableCodec, ch *pgsrc.Change, rb *recordBatch) error {
	ot := tc.outbox
	switch ch.Op {
	case pgsrc.OpInsert:
	case pgsrc.OpUpdate:
		switch ot.cfg.OnUpdate {
		case OutboxUpdateFail:
			return fmt.Errorf("update of outbox table %s at LSN %s: an outbox takes inserts only (bindings[].outbox.onUpdate: fail); "+
				"to ignore updates set onUpdate: warn or ignore and restart", tc.ref, pglogrepl.LSN(ch.LSN))
		case OutboxUpdateWarn:
			if !r.warned[tc.ref] {
				r.warned[tc.ref] = true
				r.log.Warn("update of an outbox table ignored: an outbox takes inserts only; later ones are ignored without a word this session (bindings[].outbox.onUpdate)",
					"table", tc.ref.String(), "lsn", pglogrepl.LSN(ch.LSN).String())
			}
		}
		return nil
	default:
		return nil
	}
	row := ch.New
	route := row[ot.routeBy]
	if route.Kind != pgsrc.ValueText {
		return fmt.Errorf("insert into outbox table %s at LSN %s: column %q (routeBy), which chooses the topic, is null: "+
			"make it NOT NULL; the capture cannot go past this row", tc.ref, pglogrepl.LSN(ch.LSN), ot.cfg.RouteBy)
	}
	topic := sanitizeTopic(strings.ReplaceAll(ot.cfg.Topic, outboxRoutedBy, string(route.Data)))
	if topic == r.offsets || !validTopicName(topic) {
		return fmt.Errorf("insert into outbox table %s at LSN %s: column %q (routeBy) value %q routes the event to topic %q, which pgkafka may not write",
			tc.ref, pglogrepl.LSN(ch.LSN), ot.cfg.RouteBy, route.Data, topic)
	}
	if err := r.ensure(ctx, topic); err != nil {
		return err
	}
	rec := kgo.Record{Topic: topic}
	var ok bool
	if rec.Key, ok = r.text(rb, row[ot.key]); !ok {
		rec.Key = nil
	}
	p := row[ot.payload]
	switch {
	case p.Kind != pgsrc.ValueText:
	case ot.cfg.TombstoneOnEmptyPayload && (len(strings.TrimSpace(string(p.Data))) == 0 || ot.byteaPayload && string(p.Data) == `\x`):
	case ot.byteaPayload:
		v, err := unhexBytea(rb, p.Data)
		if err != nil {
			return fmt.Errorf("insert into outbox table %s at LSN %s: bytea payload: %w", tc.ref, pglogrepl.LSN(ch.LSN), err)
		}
		rec.Value = v
	default:
		rec.Value, _ = r.text(rb, p)
	}
	if !r.limit.fits(rec.Key, rec.Value) {
		if r.limit.policy == OversizedSkip {
			r.log.Warn("outbox event larger than kafka.maxRecordBytes skipped (kafka.oversizedRecords: skip)",
				"table", tc.ref.String(), "topic", topic, "lsn", pglogrepl.LSN(ch.LSN).String(), "bytes", len(rec.Key)+len(rec.Value))
			return nil
		}
		return fmt.Errorf("outbox event of %s at LSN %s for topic %q is %d bytes, over kafka.maxRecordBytes (%d): raise it (and the topic's max.message.bytes), or set kafka.oversizedRecords: skip",
			tc.ref, pglogrepl.LSN(ch.LSN), topic, len(rec.Key)+len(rec.Value), r.limit.max)
	}
	start := len(rb.hdrs)
	id, _ := r.text(rb, row[ot.id])
	rb.hdrs = append(rb.hdrs, kgo.RecordHeader{Key: "id", Value: id})
	for i, col := range ot.headers {
		v, _ := r.text(rb, row[col])
		rb.hdrs = append(rb.hdrs, kgo.RecordHeader{Key: ot.headerNames[i], Value: v})
	}
	rec.Headers = rb.hdrs[start:len(rb.hdrs):len(rb.hdrs)]
	rb.recs = append(rb.recs, rec)
	return nil
}

// text copies a text value into rb's slab; ok is false for a null.
func (r *outboxRouter) text(rb *recordBatch, v pgsrc.Value) ([]byte, bool) {
	if v.Kind != pgsrc.ValueText {
		return nil, false
	}
	off := len(rb.slab)
	rb.slab = append(rb.slab, v.Data...)
	return rb.slab[off:len(rb.slab):len(rb.slab)], true
}

// unhexBytea decodes a bytea's text form (\x and hex digits) into rb's slab.
func unhexBytea(rb *recordBatch, text []byte) ([]byte, error) {
	h, ok := strings.CutPrefix(string(text), `\x`)
	if !ok {
		return nil, fmt.Errorf("not in hex form (bytea_output must be hex)")
	}
	off := len(rb.slab)
	rb.slab = append(rb.slab, make([]byte, hex.DecodedLen(len(h)))...)
	if _, err := hex.Decode(rb.slab[off:], []byte(h)); err != nil {
		rb.slab = rb.slab[:off]
		return nil, err
	}
	return rb.slab[off:len(rb.slab):len(rb.slab)], nil
}

// ensure creates topic, with kafka.topics' settings, the first time the
// session routes an event to it. Created here, synchronously, before its
// first record is produced: the transaction never meets an unknown topic,
// and the topic gets the settings of the others, where a broker's
// auto-creation would give it the broker's defaults (and many clusters
// turn auto-creation off).
func (r *outboxRouter) ensure(ctx context.Context, topic string) error {
	if r.created[topic] {
		return nil
	}
	if err := createTopics(ctx, r.admin, r.topics, []string{topic}, r.log); err != nil {
		return fmt.Errorf("creating the outbox topic: %w", err)
	}
	r.created[topic] = true
	return nil
}
