package pgsrc

import (
	"context"

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

// Close closes the connection.
func (c *Catalog) Close(ctx context.Context) error { return c.conn.Close(ctx) }
