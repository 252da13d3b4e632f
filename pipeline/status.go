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
	// Lease is the instance running the capture and the standbys waiting.
	Lease pgsrc.LeaseState
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
	// Estimated is pg_class.reltuples (-1: never analyzed) and Percent
	// the planner's estimate of the share behind the cursor, of a table
	// being backfilled (-1: unknown).
	Estimated int64
	Percent   float64
	// Where is a filtered backfill's condition; Purge tells that the keys
	// the table lacks are removed at its end (after a lost slot, or a
	// repair: PurgeKeys of them, 0 for any).
	Where     string
	Purge     bool
	PurgeKeys int
}

// backfillShares fills the estimate and share read of the tables being
// backfilled, from the planner's statistics (no table is read).
func backfillShares(ctx context.Context, cfg Config, catalog *pgsrc.Catalog, cp *offsets.Checkpoint, tables []TableStatus) error {
	var refs []pgsrc.TableRef
	for _, t := range tables {
		if t.State == offsets.StateBackfilling {
			if ref, err := pgsrc.ParseTableRef(t.Table); err == nil {
				refs = append(refs, ref)
			}
		}
	}
	if len(refs) == 0 {
		return nil
	}
	described, _, err := catalog.DiscoverPresent(ctx, refs) // a table dropped while backfilled has no share
	if err != nil {
		return err
	}
	sc, err := pgsrc.OpenScanner(ctx, &cfg.Source)
	if err != nil {
		return err
	}
	defer sc.Close(context.WithoutCancel(ctx))
	for i := range described {
		info := &described[i]
		ts := &tables[slices.IndexFunc(tables, func(t TableStatus) bool { return t.Table == info.Ref().String() })]
		ts.Estimated = info.Estimated
		b := &tableBackfill{info: info}
		if len(info.KeyColumns) > 0 {
			if b.order, err = sc.KeyOrder(ctx, info, info.KeyColumns); err != nil {
				return err
			}
		}
		if err := b.parseCursor(cp.Tables[ts.Table].Cursor); err != nil {
			return fmt.Errorf("%w: %v", offsets.ErrUnreadable, err)
		}
		switch {
		case info.Estimated <= 0:
		case b.cursor == nil && b.ctid == "":
			ts.Percent = 0
		default:
			// Without an estimate, the share is unknown.
			if left, err := sc.EstimateAfter(ctx, info, b.order, b.cursor, b.ctid); err == nil {
				ts.Percent = min(100, max(0, 100*float64(info.Estimated-left)/float64(info.Estimated)))
			}
		}
	}
	return nil
}

// ReadStatus gathers the Status of the capture cfg describes. Its errors
// never hold a password of cfg.
func ReadStatus(ctx context.Context, cfg Config, now time.Time) (*Status, error) {
	st, err := readStatus(ctx, cfg, now)
	return st, cfg.Redactor().Error(cfg.Kafka.explainAuth(err))
}

func readStatus(ctx context.Context, cfg Config, now time.Time) (*Status, error) {
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
	lease, err := catalog.Lease(ctx, cfg.Name)
	if err != nil {
		return nil, err
	}
	st := &Status{Checkpoint: cp, Slot: slot, Lease: lease}
	var at pglogrepl.LSN
	if cp != nil {
		at = cp.LSN
		for name, ts := range cp.Tables {
			ref, err := pgsrc.ParseTableRef(name)
			topic := ""
			if err == nil {
				topic = cfg.TopicFor(ref)
			}
			st.Tables = append(st.Tables, TableStatus{Table: name, Topic: topic, State: ts.State, Cursor: string(ts.Cursor), Percent: -1,
				Where: ts.Where, Purge: ts.Purge, PurgeKeys: len(ts.PurgeKeys)})
		}
		if err := backfillShares(ctx, cfg, catalog, cp, st.Tables); err != nil {
			return nil, err
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
