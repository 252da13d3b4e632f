package pgsrc

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// CurrentLSN returns the server's current WAL write position. Every
// commit a read of this connection saw before the call is below it, so
// once a capture has written everything below it, its topics hold every
// change those reads could see (pgkafka verify waits for that).
func (s *Scanner) CurrentLSN(ctx context.Context) (pglogrepl.LSN, error) {
	return currentLSN(ctx, s.conn)
}

// CurrentLSN returns the server's current WAL write position: a request
// written on another connection before the call is below it.
func (c *Catalog) CurrentLSN(ctx context.Context) (pglogrepl.LSN, error) {
	return currentLSN(ctx, c.conn)
}

func currentLSN(ctx context.Context, conn *pgx.Conn) (pglogrepl.LSN, error) {
	var text string
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&text); err != nil {
		return 0, fmt.Errorf("reading the server's WAL position: %w", err)
	}
	lsn, err := pglogrepl.ParseLSN(text)
	if err != nil {
		return 0, fmt.Errorf("reading the server's WAL position: %q: %w", text, err)
	}
	return lsn, nil
}

// QuoteIdent quotes an identifier for SQL.
func QuoteIdent(s string) string { return quoteIdent(s) }

// Rows runs a query of no parameters about table and calls fn with each
// row, every column in text form (as a backfill reads key columns).
// `pgkafka verify --repair` reads back the keys it writes as SQL literals
// with it, to check that they stand for the keys they were made from.
func (s *Scanner) Rows(ctx context.Context, table TableRef, sql string, fn func(row []Value) error) error {
	s.params = s.params[:0]
	_, err := s.scan(ctx, sql, table, "reading keys of", false, nil, func(_ []byte, row []Value) error { return fn(row) })
	return err
}
