package pipeline

import (
	"context"
	"fmt"
	"regexp"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/schema"
)

// messageTopic writes logical decoding messages (pg_logical_emit_message)
// to the message topic.
//
// Exactly once: a transactional message is a change of its transaction,
// counted and skipped on resume like a row change (serializerStage.change). A
// non-transactional one comes outside any transaction, when PostgreSQL
// reads it; its LSN is the end of its WAL record, which a checkpoint may
// hold as it holds a commit's end: the stream is in WAL order, so every
// transaction committed before the message has been read before it, and a
// stream started at that LSN does not send the message again (PostgreSQL
// skips records that start before the start position).
type messageTopic struct {
	codec            *schema.MessageCodec
	jsonKey          *schema.JSONForm // format.encoding json (json.go)
	jsonValue        *schema.JSONForm
	topic            string
	include, exclude []*regexp.Regexp
	records          prometheus.Counter
	headers          *recordHeaders // nil without kafka.headers; no __table
}

// newMessageTopic builds the codec of the message topic and registers its
// schemas.
func newMessageTopic(ctx context.Context, cfg *Config, registry *schema.Registry, src schema.Source, metrics *Metrics) (*messageTopic, error) {
	topic := cfg.MessageTopic()
	codec, err := schema.NewMessageCodec(topic, src)
	if err != nil {
		return nil, err
	}
	m := &messageTopic{codec: codec, topic: topic, records: metrics.records.WithLabelValues(topic, string(schema.OpMessage))}
	if m.jsonKey, m.jsonValue, err = schema.NewJSONForms(&cfg.Format, codec.KeyAvro(), codec.ValueAvro()); err != nil {
		return nil, fmt.Errorf("logical decoding messages as JSON: %w", err)
	}
	if m.jsonKey == nil { // JSON: no registry
		if err := registry.RegisterMessages(ctx, codec); err != nil {
			return nil, fmt.Errorf("registering the schemas of logical decoding messages: %w", err)
		}
	}
	if m.include, err = prefixRegexps("messages.prefixIncludeList", cfg.Messages.PrefixIncludeList); err != nil {
		return nil, err
	}
	if m.exclude, err = prefixRegexps("messages.prefixExcludeList", cfg.Messages.PrefixExcludeList); err != nil {
		return nil, err
	}
	if set, _ := parseHeaders(cfg.Kafka.Headers); set.any() { // Validate refused bad names
		m.headers = &recordHeaders{set: set}
	}
	return m, nil
}

// captures reports whether a message with this prefix is written.
func (m *messageTopic) captures(prefix []byte) bool {
	if m == nil {
		return false
	}
	for _, re := range m.exclude {
		if re.Match(prefix) {
			return false
		}
	}
	if len(m.include) == 0 {
		return true
	}
	for _, re := range m.include {
		if re.Match(prefix) {
			return true
		}
	}
	return false
}

// encodeMessage appends the record of a logical decoding message to rb,
// unless its prefix is filtered out.
func (s *serializerStage) encodeMessage(ch *pgsrc.Change, nowMs int64, rb *recordBatch) {
	m := s.messages
	if !m.captures(ch.Prefix) {
		return
	}
	ev := schema.MessageEvent{Prefix: ch.Prefix, Content: ch.Content, TsMs: nowMs, TxID: -1, LSN: int64(ch.LSN), NowMs: nowMs}
	if ch.Transactional {
		ev.TsMs, ev.TxID = ch.CommitTime.UnixMilli(), int64(ch.Xid)
	}
	off := len(rb.slab)
	rb.slab = rewriteJSON(m.jsonKey, m.codec.AppendKey(rb.slab, ch.Prefix), off)
	key := rb.slab[off:len(rb.slab):len(rb.slab)]
	off = len(rb.slab)
	rb.slab = rewriteJSON(m.jsonValue, m.codec.AppendValue(rb.slab, &ev), off)
	rec := kgo.Record{Topic: m.topic, Key: key, Value: rb.slab[off:len(rb.slab):len(rb.slab)]}
	if m.headers != nil {
		start := len(rb.hdrs)
		rb.hdrs, rb.slab = m.headers.appendTo(rb.hdrs, rb.slab, schema.OpMessage, ev.LSN, ev.TxID, ev.TsMs)
		rec.Headers = rb.hdrs[start:len(rb.hdrs):len(rb.hdrs)]
	}
	rb.recs = append(rb.recs, rec)
	m.records.Inc()
}
