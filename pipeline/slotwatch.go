package pipeline

import (
	"context"
	"log/slog"
	"time"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// Slot watch timing.
const (
	// slotCheckEvery is how often a running capture reads its slot's state.
	slotCheckEvery = 10 * time.Second
	// slotWarnEvery is how often a slot past the limit is warned of again.
	slotWarnEvery = time.Minute
)

// walStatuses are the values of pg_replication_slots.wal_status.
var walStatuses = []string{"reserved", "extended", "unreserved", "lost"}

// slotWatch reads the replication slot's state at the start of a session
// and every slotCheckEvery, on a connection of its own, into metrics; it
// warns while the WAL the server keeps for the slot is past
// source.advanced.maxSlotLagBytes, or the slot is about to be invalidated
// (wal_status unreserved). It is for operators: a failed read is logged
// and tried again at the next check, never a failure of the capture.
type slotWatch struct {
	catalog *pgsrc.Catalog
	slot    string
	maxLag  int64 // 0: no warning
	metrics *Metrics
	log     *slog.Logger

	lastWarn time.Time
}

func (w *slotWatch) run(ctx context.Context) error {
	t := time.NewTicker(slotCheckEvery)
	defer t.Stop()
	for {
		w.check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// check reads the slot once.
func (w *slotWatch) check(ctx context.Context) {
	st, err := w.catalog.Slot(ctx, w.slot)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("cannot read the replication slot's state; trying again later", "slot", w.slot, "err", err)
		}
		return
	}
	if !st.Exists {
		return // the reader reports a slot gone
	}
	retained := st.RetainedBytes()
	w.metrics.slotLag.Set(float64(st.LagBytes()))
	w.metrics.slotRetained.Set(float64(retained))
	w.metrics.slotSafeWAL.Set(float64(st.SafeWALBytes))
	for _, s := range walStatuses {
		v := 0.0
		if s == st.WALStatus {
			v = 1
		}
		w.metrics.slotWALStatus.WithLabelValues(s).Set(v)
	}
	over := w.maxLag > 0 && retained > w.maxLag
	if !over && st.WALStatus != "unreserved" {
		w.lastWarn = time.Time{}
		return
	}
	if time.Since(w.lastWarn) < slotWarnEvery {
		return
	}
	w.lastWarn = time.Now()
	w.log.Warn("the replication slot holds back more WAL than source.advanced.maxSlotLagBytes allows, or is about to be invalidated: the server keeps this WAL on disk until the capture confirms it; see whether the capture keeps up (pgkafka status, pgkafka_slot_lag_bytes) and the server's free disk",
		"slot", w.slot, "retained_bytes", retained, "max_bytes", w.maxLag, "lag_bytes", st.LagBytes(),
		"wal_status", st.WALStatus, "safe_wal_bytes", st.SafeWALBytes)
}
