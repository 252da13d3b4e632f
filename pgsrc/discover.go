package pgsrc

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// TableRef names a table.
type TableRef struct {
	Schema, Name string
}

// String is schema.name, unquoted.
func (t TableRef) String() string { return t.Schema + "." + t.Name }

// Quoted is the quoted, qualified identifier, safe to splice into SQL.
func (t TableRef) Quoted() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// ParseTableRef parses "<schema>.<table>".
func ParseTableRef(name string) (TableRef, error) {
	s, t, err := SplitTableName(name)
	if err != nil {
		return TableRef{}, err
	}
	return TableRef{Schema: s, Name: t}, nil
}

func compareTableRefs(a, b TableRef) int {
	if c := strings.Compare(a.Schema, b.Schema); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// Table is a capturable table as the catalog describes it.
type Table struct {
	Schema, Name string
	// OID is pg_class.oid: the relation ID pgoutput's Relation messages
	// carry, which a rename keeps.
	OID uint32
	// Kind is pg_class.relkind: 'r' (ordinary) or 'p' (partitioned).
	Kind byte
	// Columns are the live columns in attnum order.
	Columns []Column
	// PrimaryKey holds the primary key's column names in key order; empty
	// if the table has none.
	PrimaryKey []string
	// ReplicaIdentity is pg_class.relreplident: 'd' default, 'n' nothing,
	// 'f' full, 'i' index.
	ReplicaIdentity byte
	// IdentityIndex holds the columns of the replica identity index when
	// ReplicaIdentity is 'i'.
	IdentityIndex []string
	// KeyColumns are the columns the table's records are keyed by, in key
	// order: PrimaryKey, else IdentityIndex (REPLICA IDENTITY USING
	// INDEX); empty for a table with neither, whose records get a null
	// key. Set where the table is described (Discover), from the two.
	KeyColumns []string
	// Estimated is pg_class.reltuples: an estimate of the row count, -1 (or
	// 0 before PostgreSQL 14) when never analyzed. With a RowFilter, the
	// planner's estimate of the rows it passes.
	Estimated int64
	// RowFilter is the publication's row filter of the table, the WHERE
	// expression as pg_publication_tables.rowfilter prints it (PostgreSQL
	// 15+), or "": pgoutput sends only the changes of rows it passes, and
	// the backfill reads only those rows. Set by ApplyPublication.
	RowFilter string
	// BackfillWhere is the operator's condition of a filtered backfill
	// (`pgkafka backfill --where`), or "": the Scanner's reads see only
	// the rows it passes too, AND-ed with RowFilter. It is SQL run as
	// given, which CheckCondition keeps inside its parentheses.
	BackfillWhere string
}

// Ref is the table's name.
func (t *Table) Ref() TableRef { return TableRef{Schema: t.Schema, Name: t.Name} }

// Column is a live column of a table.
type Column struct {
	Name string
	// Position is pg_attribute.attnum.
	Position  int
	NotNull   bool
	Generated bool
	// Unpublished tells that the publication's column list (PostgreSQL
	// 15+) leaves the column out: pgoutput does not send it, and the
	// backfill does not read it. Set by ApplyPublication.
	Unpublished bool
	// HasMissing tells that Missing holds the value, in text form, that
	// PostgreSQL gives the rows written before the column was added
	// (pg_attribute.attmissingval: an ADD COLUMN's non-volatile default,
	// until the table is rewritten). PostgreSQL 11 and later.
	HasMissing bool
	Missing    string
	// HasConstDefault tells that ConstDefault holds the column's default,
	// in text form, when it is a constant (pg_attrdef: DEFAULT 'x',
	// DEFAULT 7): the value an ADD COLUMN gave the rows before it, which,
	// unlike Missing, a later rewrite of the table (ALTER COLUMN TYPE,
	// VACUUM FULL) keeps.
	HasConstDefault bool
	ConstDefault    string
	// Type is the column's type; its Display holds the column's typmod.
	Type   Type
	Typmod int32
}

// Sent reports whether pgoutput sends the column: it is neither generated
// nor left out by the publication's column list. The backfill reads
// exactly these columns, so that a row reads the same both ways.
func (c *Column) Sent() bool { return !c.Generated && !c.Unpublished }

// Resolved is the column's type through domains, with the typmod that
// applies to it.
func (c *Column) Resolved() (*Type, int32) {
	if c.Type.Kind != KindDomain {
		return &c.Type, c.Typmod
	}
	return c.Type.Resolved()
}

// TypeKind is the kind of a type (pg_type.typtype, with arrays apart).
type TypeKind uint8

// Type kinds.
const (
	KindBase TypeKind = iota
	KindArray
	KindEnum
	KindDomain
	KindComposite
	KindRange
	KindMultirange
	KindPseudo
)

func (k TypeKind) String() string {
	switch k {
	case KindBase:
		return "base"
	case KindArray:
		return "array"
	case KindEnum:
		return "enum"
	case KindDomain:
		return "domain"
	case KindComposite:
		return "composite"
	case KindRange:
		return "range"
	case KindMultirange:
		return "multirange"
	case KindPseudo:
		return "pseudo"
	}
	return "TypeKind(" + strconv.Itoa(int(k)) + ")"
}

// Type describes a PostgreSQL type.
type Type struct {
	OID uint32
	// Name is pg_type.typname.
	Name   string
	Schema string
	// Display is format_type(oid, typmod), e.g. "numeric(10,2)".
	Display string
	Kind    TypeKind
	// Category is pg_type.typcategory.
	Category byte
	// Elem is the element type of an array.
	Elem *Type
	// Base is the type a domain is over, with BaseTypmod.
	Base       *Type
	BaseTypmod int32
	// Labels are an enum's labels in sort order.
	Labels []string
}

// Resolved follows domains down to their base type and returns it with the
// innermost typmod a domain sets (-1 if none). A type that is not a domain
// is returned as is, with -1.
func (t *Type) Resolved() (*Type, int32) {
	mod := int32(-1)
	for t.Kind == KindDomain && t.Base != nil {
		if t.BaseTypmod != -1 {
			mod = t.BaseTypmod
		}
		t = t.Base
	}
	return t, mod
}

// serverMajor is the server's major version (10, 11, ...), from the
// server_version parameter the server reports at connect time.
func serverMajor(conn *pgx.Conn) int {
	return parseMajor(conn.PgConn().ParameterStatus("server_version"))
}

// parseMajor is the major version in a server_version ("15.4 (Debian
// 15.4-1)", "9.6.24"): 15, 9; 0 if unreadable.
func parseMajor(v string) int {
	end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if end >= 0 {
		v = v[:end]
	}
	n, _ := strconv.Atoi(v)
	return n
}

// excludedSchemas is the WHERE clause part leaving system schemas out.
const excludedSchemas = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
	AND n.nspname !~ '^pg_(toast_)?temp_'`

// Discover describes tables. Without tables it returns every ordinary and
// partitioned table the current user may SELECT outside system schemas
// (partitions are left out: they are captured through their root), sorted
// by schema and name. With tables it returns exactly those, in the order
// given; each missing or unreadable one is a *TableNotFoundError.
func Discover(ctx context.Context, conn *pgx.Conn, tables []TableRef) ([]Table, error) {
	found, missing, err := lookupTables(ctx, conn, tables)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		errs := make([]error, len(missing))
		for i, m := range missing {
			errs[i] = m
		}
		return nil, errors.Join(errs...)
	}
	return found, nil
}

// lookupTables is Discover returning the missing tables apart. A table
// that is a partition of another is an error.
func lookupTables(ctx context.Context, conn *pgx.Conn, tables []TableRef) ([]Table, []error, error) {
	user := conn.Config().User
	var rows pgx.Rows
	var err error
	const cols = `SELECT c.oid, n.nspname, c.relname, c.relkind, c.relreplident, c.reltuples::int8,
		c.relispartition, COALESCE((SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid LIMIT 1), '')
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE c.relkind IN ('r', 'p') AND has_table_privilege(c.oid, 'SELECT') AND ` + excludedSchemas
	if len(tables) == 0 {
		rows, err = conn.Query(ctx, cols+` AND NOT c.relispartition ORDER BY n.nspname, c.relname`)
	} else {
		schemas, names := make([]string, len(tables)), make([]string, len(tables))
		for i, t := range tables {
			schemas[i], names[i] = t.Schema, t.Name
		}
		rows, err = conn.Query(ctx, cols+` AND (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, schemas, names)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("listing tables: %w", err)
	}
	type rel struct {
		oid       uint32
		table     Table
		partition bool
		parent    string
	}
	var rels []rel
	for rows.Next() {
		var r rel
		var kind, ident string
		if err := rows.Scan(&r.oid, &r.table.Schema, &r.table.Name, &kind, &ident, &r.table.Estimated, &r.partition, &r.parent); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("listing tables: %w", err)
		}
		r.table.Kind, r.table.ReplicaIdentity = kind[0], ident[0]
		rels = append(rels, r)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("listing tables: %w", err)
	}

	var missing []error
	if len(tables) > 0 {
		byRef := make(map[TableRef]rel, len(rels))
		for _, r := range rels {
			byRef[r.table.Ref()] = r
		}
		rels = rels[:0]
		seen := make(map[TableRef]bool, len(tables))
		for _, t := range tables {
			r, ok := byRef[t]
			switch {
			case seen[t]:
				continue
			case !ok:
				missing = append(missing, &TableNotFoundError{Table: t, User: user})
			case r.partition:
				missing = append(missing, fmt.Errorf("table %s is a partition of %s: bind the partitioned table %s instead, whose changes include its partitions'", t, r.parent, r.parent))
			default:
				rels = append(rels, r)
			}
			seen[t] = true
		}
	}
	if len(rels) == 0 {
		return nil, missing, nil
	}

	oids := make([]uint32, len(rels))
	index := make(map[uint32]*Table, len(rels))
	out := make([]Table, len(rels))
	for i, r := range rels {
		oids[i] = r.oid
		out[i] = r.table
		out[i].OID = r.oid
		index[r.oid] = &out[i]
	}
	if err := loadColumns(ctx, conn, oids, index); err != nil {
		return nil, nil, err
	}
	if err := loadKeys(ctx, conn, oids, index); err != nil {
		return nil, nil, err
	}
	for i := range out {
		out[i].KeyColumns = keyColumns(&out[i])
	}
	return out, missing, nil
}

func loadColumns(ctx context.Context, conn *pgx.Conn, oids []uint32, index map[uint32]*Table) error {
	generated, missing := "false", "NULL::text"
	if serverMajor(conn) >= 12 {
		generated = "a.attgenerated <> ''"
	}
	if serverMajor(conn) >= 11 {
		missing = "CASE WHEN a.atthasmissing THEN a.attmissingval::text END"
	}
	rows, err := conn.Query(ctx, `SELECT a.attrelid, a.attname, a.attnum, a.attnotnull, `+generated+`,
		a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod), `+missing+`,
		pg_get_expr(d.adbin, d.adrelid)
	FROM pg_attribute a
	LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
	WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
	ORDER BY a.attrelid, a.attnum`, oids)
	if err != nil {
		return fmt.Errorf("listing columns: %w", err)
	}
	type col struct {
		rel     uint32
		typ     uint32
		display string
		Column
	}
	var cols []col
	for rows.Next() {
		var c col
		var pos int16
		var miss, def *string
		if err := rows.Scan(&c.rel, &c.Name, &pos, &c.NotNull, &c.Generated, &c.typ, &c.Typmod, &c.display, &miss, &def); err != nil {
			rows.Close()
			return fmt.Errorf("listing columns: %w", err)
		}
		if miss != nil {
			c.Missing, c.HasMissing = oneElement(*miss)
		}
		if def != nil && !c.Generated {
			c.ConstDefault, c.HasConstDefault = constDefault(*def)
		}
		c.Position = int(pos)
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing columns: %w", err)
	}
	typeOIDs := make([]uint32, 0, len(cols))
	for _, c := range cols {
		typeOIDs = append(typeOIDs, c.typ)
	}
	slices.Sort(typeOIDs)
	types, err := loadTypes(ctx, conn, slices.Compact(typeOIDs))
	if err != nil {
		return err
	}
	for _, c := range cols {
		t := types[c.typ]
		if t == nil {
			return fmt.Errorf("column %s of table %s: type OID %d not found", c.Name, index[c.rel].Ref(), c.typ)
		}
		c.Type = *t
		c.Type.Display = c.display
		tbl := index[c.rel]
		tbl.Columns = append(tbl.Columns, c.Column)
	}
	return nil
}

func loadKeys(ctx context.Context, conn *pgx.Conn, oids []uint32, index map[uint32]*Table) error {
	keyAtts := "i.indnkeyatts"
	if serverMajor(conn) < 11 {
		keyAtts = "i.indnatts"
	}
	rows, err := conn.Query(ctx, `SELECT i.indrelid, i.indisprimary, i.indisreplident,
		ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
			WHERE k.ord <= `+keyAtts+` ORDER BY k.ord)
	FROM pg_index i
	WHERE i.indrelid = ANY($1::oid[]) AND (i.indisprimary OR i.indisreplident)`, oids)
	if err != nil {
		return fmt.Errorf("listing keys: %w", err)
	}
	for rows.Next() {
		var rel uint32
		var primary, ident bool
		var cols []string
		if err := rows.Scan(&rel, &primary, &ident, &cols); err != nil {
			rows.Close()
			return fmt.Errorf("listing keys: %w", err)
		}
		t := index[rel]
		if primary {
			t.PrimaryKey = cols
		}
		if ident && t.ReplicaIdentity == 'i' {
			t.IdentityIndex = cols
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing keys: %w", err)
	}
	return nil
}

// keyColumns derives Table.KeyColumns from the primary key and the replica
// identity index loadKeys set.
func keyColumns(t *Table) []string {
	if len(t.PrimaryKey) == 0 && t.ReplicaIdentity == 'i' {
		return t.IdentityIndex
	}
	return t.PrimaryKey
}

// loadTypes describes the types and, recursively, their element and base
// types, in one query.
func loadTypes(ctx context.Context, conn *pgx.Conn, oids []uint32) (map[uint32]*Type, error) {
	rows, err := conn.Query(ctx, `WITH RECURSIVE ts(oid) AS (
		SELECT unnest($1::oid[])
		UNION
		SELECT x FROM pg_type t JOIN ts ON t.oid = ts.oid,
			LATERAL (VALUES (t.typelem), (t.typbasetype)) v(x)
		WHERE x <> 0
	)
	SELECT t.oid, t.typname, n.nspname, format_type(t.oid, NULL), t.typtype, t.typcategory,
		t.typelem, t.typbasetype, t.typtypmod, COALESCE(format_type(NULLIF(t.typbasetype, 0), t.typtypmod), ''),
		CASE WHEN t.typtype = 'e' THEN ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) END
	FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
	WHERE t.oid IN (SELECT oid FROM ts)`, oids)
	if err != nil {
		return nil, fmt.Errorf("describing types %v: %w", oids, err)
	}
	types := make(map[uint32]*Type)
	type link struct {
		elem, base  uint32
		baseDisplay string
	}
	links := make(map[uint32]link)
	for rows.Next() {
		var t Type
		var typtype, category string
		var elem, base uint32
		var baseDisplay string
		if err := rows.Scan(&t.OID, &t.Name, &t.Schema, &t.Display, &typtype, &category, &elem, &base, &t.BaseTypmod, &baseDisplay, &t.Labels); err != nil {
			rows.Close()
			return nil, fmt.Errorf("describing types: %w", err)
		}
		t.Category = category[0]
		switch typtype {
		case "c":
			t.Kind = KindComposite
		case "d":
			t.Kind = KindDomain
		case "e":
			t.Kind = KindEnum
		case "p":
			t.Kind = KindPseudo
		case "r":
			t.Kind = KindRange
		case "m":
			t.Kind = KindMultirange
		default:
			t.Kind = KindBase
			if t.Category == 'A' && elem != 0 {
				t.Kind = KindArray
			}
		}
		if t.Kind != KindArray {
			elem = 0
		}
		if t.Kind != KindDomain {
			base, t.BaseTypmod = 0, -1
		}
		types[t.OID] = &t
		links[t.OID] = link{elem, base, baseDisplay}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("describing types: %w", err)
	}
	for oid, l := range links {
		t := types[oid]
		t.Elem = types[l.elem]
		t.Base = types[l.base]
	}
	for oid, l := range links {
		t := types[oid]
		if t.Base != nil && t.BaseTypmod != -1 {
			// The domain's Base shows the typmod the domain applies.
			b := *t.Base
			b.Display = l.baseDisplay
			t.Base = &b
		}
	}
	return types, nil
}

// TypeByOID describes one type, e.g. one first seen in the replication
// stream.
func TypeByOID(ctx context.Context, conn *pgx.Conn, oid uint32) (*Type, error) {
	types, err := loadTypes(ctx, conn, []uint32{oid})
	if err != nil {
		return nil, err
	}
	t := types[oid]
	if t == nil {
		return nil, fmt.Errorf("type OID %d not found", oid)
	}
	return t, nil
}

// PublicationTables lists the tables of a publication, sorted, and reports
// whether it exists.
func PublicationTables(ctx context.Context, conn *pgx.Conn, publication string) ([]TableRef, bool, error) {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, publication).Scan(&exists); err != nil {
		return nil, false, fmt.Errorf("looking up publication %q: %w", publication, err)
	}
	if !exists {
		return nil, false, nil
	}
	rows, err := conn.Query(ctx, `SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1, 2`, publication)
	if err != nil {
		return nil, true, fmt.Errorf("listing tables of publication %q: %w", publication, err)
	}
	refs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (TableRef, error) {
		var t TableRef
		err := row.Scan(&t.Schema, &t.Name)
		return t, err
	})
	if err != nil {
		return nil, true, fmt.Errorf("listing tables of publication %q: %w", publication, err)
	}
	return refs, true, nil
}

func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }

// oneElement returns the element of a one-element array literal ({5},
// {"he said \"hi\""}) as array_out writes attmissingval; false for NULL
// or anything else.
// Deparsed constants: a quoted literal with its casts ('dflt'::text,
// '2024-01-01'::date, '{1,2}'::integer[]), a number, a boolean.
var (
	quotedConst = regexp.MustCompile(`^'((?:[^'\\]|'')*)'(?:::[A-Za-z_"][A-Za-z0-9_ ."\[\],()]*)+$`)
	numberConst = regexp.MustCompile(`^-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?$`)
)

// constDefault returns the value of a default expression, as
// pg_get_expr prints it, when it is a constant (PostgreSQL prints a
// constant's value in its type's output form); false for anything else
// (a function call, an expression, an escaped string, a null).
func constDefault(expr string) (string, bool) {
	switch {
	case expr == "true":
		return "t", true
	case expr == "false":
		return "f", true
	case numberConst.MatchString(expr):
		return expr, true
	}
	m := quotedConst.FindStringSubmatch(expr)
	if m == nil {
		return "", false
	}
	return strings.ReplaceAll(m[1], "''", "'"), true
}

func oneElement(lit string) (string, bool) {
	if len(lit) < 3 || lit[0] != '{' || lit[len(lit)-1] != '}' {
		return "", false
	}
	in := lit[1 : len(lit)-1]
	if in[0] != '"' {
		if in == "NULL" || strings.ContainsAny(in, `,{}"\\`) {
			return "", false
		}
		return in, true
	}
	var b strings.Builder
	for i := 1; i < len(in); i++ {
		switch c := in[i]; c {
		case '\\':
			i++
			if i == len(in) {
				return "", false
			}
			b.WriteByte(in[i])
		case '"':
			if i != len(in)-1 {
				return "", false
			}
			return b.String(), true
		default:
			b.WriteByte(c)
		}
	}
	return "", false
}
