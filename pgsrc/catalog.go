package pgsrc

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// Catalog reads tables and types on a regular connection to the source. It
// caches types by OID. Only one goroutine may use it at a time.
type Catalog struct {
	conn  *pgx.Conn
	types map[uint32]*Type
	// publication is source.advanced.publicationName, whose column lists
	// and row filters Discover applies.
	publication string
}

// OpenCatalog connects to the source for catalog reads.
func OpenCatalog(ctx context.Context, cfg *Config) (*Catalog, error) {
	conn, err := Connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Catalog{conn: conn, types: make(map[uint32]*Type), publication: cfg.Advanced.PublicationName}, nil
}

// Discover describes the given tables (all readable tables when none), as
// the publication (source.advanced.publicationName) publishes them: with
// its column lists and row filters (ApplyPublication).
func (c *Catalog) Discover(ctx context.Context, tables []TableRef) ([]Table, error) {
	ts, err := Discover(ctx, c.conn, tables)
	if err != nil {
		return nil, err
	}
	if err := ApplyPublication(ctx, c.conn, c.publication, ts); err != nil {
		return nil, err
	}
	for i := range ts {
		for j := range ts[i].Columns {
			t := &ts[i].Columns[j].Type
			c.types[t.OID] = t
		}
	}
	return ts, nil
}

// DiscoverPresent is Discover that returns the tables the catalog lacks
// (or the user cannot read) apart, each as a *TableNotFoundError, instead
// of failing.
func (c *Catalog) DiscoverPresent(ctx context.Context, tables []TableRef) ([]Table, []*TableNotFoundError, error) {
	ts, missing, err := lookupTables(ctx, c.conn, tables)
	if err != nil {
		return nil, nil, err
	}
	var absent []*TableNotFoundError
	for _, m := range missing {
		var nf *TableNotFoundError
		if !errors.As(m, &nf) {
			return nil, nil, m
		}
		absent = append(absent, nf)
	}
	if err := ApplyPublication(ctx, c.conn, c.publication, ts); err != nil {
		return nil, nil, err
	}
	for i := range ts {
		for j := range ts[i].Columns {
			t := &ts[i].Columns[j].Type
			c.types[t.OID] = t
		}
	}
	return ts, absent, nil
}

// CurrentWAL returns the server's WAL insert position: every transaction
// committed before the call ends below it.
func (c *Catalog) CurrentWAL(ctx context.Context) (pglogrepl.LSN, error) {
	var s string
	if err := c.conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&s); err != nil {
		return 0, fmt.Errorf("reading the WAL position: %w", err)
	}
	return pglogrepl.ParseLSN(s)
}

// RelationsExist reports which of the relations oids exist.
func (c *Catalog) RelationsExist(ctx context.Context, oids []uint32) (map[uint32]bool, error) {
	rows, err := c.conn.Query(ctx, `SELECT oid FROM pg_class WHERE oid = ANY($1::oid[])`, oids)
	if err != nil {
		return nil, fmt.Errorf("reading which relations exist: %w", err)
	}
	exist := make(map[uint32]bool, len(oids))
	var oid uint32
	_, err = pgx.ForEachRow(rows, []any{&oid}, func() error { exist[oid] = true; return nil })
	if err != nil {
		return nil, fmt.Errorf("reading which relations exist: %w", err)
	}
	return exist, nil
}

// RelationName is the current name of the relation oid; false when it no
// longer exists.
func (c *Catalog) RelationName(ctx context.Context, oid uint32) (TableRef, bool, error) {
	var t TableRef
	err := c.conn.QueryRow(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, oid).
		Scan(&t.Schema, &t.Name)
	if errors.Is(err, pgx.ErrNoRows) {
		return TableRef{}, false, nil
	}
	if err != nil {
		return TableRef{}, false, fmt.Errorf("reading the name of relation %d: %w", oid, err)
	}
	return t, true, nil
}

// Type returns the type with the given OID.
func (c *Catalog) Type(ctx context.Context, oid uint32) (*Type, error) {
	if t := c.types[oid]; t != nil {
		return t, nil
	}
	t, err := TypeByOID(ctx, c.conn, oid)
	if err != nil {
		return nil, err
	}
	c.types[oid] = t
	return t, nil
}

// PublicationTables lists the tables of a publication and whether it exists.
func (c *Catalog) PublicationTables(ctx context.Context, publication string) ([]TableRef, bool, error) {
	return PublicationTables(ctx, c.conn, publication)
}

// ServerMajor is the server's major version (10, 11, ...).
func (c *Catalog) ServerMajor() int { return serverMajor(c.conn) }

// PublishedColumn is a column of a table of the publication.
type PublishedColumn struct {
	Table  TableRef
	Column string
	// Type is the column's type, domains resolved to their base, with
	// Typmod its (or the domain's) type modifier.
	Type   *Type
	Typmod int32
}

// PublishedColumns lists every column of every table of the publication
// (all of their columns, whatever a column list publishes).
func (c *Catalog) PublishedColumns(ctx context.Context, publication string) ([]PublishedColumn, error) {
	rows, err := c.conn.Query(ctx, `SELECT pt.schemaname::text, pt.tablename::text, a.attname::text, a.atttypid, a.atttypmod
		FROM pg_publication_tables pt
		JOIN pg_namespace n ON n.nspname = pt.schemaname
		JOIN pg_class r ON r.relnamespace = n.oid AND r.relname = pt.tablename
		JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE pt.pubname = $1
		ORDER BY 1, 2, a.attnum`, publication)
	if err != nil {
		return nil, fmt.Errorf("listing the columns of publication %q: %w", publication, err)
	}
	type raw struct {
		PublishedColumn
		oid uint32
	}
	var rs []raw
	for rows.Next() {
		var r raw
		if err := rows.Scan(&r.Table.Schema, &r.Table.Name, &r.Column, &r.oid, &r.Typmod); err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing the columns of publication %q: %w", publication, err)
		}
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing the columns of publication %q: %w", publication, err)
	}
	out := make([]PublishedColumn, len(rs))
	for i, r := range rs {
		t, err := c.Type(ctx, r.oid)
		if err != nil {
			return nil, fmt.Errorf("type of column %q of %s: %w", r.Column, r.Table, err)
		}
		out[i] = r.PublishedColumn
		var mod int32
		if out[i].Type, mod = t.Resolved(); mod != -1 {
			out[i].Typmod = mod
		}
	}
	return out, nil
}

// Close closes the connection.
func (c *Catalog) Close(ctx context.Context) error { return c.conn.Close(ctx) }
