package pipeline

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/schema"
)

// Record size limits (kafka.maxRecordBytes).
const (
	// DefaultMaxRecordBytes is kafka.maxRecordBytes by default: what a
	// batch of 1 MiB holds besides its header, under Kafka's default
	// message.max.bytes (1048588): the records pgkafka produced before
	// the setting existed.
	DefaultMaxRecordBytes = 1_048_000
	// maxMaxRecordBytes caps the setting: the producer buffers two such
	// records at least (maxBufferedBytes grows with it).
	maxMaxRecordBytes = 256 << 20
	// batchOverheadBytes is what a record batch of one record adds to its
	// key and value, at most (headers, varints, the batch header).
	batchOverheadBytes = 512
)

// The values of kafka.oversizedRecords.
const (
	OversizedFail = "fail"
	OversizedSkip = "skip"
	OversizedDLQ  = "dlq"
)

var oversizedPolicies = []string{OversizedFail, OversizedSkip, OversizedDLQ}

// oversize applies kafka.oversizedRecords to records larger than
// kafka.maxRecordBytes. The serializer and the backfill stage share it: it
// holds only settings, a logger and counters, all safe to share.
type oversize struct {
	max    int
	policy string
	dlq    string // the dead-letter topic
	log    *slog.Logger
	counts *prometheus.CounterVec // topic, action
}

func newOversize(cfg *Config, m *Metrics, log *slog.Logger) *oversize {
	return &oversize{max: cfg.Kafka.MaxRecordBytes, policy: cfg.Kafka.OversizedRecords, dlq: cfg.DeadLetterTopic(),
		log: log, counts: m.oversized}
}

// recordSite is where a record comes from, for the reports of one too
// large.
type recordSite struct {
	tc     *tableCodec
	keyRow []schema.Datum // nil: a keyless table
	lsn    pglogrepl.LSN  // 0: a backfill read
	op     schema.Op
}

// fits reports whether a record of key and value may be produced.
func (o *oversize) fits(key, value []byte) bool { return len(key)+len(value) <= o.max }

// handle decides the fate of rec, found too large (!fits): an error
// (fail), nil (skip: it is dropped), or the dead-letter record to produce
// in its place (dlq).
func (o *oversize) handle(rec *kgo.Record, at recordSite) (*kgo.Record, error) {
	size := len(rec.Key) + len(rec.Value)
	ref := at.tc.ref.String()
	key := renderKey(at.tc, at.keyRow)
	switch o.policy {
	case OversizedSkip:
		o.counts.WithLabelValues(rec.Topic, OversizedSkip).Inc()
		o.log.Warn("record larger than kafka.maxRecordBytes skipped (kafka.oversizedRecords: skip): its change does not reach Kafka",
			"table", ref, "key", key, "lsn", lsnText(at.lsn), "op", string(at.op), "bytes", size, "max_bytes", o.max)
		return nil, nil
	case OversizedDLQ:
		o.counts.WithLabelValues(rec.Topic, OversizedDLQ).Inc()
		value, err := json.Marshal(deadLetter{Table: ref, Topic: rec.Topic, Key: key, LSN: lsnText(at.lsn), Op: string(at.op),
			Bytes: size, MaxBytes: o.max, Reason: "larger than kafka.maxRecordBytes"})
		if err != nil {
			return nil, err
		}
		dk, _ := json.Marshal(struct {
			Table string `json:"table"`
			Key   string `json:"key"`
		}{ref, key})
		return &kgo.Record{Topic: o.dlq, Key: dk, Value: value}, nil
	}
	return nil, &RecordTooLargeError{Table: ref, Key: key, LSN: at.lsn, Bytes: size, MaxBytes: o.max}
}

// deadLetter is the value of a record written to the dead-letter topic in
// place of one too large.
type deadLetter struct {
	Table    string `json:"table"`
	Topic    string `json:"topic"`
	Key      string `json:"key"`
	LSN      string `json:"lsn"` // "backfill" for a backfill read
	Op       string `json:"op"`
	Bytes    int    `json:"bytes"`
	MaxBytes int    `json:"maxBytes"`
	Reason   string `json:"reason"`
}

// renderKey renders a record's key columns as col=value, comma-separated;
// "(no key)" for a keyless table.
func renderKey(tc *tableCodec, keyRow []schema.Datum) string {
	if len(tc.key) == 0 || keyRow == nil {
		return "(no key)"
	}
	var b strings.Builder
	for j, i := range tc.key {
		if j > 0 {
			b.WriteString(",")
		}
		b.WriteString(tc.rel.Columns[i].Name)
		b.WriteString("=")
		switch d := keyRow[i]; {
		case d.Null:
			b.WriteString("null")
		case d.Binary:
			fmt.Fprintf(&b, "%x", d.Text)
		default:
			b.Write(d.Text)
		}
	}
	return b.String()
}

func lsnText(lsn pglogrepl.LSN) string {
	if lsn == 0 {
		return "backfill"
	}
	return lsn.String()
}

// RecordTooLargeError is a record larger than kafka.maxRecordBytes, under
// kafka.oversizedRecords: fail.
type RecordTooLargeError struct {
	Table, Key      string
	LSN             pglogrepl.LSN // 0: a backfill read
	Bytes, MaxBytes int
}

func (e *RecordTooLargeError) Error() string {
	return fmt.Sprintf("the record of %s key %s at LSN %s is %d bytes, more than kafka.maxRecordBytes (%d): raise kafka.maxRecordBytes "+
		"(with the broker's message.max.bytes and the topic's max.message.bytes), or set kafka.oversizedRecords to skip (drop it, logged) "+
		"or dlq (a record naming it in the dead-letter topic), then restart", e.Table, e.Key, lsnText(e.LSN), e.Bytes, e.MaxBytes)
}
