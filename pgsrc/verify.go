package pgsrc

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// CurrentLSN returns the server's current WAL write position. Every
// commit a read of this connection saw before the call is below it, so
// once a capture has written everything below it, its topics hold every
// change those reads could see (pgkafka verify waits for that).
func (s *Scanner) CurrentLSN(ctx context.Context) (pglogrepl.LSN, error) {
	var text string
	if err := s.conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&text); err != nil {
		return 0, fmt.Errorf("reading the server's WAL position: %w", err)
	}
	lsn, err := pglogrepl.ParseLSN(text)
	if err != nil {
		return 0, fmt.Errorf("reading the server's WAL position: %q: %w", text, err)
	}
	return lsn, nil
}
