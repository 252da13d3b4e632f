package pipeline

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pgkafka/pgkafka/offsets"
	"github.com/pgkafka/pgkafka/pgsrc"
)

// Status is the state of a capture, as `pgkafka status` reports it. It is
// read without disturbing a running instance: the checkpoint as a
// read_committed consumer, the slot from pg_replication_slots.
type Status struct {
	// Checkpoint is the last committed checkpoint; nil before the first.
	Checkpoint *offsets.Checkpoint
	Slot       *pgsrc.SlotStatus
	// LagBytes is the WAL between the checkpoint and the server's current
	// position; SlotLagBytes the WAL the slot holds for confirmation.
	LagBytes, SlotLagBytes uint64
	// LagSeconds is the time since the last captured commit while WAL is
	// left to read, 0 when caught up.
	LagSeconds float64
	Tables     []TableStatus
}

// TableStatus is one captured table.
type TableStatus struct {
	Table, Topic string
	State        offsets.State
	// Cursor is a backfill's last key read (JSON), when backfilling.
	Cursor string
}

// ReadStatus gathers the Status of the capture cfg describes.
func ReadStatus(ctx context.Context, cfg Config, now time.Time) (*Status, error) {
	catalog, err := pgsrc.OpenCatalog(ctx, &cfg.Source)
	if err != nil {
		return nil, err
	}
	defer catalog.Close(context.WithoutCancel(ctx))
	opts, err := cfg.Kafka.clientOpts(discardLogger())
	if err != nil {
		return nil, err
	}
	cp, err := offsets.Load(ctx, opts, cfg.Kafka.OffsetsTopic, cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("kafka at %v: %w", cfg.Kafka.Brokers, err)
	}
	slot, err := catalog.Slot(ctx, cfg.Source.Advanced.SlotName)
	if err != nil {
		return nil, err
	}
	st := &Status{Checkpoint: cp, Slot: slot}
	var at pglogrepl.LSN
	if cp != nil {
		at = cp.LSN
		for name, ts := range cp.Tables {
			ref, err := pgsrc.ParseTableRef(name)
			topic := ""
			if err == nil {
				topic = cfg.TopicFor(ref)
			}
			st.Tables = append(st.Tables, TableStatus{Table: name, Topic: topic, State: ts.State, Cursor: string(ts.Cursor)})
		}
		slices.SortFunc(st.Tables, func(a, b TableStatus) int {
			if a.Table < b.Table {
				return -1
			}
			if a.Table > b.Table {
				return 1
			}
			return 0
		})
	}
	if slot.Exists {
		if slot.CurrentWAL > at {
			st.LagBytes = uint64(slot.CurrentWAL - at)
			if cp != nil && !cp.CommitTime.IsZero() {
				st.LagSeconds = now.Sub(cp.CommitTime).Seconds()
			}
		}
		if slot.CurrentWAL > slot.ConfirmedFlush {
			st.SlotLagBytes = uint64(slot.CurrentWAL - slot.ConfirmedFlush)
		}
	}
	return st, nil
}
