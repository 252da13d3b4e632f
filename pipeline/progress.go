package pipeline

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TableProgress is one table's backfill progress in this process (its
// latest session).
type TableProgress struct {
	// Table is <schema>.<table>.
	Table string
	// Rows is how many rows this session has read; Before is the
	// planner's estimate of the rows behind the cursor a backfill resumed
	// from (read by an earlier process).
	Rows, Before int64
	// Estimated is pg_class.reltuples when the backfill started (-1:
	// never analyzed).
	Estimated int64
	// Started is when this process started the backfill; Elapsed is how
	// long it has run, or ran.
	Started time.Time
	Elapsed time.Duration
	// Done is set once the table is wholly read.
	Done bool
}

// Percent is the share of the estimate read, in [0, 100], or -1 without
// an estimate.
func (p TableProgress) Percent() float64 {
	if p.Estimated <= 0 {
		return -1
	}
	if p.Done {
		return 100
	}
	return min(100, 100*float64(p.Before+p.Rows)/float64(p.Estimated))
}

// ETA is the time left at the rate so far, or -1 when unknown.
func (p TableProgress) ETA() time.Duration {
	switch {
	case p.Done:
		return 0
	case p.Rows == 0 || p.Estimated <= p.Before+p.Rows:
		return -1
	}
	return time.Duration(float64(p.Elapsed) * float64(p.Estimated-p.Before-p.Rows) / float64(p.Rows))
}

// backfillProgress is the progress of a Runner's backfills, kept across
// its sessions, read by Runner.BackfillProgress and exported in metrics.
type backfillProgress struct {
	metrics *Metrics
	mu      sync.Mutex
	tables  map[string]*tableProgress
}

func newBackfillProgress(m *Metrics) *backfillProgress {
	return &backfillProgress{metrics: m, tables: make(map[string]*tableProgress)}
}

// tableProgress is one table's; its counters are updated without a lock.
type tableProgress struct {
	table     string
	rows      atomic.Int64
	estimated int64
	before    atomic.Int64
	started   time.Time
	finished  atomic.Int64 // Unix nanoseconds; 0 while running
	rowsC     prometheus.Counter
	chunksC   prometheus.Counter
	doneG     prometheus.Gauge
}

// start registers a table's backfill as a session starts it: from its
// first row, or from its cursor (then before counts the rows behind it).
func (b *backfillProgress) start(table string, estimated int64) *tableProgress {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := &tableProgress{table: table, estimated: estimated, started: time.Now(),
		rowsC: b.metrics.backfillRows.WithLabelValues(table), chunksC: b.metrics.backfillChunks.WithLabelValues(table),
		doneG: b.metrics.backfillDone.WithLabelValues(table)}
	b.tables[table] = p
	b.metrics.backfillEstimated.WithLabelValues(table).Set(float64(estimated))
	p.doneG.Set(0)
	return p
}

// add counts a chunk of rows.
func (p *tableProgress) add(rows int) {
	p.rows.Add(int64(rows))
	p.rowsC.Add(float64(rows))
	p.chunksC.Inc()
}

func (p *tableProgress) finish() {
	p.finished.Store(time.Now().UnixNano())
	p.doneG.Set(1)
}

func (p *tableProgress) view() TableProgress {
	v := TableProgress{Table: p.table, Rows: p.rows.Load(), Before: p.before.Load(), Estimated: p.estimated, Started: p.started}
	if f := p.finished.Load(); f != 0 {
		v.Done, v.Elapsed = true, time.Unix(0, f).Sub(p.started)
	} else {
		v.Elapsed = time.Since(p.started)
	}
	return v
}

// all returns every table's progress, by name.
func (b *backfillProgress) all() []TableProgress {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]TableProgress, 0, len(b.tables))
	for _, p := range b.tables {
		out = append(out, p.view())
	}
	slices.SortFunc(out, func(a, b TableProgress) int {
		switch {
		case a.Table < b.Table:
			return -1
		case a.Table > b.Table:
			return 1
		}
		return 0
	})
	return out
}
