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
	standby      prometheus.Gauge

	backfillRows      *prometheus.CounterVec // table
	backfillEstimated *prometheus.GaugeVec   // table
	backfillDone      *prometheus.GaugeVec   // table
	backfillChunks    *prometheus.CounterVec // table

	toast     *prometheus.CounterVec // path
	oversized *prometheus.CounterVec // topic, action

	slotLag       prometheus.Gauge
	slotRetained  prometheus.Gauge
	slotSafeWAL   prometheus.Gauge
	slotWALStatus *prometheus.GaugeVec // status
	slotLost      prometheus.Counter
	purged        *prometheus.CounterVec // table
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
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		m.reg.MustRegister(c)
		return c
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		m.reg.MustRegister(g)
		return g
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(c)
		return c
	}
	gaugeVec := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(g)
		return g
	}
	m.records = counterVec("pgkafka_records_total",
		"Records produced (committed or not), by topic and op (c, u, d, r, t, m; tombstones are not counted).", "topic", "op")
	m.transactions = counter("pgkafka_kafka_transactions_total", "Kafka transactions committed.")
	m.aborted = counter("pgkafka_kafka_transactions_aborted_total", "Kafka transactions aborted (a failed or hard-stopped session).")
	m.committedLSN = gauge("pgkafka_committed_lsn", "The LSN of the last checkpoint Kafka committed, as a number.")
	m.commitTime = gauge("pgkafka_last_commit_timestamp_seconds", "When the last Kafka transaction committed (Unix time).")
	m.sessions = counter("pgkafka_sessions_total", "Capture sessions started (the first, and each retry or restart).")
	m.standby = gauge("pgkafka_standby", "1 while this instance waits as a standby for the active instance of its name to stop, else 0.")
	m.failures = counter("pgkafka_session_failures_total", "Capture sessions that ended in an error.")
	m.backfillRows = counterVec("pgkafka_backfill_rows_total", "Rows read by backfills, by table.", "table")
	m.backfillEstimated = gaugeVec("pgkafka_backfill_estimated_rows",
		"The table's row estimate (pg_class.reltuples) when its backfill started.", "table")
	m.backfillDone = gaugeVec("pgkafka_backfill_done",
		"1 once the table's backfill has finished in this process, 0 while it runs.", "table")
	m.backfillChunks = counterVec("pgkafka_backfill_chunks_total", "Backfill chunks read, by table.", "table")
	m.toast = counterVec("pgkafka_toast_values_total",
		"Unchanged TOASTed values filled, by path: old_tuple (REPLICA IDENTITY FULL), cache, database, or unavailable (sent as the marker).", "path")
	for _, p := range []string{ToastOldTuple, ToastCache, ToastDatabase, ToastUnavailable} {
		m.toast.WithLabelValues(p)
	}
	m.oversized = counterVec("pgkafka_records_oversized_total",
		"Records larger than kafka.maxRecordBytes, by topic and action: skip (dropped) or dlq (replaced by a record in the dead-letter topic).", "topic", "action")
	m.slotLag = gauge("pgkafka_slot_lag_bytes",
		"WAL written since the position the slot's consumer (this capture) last confirmed, at the last check of the slot.")
	m.slotRetained = gauge("pgkafka_slot_retained_bytes",
		"WAL the server keeps for the slot (from its restart LSN to the current position), at the last check: what fills the disk.")
	m.slotSafeWAL = gauge("pgkafka_slot_safe_wal_bytes",
		"WAL that may still be written before the slot risks invalidation (safe_wal_size, PostgreSQL 13+ under max_slot_wal_keep_size); -1 when unlimited.")
	m.slotWALStatus = gaugeVec("pgkafka_slot_wal_status",
		"1 for the slot's wal_status at the last check (reserved, extended, unreserved, lost; PostgreSQL 13+), 0 for the others.", "status")
	m.slotLost = counter("pgkafka_slot_lost_total",
		"Replication slots found lost (gone or invalidated) and re-created, every table backfilled again (source.advanced.onSlotLost: rebackfill).")
	m.purged = counterVec("pgkafka_purged_keys_total",
		"Keys removed from a topic (a delete and a tombstone each) at the end of a backfill after a lost slot: rows deleted while no slot existed.", "table")
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
