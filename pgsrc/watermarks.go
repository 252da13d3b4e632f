package pgsrc

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Watermarks writes to the watermarks table, on a connection of its own.
// Each write is a transaction in the replication stream: heartbeats keep
// the slot moving when no captured table changes, and backfills bracket
// their chunks with them. Only one goroutine may use it at a time.
type Watermarks struct {
	conn  *pgx.Conn
	slot  string
	query string
}

// OpenWatermarks connects for watermark writes.
//
// Its writes commit with synchronous_commit = local, whatever the server's
// setting: logical decoding reads only WAL the server has flushed, and a
// commit made with synchronous_commit = off waits for the WAL writer
// (wal_writer_delay, 200 ms by default) before the stream shows it. A
// backfill chunk waits on its low watermark, so every chunk would wait for
// the timer. Local rather than on: the stream needs the local flush only,
// not the synchronous standbys'.
func OpenWatermarks(ctx context.Context, cfg *Config) (*Watermarks, error) {
	ref := cfg.Watermarks()
	cc, err := cfg.ConnConfig(ctx, false)
	if err != nil {
		return nil, err
	}
	cc.RuntimeParams["synchronous_commit"] = "local"
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, cfg.connectError(err)
	}
	return &Watermarks{
		conn: conn,
		slot: cfg.Advanced.SlotName,
		query: `INSERT INTO ` + ref.Quoted() + ` (slot, watermark) VALUES ($1, $2)
			ON CONFLICT (slot) DO UPDATE SET watermark = EXCLUDED.watermark`,
	}, nil
}

// Write sets this slot's row of the watermarks table to value.
func (w *Watermarks) Write(ctx context.Context, value string) error {
	if _, err := w.conn.Exec(ctx, w.query, w.slot, value); err != nil {
		return fmt.Errorf("writing watermark %q of slot %q: %w", value, w.slot, err)
	}
	return nil
}

// Close closes the connection.
func (w *Watermarks) Close(ctx context.Context) error { return w.conn.Close(ctx) }
