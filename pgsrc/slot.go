package pgsrc

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// SlotStatus is the replication slot as the server sees it.
type SlotStatus struct {
	Name   string
	Exists bool
	// Active is set while a connection streams from it.
	Active bool
	// ConfirmedFlush is the position the consumer confirmed; Restart the
	// oldest WAL the slot holds.
	ConfirmedFlush, Restart pglogrepl.LSN
	// WALStatus is reserved, extended, unreserved or lost ("" before
	// PostgreSQL 13).
	WALStatus string
	// SafeWALBytes is how much more WAL may be written before the slot is
	// in danger of being invalidated (pg_replication_slots.safe_wal_size,
	// PostgreSQL 13+, under max_slot_wal_keep_size); -1 when unlimited or
	// unknown.
	SafeWALBytes int64
	// CurrentWAL is the server's pg_current_wal_lsn().
	CurrentWAL pglogrepl.LSN
}

// RetainedBytes is how much WAL the server keeps for the slot: from its
// restart LSN to the current WAL position.
func (s *SlotStatus) RetainedBytes() int64 { return lsnDiff(s.CurrentWAL, s.Restart) }

// LagBytes is how much WAL the slot's consumer has not confirmed yet.
func (s *SlotStatus) LagBytes() int64 { return lsnDiff(s.CurrentWAL, s.ConfirmedFlush) }

func lsnDiff(a, b pglogrepl.LSN) int64 {
	if a <= b {
		return 0
	}
	return int64(a - b)
}

// Lost reports a slot the server invalidated.
func (s *SlotStatus) Lost() bool { return s.WALStatus == "lost" }

// Slot reads the status of the replication slot named slot.
func (c *Catalog) Slot(ctx context.Context, slot string) (*SlotStatus, error) {
	st := &SlotStatus{Name: slot}
	walStatus, safeWAL := "''", "-1::bigint"
	if serverMajor(c.conn) >= 13 {
		walStatus, safeWAL = "COALESCE(wal_status, '')", "COALESCE(safe_wal_size, -1)"
	}
	var confirmed, restart, current string
	err := c.conn.QueryRow(ctx, `SELECT active, COALESCE(confirmed_flush_lsn::text, '0/0'), COALESCE(restart_lsn::text, '0/0'), `+walStatus+`,
			`+safeWAL+`, pg_current_wal_lsn()::text
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&st.Active, &confirmed, &restart, &st.WALStatus, &st.SafeWALBytes, &current)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading replication slot %q: %w", slot, err)
	}
	st.Exists = true
	for _, p := range []struct {
		s   string
		lsn *pglogrepl.LSN
	}{{confirmed, &st.ConfirmedFlush}, {restart, &st.Restart}, {current, &st.CurrentWAL}} {
		if *p.lsn, err = pglogrepl.ParseLSN(p.s); err != nil {
			return nil, fmt.Errorf("reading replication slot %q: %w", slot, err)
		}
	}
	return st, nil
}

// DropSlot drops the replication slot named slot, if it exists and no
// connection streams from it: a slot the server invalidated cannot be
// used again.
func (c *Catalog) DropSlot(ctx context.Context, slot string) error {
	if _, err := c.conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot); err != nil {
		return fmt.Errorf("dropping replication slot %q: %w", slot, err)
	}
	return nil
}
