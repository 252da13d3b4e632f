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
	// CurrentWAL is the server's pg_current_wal_lsn().
	CurrentWAL pglogrepl.LSN
}

// Lost reports a slot the server invalidated.
func (s *SlotStatus) Lost() bool { return s.WALStatus == "lost" }

// Slot reads the status of the replication slot named slot.
func (c *Catalog) Slot(ctx context.Context, slot string) (*SlotStatus, error) {
	st := &SlotStatus{Name: slot}
	walStatus := "''"
	if serverMajor(c.conn) >= 13 {
		walStatus = "COALESCE(wal_status, '')"
	}
	var confirmed, restart, current string
	err := c.conn.QueryRow(ctx, `SELECT active, COALESCE(confirmed_flush_lsn::text, '0/0'), COALESCE(restart_lsn::text, '0/0'), `+walStatus+`,
			pg_current_wal_lsn()::text
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&st.Active, &confirmed, &restart, &st.WALStatus, &current)
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
