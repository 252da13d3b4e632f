package pgsrc

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Publication column lists and row filters (PostgreSQL 15+). A publication
// created with `FOR TABLE t (a, b) WHERE (region = 'eu')` makes pgoutput
// send only those columns, and only the changes of rows the filter passes
// (an update moving a row out of the filter as a delete, into it as an
// insert). The backfill must read the same: ApplyPublication marks the
// columns left out (Column.Unpublished) and keeps the filter
// (Table.RowFilter), which the Scanner's queries apply.

// ApplyPublication reads the column list and the row filter publication
// holds for each of tables and records them in the tables: the columns
// the list leaves out are Unpublished, RowFilter is the filter, and a
// filtered table's Estimated is the planner's estimate of the rows the
// filter passes. A table the publication does not hold (or a publication
// that does not exist, or a server before PostgreSQL 15) has neither.
// Running it again replaces what an earlier run recorded.
func ApplyPublication(ctx context.Context, conn *pgx.Conn, publication string, tables []Table) error {
	for i := range tables {
		t := &tables[i]
		t.RowFilter = ""
		for j := range t.Columns {
			t.Columns[j].Unpublished = false
		}
	}
	if len(tables) == 0 || serverMajor(conn) < 15 {
		return nil
	}
	schemas, names := make([]string, len(tables)), make([]string, len(tables))
	for i := range tables {
		schemas[i], names[i] = tables[i].Schema, tables[i].Name
	}
	rows, err := conn.Query(ctx, `SELECT schemaname::text, tablename::text, attnames::text[], rowfilter
	FROM pg_publication_tables
	WHERE pubname = $1 AND (schemaname, tablename) IN (SELECT * FROM unnest($2::text[], $3::text[]))`,
		publication, schemas, names)
	if err != nil {
		return fmt.Errorf("reading the column lists and row filters of publication %q: %w", publication, err)
	}
	type published struct {
		ref    TableRef
		cols   []string // nil: every column
		filter *string
	}
	var pubs []published
	for rows.Next() {
		var p published
		if err := rows.Scan(&p.ref.Schema, &p.ref.Name, &p.cols, &p.filter); err != nil {
			rows.Close()
			return fmt.Errorf("reading the column lists and row filters of publication %q: %w", publication, err)
		}
		pubs = append(pubs, p)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading the column lists and row filters of publication %q: %w", publication, err)
	}
	for _, p := range pubs {
		for i := range tables {
			t := &tables[i]
			if t.Ref() != p.ref {
				continue
			}
			if p.cols != nil {
				for j := range t.Columns {
					c := &t.Columns[j]
					// Generated columns are not sent either way (before
					// PostgreSQL 18, a column list cannot name them).
					c.Unpublished = !c.Generated && !slices.Contains(p.cols, c.Name)
				}
			}
			if p.filter != nil && *p.filter != "" {
				t.RowFilter = *p.filter
				if t.Estimated > 0 {
					n, err := estimateRows(ctx, conn, "SELECT 1 FROM "+t.Ref().Quoted()+" WHERE "+t.RowFilter)
					if err != nil {
						return fmt.Errorf("estimating the rows of %s that the row filter of publication %q passes: %w", t.Ref(), publication, err)
					}
					t.Estimated = n
				}
			}
		}
	}
	return nil
}

// estimateRows is the planner's estimate of the rows a query returns.
func estimateRows(ctx context.Context, conn *pgx.Conn, query string, params ...[]byte) (int64, error) {
	rr := conn.PgConn().ExecParams(ctx, "EXPLAIN (FORMAT JSON) "+query, params, nil, nil, nil)
	var plan []byte
	for rr.NextRow() {
		plan = append(plan, rr.Values()[0]...)
	}
	if _, err := rr.Close(); err != nil {
		return 0, err
	}
	var out []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		} `json:"Plan"`
	}
	if err := json.Unmarshal(plan, &out); err != nil || len(out) == 0 {
		return 0, fmt.Errorf("unexpected plan %q", plan)
	}
	return int64(out[0].Plan.Rows), nil
}

// UnpublishedKey returns the key columns (KeyColumns) that the
// publication's column list leaves out, in key order.
func (t *Table) UnpublishedKey() []string {
	var out []string
	for _, name := range t.KeyColumns {
		if c := t.column(name); c != nil && c.Unpublished {
			out = append(out, name)
		}
	}
	return out
}

// CheckPublished returns an *UnpublishedKeyError when the publication's
// column list leaves out key columns of t: pgkafka could not key the
// records of its changes.
func (t *Table) CheckPublished(publication string) error {
	missing := t.UnpublishedKey()
	if len(missing) == 0 {
		return nil
	}
	return &UnpublishedKeyError{Table: t.Ref(), Publication: publication, Missing: missing, Columns: t.publishedColumns(), RowFilter: t.RowFilter}
}

// publishedColumns are the names of the columns pgoutput sends.
func (t *Table) publishedColumns() []string {
	var out []string
	for i := range t.Columns {
		if t.Columns[i].Sent() {
			out = append(out, t.Columns[i].Name)
		}
	}
	return out
}

// UnpublishedKeyError: the publication's column list of a captured table
// leaves out some of its key columns.
type UnpublishedKeyError struct {
	Table       TableRef
	Publication string
	// Missing are the key columns left out; Columns the columns published.
	Missing, Columns []string
	// RowFilter is the table's row filter in the publication, if any.
	RowFilter string
}

func (e *UnpublishedKeyError) Error() string {
	return fmt.Sprintf("table %s: the column list of publication %q (source.advanced.publicationName) leaves out its key column(s) %s, "+
		"which pgkafka keys the table's records by (and PostgreSQL refuses UPDATE and DELETE on the table while a publication of them "+
		"leaves out replica identity columns); add them to the column list, as the publication's owner:\n%s",
		e.Table, e.Publication, strings.Join(e.Missing, ", "), indent(e.Fix()))
}

// Fix is the SQL that publishes the key columns too, keeping the row filter.
func (e *UnpublishedKeyError) Fix() string {
	cols := make([]string, 0, len(e.Columns)+len(e.Missing))
	for _, c := range append(slices.Clone(e.Columns), e.Missing...) {
		cols = append(cols, quoteIdent(c))
	}
	add := fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s (%s)", quoteIdent(e.Publication), e.Table.Quoted(), strings.Join(cols, ", "))
	if e.RowFilter != "" {
		add += " WHERE (" + e.RowFilter + ")"
	}
	return fmt.Sprintf("BEGIN;\nALTER PUBLICATION %s DROP TABLE %s;\n%s;\nCOMMIT;", quoteIdent(e.Publication), e.Table.Quoted(), add)
}
