package pipeline

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgkafka/pgkafka/schema"
)

// Metrics are a Runner's Prometheus metrics (README "Metrics"). They live
// as long as the Runner, across its sessions. Hot paths hold the counters
// they add to (per table codec, per stage), never a label lookup per row.
type Metrics struct {
	reg *prometheus.Registry

	records      *prometheus.CounterVec // topic, op
	transactions prometheus.Counter
	aborted      prometheus.Counter
	committedLSN prometheus.Gauge
	commitTime   prometheus.Gauge
	sessions     prometheus.Counter
	failures     prometheus.Counter

	backfillRows      *prometheus.CounterVec // table
	backfillEstimated *prometheus.GaugeVec   // table
	backfillDone      *prometheus.GaugeVec   // table
	backfillChunks    *prometheus.CounterVec // table

	toast *prometheus.CounterVec // path
}

// TOAST reconciler paths (DESIGN §4), the values of the path label.
const (
	ToastOldTuple    = "old_tuple"
	ToastCache       = "cache"
	ToastDatabase    = "database"
	ToastUnavailable = "unavailable"
)

func newMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.records = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgkafka_records_total",
		Help: "Records produced (committed or not), by topic and op (c, u, d, r, t; m for logical decoding messages; tombstones are not counted)."}, []string{"topic", "op"})
	f(m.records)
	m.transactions = prometheus.NewCounter(prometheus.CounterOpts{Name: "pgkafka_kafka_transactions_total",
		Help: "Kafka transactions committed."})
	f(m.transactions)
	m.aborted = prometheus.NewCounter(prometheus.CounterOpts{Name: "pgkafka_kafka_transactions_aborted_total",
		Help: "Kafka transactions aborted (a failed or hard-stopped session)."})
	f(m.aborted)
	m.committedLSN = prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgkafka_committed_lsn",
		Help: "The LSN of the last checkpoint Kafka committed, as a number."})
	f(m.committedLSN)
	m.commitTime = prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgkafka_last_commit_timestamp_seconds",
		Help: "When the last Kafka transaction committed (Unix time)."})
	f(m.commitTime)
	m.sessions = prometheus.NewCounter(prometheus.CounterOpts{Name: "pgkafka_sessions_total",
		Help: "Capture sessions started (the first, and each retry or restart)."})
	f(m.sessions)
	m.failures = prometheus.NewCounter(prometheus.CounterOpts{Name: "pgkafka_session_failures_total",
		Help: "Capture sessions that ended in an error."})
	f(m.failures)
	m.backfillRows = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgkafka_backfill_rows_total",
		Help: "Rows read by backfills, by table."}, []string{"table"})
	f(m.backfillRows)
	m.backfillEstimated = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgkafka_backfill_estimated_rows",
		Help: "The table's row estimate (pg_class.reltuples) when its backfill started."}, []string{"table"})
	f(m.backfillEstimated)
	m.backfillDone = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgkafka_backfill_done",
		Help: "1 once the table's backfill has finished in this process, 0 while it runs."}, []string{"table"})
	f(m.backfillDone)
	m.backfillChunks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgkafka_backfill_chunks_total",
		Help: "Backfill chunks emitted, by table."}, []string{"table"})
	f(m.backfillChunks)
	m.toast = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgkafka_toast_values_total",
		Help: "Unchanged TOASTed values filled, by path: old_tuple (REPLICA IDENTITY FULL), cache, database, or unavailable (sent as the marker)."}, []string{"path"})
	for _, p := range []string{ToastOldTuple, ToastCache, ToastDatabase, ToastUnavailable} {
		m.toast.WithLabelValues(p)
	}
	f(m.toast)
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Gatherer is the registry, for tests and embedding.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// opCounters are one topic's record counters, indexed by op.
type opCounters [256]prometheus.Counter

func (m *Metrics) opCounters(topic string) *opCounters {
	var c opCounters
	for _, op := range []schema.Op{schema.OpCreate, schema.OpUpdate, schema.OpDelete, schema.OpRead, schema.OpTruncate} {
		c[op] = m.records.WithLabelValues(topic, string(op))
	}
	return &c
}
