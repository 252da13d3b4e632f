package pgsrc

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Fetcher reads rows by key on a connection of its own, for the TOAST
// reconciler: the values pgoutput leaves out of an update as unchanged.
// Values come in the text form pgoutput sends (the connection pins the same
// settings as the replication connection, see ConnConfig). What it reads
// is the row as it is now, which may be newer than the change it is read
// for. Only one goroutine may use a Fetcher at a time.
type Fetcher struct {
	conn   *pgx.Conn
	user   string
	sql    strings.Builder
	params [][]byte
	row    []Value
}

// OpenFetcher connects to the source for reads by key.
func OpenFetcher(ctx context.Context, cfg *Config) (*Fetcher, error) {
	conn, err := Connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Fetcher{conn: conn, user: cfg.User}, nil
}

// Close closes the connection.
func (f *Fetcher) Close(ctx context.Context) error { return f.conn.Close(ctx) }

// FetchRows reads, in one statement, the columns cols of the rows of t
// whose key columns keyCols hold keys[i] (each key the text forms of
// keyCols, in order, as pgoutput sends them), and calls fn with i and the
// row's values (ValueText or ValueNull, in the order of cols) for each row
// found; a key no row holds is not reported. The values alias buffers valid
// only during the call: fn must copy what it keeps. An error from fn stops
// the read and is returned as is.
func (f *Fetcher) FetchRows(ctx context.Context, t *Table, keyCols, cols []string, keys [][][]byte, fn func(i int, row []Value) error) error {
	if len(keys) == 0 || len(cols) == 0 {
		return nil
	}
	types := make([]string, len(keyCols))
	for k, name := range keyCols {
		for i := range t.Columns {
			if t.Columns[i].Name == name {
				types[k] = t.Columns[i].Type.Display
			}
		}
		if types[k] == "" {
			return fmt.Errorf("reading rows of %s by key: no column %q: the table changed since it was described", t.Ref(), name)
		}
	}
	// SELECT k.n, t.c... FROM tbl AS t JOIN (VALUES (0, $1::type, ...), ...)
	// AS k(n, k0, ...) ON t.key0 = k.k0 AND ...: the key's index serves it.
	f.sql.Reset()
	f.sql.WriteString("SELECT k.n")
	for _, c := range cols {
		f.sql.WriteString(", t." + quoteIdent(c))
	}
	f.sql.WriteString(" FROM " + t.Ref().Quoted() + " AS t JOIN (VALUES ")
	f.params = f.params[:0]
	for i, key := range keys {
		if len(key) != len(keyCols) {
			return fmt.Errorf("reading rows of %s by key: a key of %d values for %d columns", t.Ref(), len(key), len(keyCols))
		}
		if i > 0 {
			f.sql.WriteString(", ")
		}
		f.sql.WriteString("(" + strconv.Itoa(i))
		for k, v := range key {
			f.params = append(f.params, v)
			fmt.Fprintf(&f.sql, ", $%d::%s", len(f.params), types[k])
		}
		f.sql.WriteString(")")
	}
	f.sql.WriteString(") AS k(n")
	for k := range keyCols {
		fmt.Fprintf(&f.sql, ", k%d", k)
	}
	f.sql.WriteString(") ON ")
	for k, name := range keyCols {
		if k > 0 {
			f.sql.WriteString(" AND ")
		}
		fmt.Fprintf(&f.sql, "t.%s = k.k%d", quoteIdent(name), k)
	}

	rr := f.conn.PgConn().ExecParams(ctx, f.sql.String(), f.params, nil, nil, nil)
	var fnErr error
	for fnErr == nil && rr.NextRow() {
		vals := rr.Values()
		i, err := strconv.Atoi(string(vals[0]))
		if err != nil || i < 0 || i >= len(keys) {
			fnErr = fmt.Errorf("reading rows of %s by key: row number %q", t.Ref(), vals[0])
			break
		}
		f.row = f.row[:0]
		for _, v := range vals[1:] {
			if v == nil {
				f.row = append(f.row, Value{Kind: ValueNull})
			} else {
				f.row = append(f.row, Value{Kind: ValueText, Data: v})
			}
		}
		fnErr = fn(i, f.row)
	}
	_, err := rr.Close()
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return (&Scanner{user: f.user}).scanError("reading rows by key of", t.Ref(), err)
	}
	return nil
}
