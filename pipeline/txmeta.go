package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// TransactionTopic is the topic of transaction metadata
// (format.transactionMetadata): <topicPrefix>.transaction, as Debezium's.
func (c *Config) TransactionTopic() string {
	return sanitizeTopic(c.Kafka.TopicPrefix + ".transaction")
}

// txMeta writes transaction metadata (format.transactionMetadata), the
// serializer's: a BEGIN record before the first change record of a
// PostgreSQL transaction, the transaction block of each change record,
// and an END record with the counts after its last. A transaction without
// a change record (only the watermarks table, filtered tables, changes a
// backfill drops, messages) gets neither.
//
// Change records are the c, u, d and t records of streamed changes (a key
// change's d and c are two); tombstones, backfill reads (r, whose block is
// null, as Debezium's snapshot records) and logical decoding messages
// (block null, as the message schema has no other) are not counted.
//
// Exactly once: the records go in the same Kafka transaction as the
// changes, the END after the last of them. When a PostgreSQL transaction is
// split across Kafka transactions (kafka.maxTransactionRecords), the
// checkpoint's partial mark keeps each table's count so far
// (offsets.Partial.Events): a restart inside the transaction goes on from
// them, writing no second BEGIN.
type txMeta struct {
	codec *schema.TxMetaCodec

	jsonKey, jsonValue *schema.JSONForm // format.encoding json (json.go)
	// The transaction in progress: its id, commit time, and the records
	// written so far, in all and per table.
	id     string
	tsMs   int64
	total  int64
	tables map[pgsrc.TableRef]int64
	// base is the counts by "<schema>.<table>" of the partial mark the
	// transaction resumed from (nil: none); tables counts on from them.
	base   map[string]int64
	block  schema.TxBlock
	counts []schema.TxCount
}

// newTxMeta registers the transaction topic's schemas; nil when the
// option is off.
func newTxMeta(ctx context.Context, cfg *Config, registry *schema.Registry) (*txMeta, error) {
	if !cfg.Format.TransactionMetadata {
		return nil, nil
	}
	codec, err := schema.NewTxMetaCodec(cfg.TransactionTopic())
	if err != nil {
		return nil, err
	}
	m := &txMeta{codec: codec, tables: map[pgsrc.TableRef]int64{}}
	if m.jsonKey, m.jsonValue, err = schema.NewJSONForms(&cfg.Format, codec.KeyAvro(), codec.ValueAvro()); err != nil {
		return nil, fmt.Errorf("transaction metadata as JSON: %w", err)
	}
	if m.jsonKey != nil {
		return m, nil // JSON: no registry
	}
	if err := registry.RegisterTxMeta(ctx, codec); err != nil {
		return nil, fmt.Errorf("registering the schemas of transaction metadata: %w", err)
	}
	return m, nil
}

// txID is Debezium's PostgreSQL transaction id, <txId>:<LSN>, with the
// LSN a decimal; pgkafka's LSN is the transaction's commit LSN, the same
// for its BEGIN, END and every change, and across restarts.
func txID(xid uint32, commitLSN pglogrepl.LSN) string {
	return strconv.FormatUint(uint64(xid), 10) + ":" + strconv.FormatUint(uint64(commitLSN), 10)
}

// begin enters a transaction; its counts start from the partial mark when
// Kafka holds its first changes already.
func (m *txMeta) begin(r resumePoint, ch *pgsrc.Change) {
	if m == nil {
		return
	}
	m.id, m.tsMs, m.total, m.base = txID(ch.Xid, ch.CommitLSN), ch.CommitTime.UnixMilli(), 0, nil
	clear(m.tables)
	cp := r.cp
	if cp == nil || cp.Partial == nil || cp.Partial.CommitLSN != ch.CommitLSN || len(cp.Partial.Events) == 0 {
		return
	}
	m.base = cp.Partial.Events // read only
	for _, n := range m.base {
		m.total += n
	}
}

// of is the count of tc's table so far.
func (m *txMeta) of(tc *tableCodec) int64 {
	n := m.tables[tc.ref]
	if m.base != nil {
		n += m.base[tc.ref.String()]
	}
	return n
}

// byName is the counts so far by "<schema>.<table>".
func (m *txMeta) byName() map[string]int64 {
	out := make(map[string]int64, len(m.tables)+len(m.base))
	for t, n := range m.base {
		out[t] = n
	}
	for t, n := range m.tables {
		out[t.String()] += n
	}
	return out
}

// next returns the block of the next record of tc's table, which counts
// only once written (written).
func (m *txMeta) next(tc *tableCodec) *schema.TxBlock {
	if m == nil {
		return nil
	}
	m.block = schema.TxBlock{ID: m.id, TotalOrder: m.total + 1, DataCollectionOrder: m.of(tc) + 1}
	return &m.block
}

// written counts the record of tc's table just encoded, appending the
// BEGIN record to rb first if it is the transaction's first.
func (m *txMeta) written(tc *tableCodec, rb *recordBatch) {
	if m.total == 0 {
		m.append(rb, true)
	}
	m.total++
	m.tables[tc.ref]++
}

// end appends the END record of a transaction with change records.
func (m *txMeta) end(rb *recordBatch) {
	if m == nil || m.total == 0 {
		return
	}
	m.append(rb, false)
	m.total, m.base = 0, nil
	clear(m.tables)
}

func (m *txMeta) append(rb *recordBatch, begin bool) {
	off := len(rb.slab)
	rb.slab = rewriteJSON(m.jsonKey, m.codec.AppendKey(rb.slab, m.id), off)
	key := rb.slab[off:len(rb.slab):len(rb.slab)]
	off = len(rb.slab)
	if begin {
		rb.slab = m.codec.AppendBegin(rb.slab, m.id, m.tsMs)
	} else {
		m.counts = m.counts[:0]
		for t, n := range m.byName() {
			m.counts = append(m.counts, schema.TxCount{DataCollection: t, EventCount: n})
		}
		slices.SortFunc(m.counts, func(a, b schema.TxCount) int { return strings.Compare(a.DataCollection, b.DataCollection) })
		rb.slab = m.codec.AppendEnd(rb.slab, m.id, m.tsMs, m.total, m.counts)
	}
	rb.slab = rewriteJSON(m.jsonValue, rb.slab, off)
	rb.recs = append(rb.recs, kgo.Record{Topic: m.codec.Topic(), Key: key, Value: rb.slab[off:len(rb.slab):len(rb.slab)]})
}

// progress is the per-table counts for a partial mark: a copy, the batch
// being handed to the producer; nil when nothing is counted.
func (m *txMeta) progress() map[string]int64 {
	if m == nil || m.total == 0 {
		return nil
	}
	return m.byName()
}
