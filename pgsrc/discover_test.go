package pgsrc_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgkafka/pgkafka/pgsrc"
)

const discoverSchema = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN cents AS numeric(12,2);
CREATE DOMAIN bigcents AS cents;
CREATE TABLE many (
	a int NOT NULL,
	b text NOT NULL,
	n numeric(10,2),
	m mood,
	p posint,
	arr int[],
	d bigcents,
	g int GENERATED ALWAYS AS (a * 2) STORED,
	dropped int,
	PRIMARY KEY (b, a)
);
ALTER TABLE many DROP COLUMN dropped;
CREATE TABLE nokey (x int);
CREATE TABLE ident (id int NOT NULL, v text NOT NULL);
CREATE UNIQUE INDEX ident_idx ON ident (v, id);
ALTER TABLE ident REPLICA IDENTITY USING INDEX ident_idx;
CREATE TABLE parted (id int PRIMARY KEY, at date) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (100) TO (200);
CREATE SCHEMA other;
CREATE TABLE other.t (id bigint PRIMARY KEY);
CREATE VIEW v AS SELECT 1 AS one;
`

func TestDiscoverAll(t *testing.T) {
	ctx := testContext(t)
	db := pgCluster(t).NewDatabase(t)
	db.Exec(t, discoverSchema)
	tables, err := pgsrc.Discover(ctx, db.Conn(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	byName := map[string]pgsrc.Table{}
	for _, tb := range tables {
		names = append(names, tb.Ref().String())
		byName[tb.Ref().String()] = tb
	}
	want := []string{"other.t", "public.ident", "public.many", "public.nokey", "public.parted"}
	if !slices.Equal(names, want) {
		t.Fatalf("tables = %v, want %v (partitions and views left out)", names, want)
	}

	many := byName["public.many"]
	if many.Kind != 'r' || many.ReplicaIdentity != 'd' {
		t.Errorf("many: kind %c, replica identity %c", many.Kind, many.ReplicaIdentity)
	}
	if !slices.Equal(many.PrimaryKey, []string{"b", "a"}) {
		t.Errorf("many: primary key %v, want [b a]", many.PrimaryKey)
	}
	col := map[string]pgsrc.Column{}
	var colNames []string
	for i, c := range many.Columns {
		col[c.Name] = c
		colNames = append(colNames, c.Name)
		if i > 0 && c.Position <= many.Columns[i-1].Position {
			t.Errorf("columns not in attnum order: %v", many.Columns)
		}
	}
	if want := []string{"a", "b", "n", "m", "p", "arr", "d", "g"}; !slices.Equal(colNames, want) {
		t.Fatalf("columns = %v, want %v", colNames, want)
	}
	check := func(name string, cond bool, format string, args ...any) {
		t.Helper()
		if !cond {
			t.Errorf("column %s: "+format, append([]any{name}, args...)...)
		}
	}
	a := col["a"]
	check("a", a.NotNull && a.Type.Name == "int4" && a.Type.Kind == pgsrc.KindBase && a.Type.Display == "integer" && a.Type.Schema == "pg_catalog",
		"got %+v", a)
	check("b", col["b"].Type.Name == "text" && col["b"].NotNull, "got %+v", col["b"])
	n := col["n"]
	check("n", n.Type.Name == "numeric" && n.Type.Display == "numeric(10,2)" && n.Typmod != -1 && !n.NotNull, "got %+v", n)
	m := col["m"]
	check("m", m.Type.Kind == pgsrc.KindEnum && m.Type.Schema == "public" && slices.Equal(m.Type.Labels, []string{"sad", "ok", "happy"}),
		"got %+v", m.Type)
	p := col["p"]
	base, mod := p.Type.Resolved()
	check("p", p.Type.Kind == pgsrc.KindDomain && p.Type.Name == "posint" && base.Name == "int4" && mod == -1, "got %+v, resolved %s %d", p.Type, base.Name, mod)
	arr := col["arr"]
	check("arr", arr.Type.Kind == pgsrc.KindArray && arr.Type.Elem != nil && arr.Type.Elem.Name == "int4" && arr.Type.Display == "integer[]" && arr.Type.Category == 'A',
		"got %+v", arr.Type)
	d := col["d"]
	base, mod = d.Resolved()
	check("d", d.Type.Kind == pgsrc.KindDomain && d.Type.Base != nil && d.Type.Base.Name == "cents" && base.Name == "numeric" && mod == n.Typmod+(12-10)<<16,
		"got %+v, resolved %s %d", d.Type, base.Name, mod)
	check("g", col["g"].Generated && !a.Generated, "generated = %v", col["g"].Generated)

	if tb := byName["public.nokey"]; len(tb.PrimaryKey) != 0 || len(tb.Columns) != 1 {
		t.Errorf("nokey: %+v", tb)
	}
	if tb := byName["public.ident"]; tb.ReplicaIdentity != 'i' || !slices.Equal(tb.IdentityIndex, []string{"v", "id"}) {
		t.Errorf("ident: replica identity %c, index %v", tb.ReplicaIdentity, tb.IdentityIndex)
	}
	if tb := byName["public.parted"]; tb.Kind != 'p' || !slices.Equal(tb.PrimaryKey, []string{"id"}) {
		t.Errorf("parted: kind %c, key %v", tb.Kind, tb.PrimaryKey)
	}
}

func TestDiscoverNamed(t *testing.T) {
	ctx := testContext(t)
	db := pgCluster(t).NewDatabase(t)
	db.Exec(t, discoverSchema)
	conn := db.Conn(t)

	refs := []pgsrc.TableRef{{Schema: "public", Name: "parted"}, {Schema: "other", Name: "t"}}
	tables, err := pgsrc.Discover(ctx, conn, refs)
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 2 || tables[0].Ref() != refs[0] || tables[1].Ref() != refs[1] {
		t.Fatalf("tables = %+v, want %v in that order", tables, refs)
	}

	missing := pgsrc.TableRef{Schema: "public", Name: "nope"}
	_, err = pgsrc.Discover(ctx, conn, []pgsrc.TableRef{refs[0], missing})
	var nf *pgsrc.TableNotFoundError
	if !errors.As(err, &nf) || nf.Table != missing || !errors.Is(err, pgsrc.ErrTableNotFound) {
		t.Fatalf("missing table: err = %v, want a TableNotFoundError for %s", err, missing)
	}
	for _, want := range []string{"public.nope", "does not exist or is not readable", `GRANT SELECT ON TABLE "public"."nope"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing table error %q lacks %q", err, want)
		}
	}

	_, err = pgsrc.Discover(ctx, conn, []pgsrc.TableRef{{Schema: "public", Name: "parted_1"}})
	if err == nil || !strings.Contains(err.Error(), "partition of parted") {
		t.Errorf("partition: err = %v, want it to name the partitioned table", err)
	}

	// A table the user may not read is as good as missing.
	db.CreateRole(t, "discover_reader", "pw", "LOGIN")
	db.Exec(t, `GRANT USAGE ON SCHEMA other TO discover_reader; GRANT SELECT ON other.t TO discover_reader`)
	cfg := db.SourceConfig("discover_reader", "pw")
	rconn, err := pgsrc.Connect(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rconn.Close(ctx)
	all, err := pgsrc.Discover(ctx, rconn, nil)
	if err != nil || len(all) != 1 || all[0].Ref().String() != "other.t" {
		t.Errorf("readable tables = %+v, %v; want only other.t", all, err)
	}
	_, err = pgsrc.Discover(ctx, rconn, []pgsrc.TableRef{{Schema: "public", Name: "many"}})
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), `TO "discover_reader"`) {
		t.Errorf("unreadable table: err = %v, want a TableNotFoundError naming the user", err)
	}
}

// TestDiscoverKeyColumns: a table's KeyColumns are its primary key, else
// its replica identity index (REPLICA IDENTITY USING INDEX), else none.
func TestDiscoverKeyColumns(t *testing.T) {
	ctx := testContext(t)
	db := pgCluster(t).NewDatabase(t)
	db.Exec(t, `
CREATE TABLE pk (a int, b text, c int, PRIMARY KEY (b, a));
CREATE TABLE ident (id int NOT NULL, v text NOT NULL, w int);
CREATE UNIQUE INDEX ident_idx ON ident (v, id);
ALTER TABLE ident REPLICA IDENTITY USING INDEX ident_idx;
CREATE TABLE nokey (x int, y text);
CREATE UNIQUE INDEX nokey_idx ON nokey (x);
CREATE TABLE both_keys (id int PRIMARY KEY, u int NOT NULL);
CREATE UNIQUE INDEX both_keys_u ON both_keys (u);
ALTER TABLE both_keys REPLICA IDENTITY USING INDEX both_keys_u;
CREATE TABLE full_pk (id int PRIMARY KEY, v text);
ALTER TABLE full_pk REPLICA IDENTITY FULL;
`)
	tables, err := pgsrc.Discover(ctx, db.Conn(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]pgsrc.Table{}
	for _, tb := range tables {
		byName[tb.Name] = tb
	}
	for _, tc := range []struct {
		table string
		want  []string
	}{
		{"pk", []string{"b", "a"}},
		{"ident", []string{"v", "id"}},
		{"nokey", nil}, // a unique index that is not the replica identity is no key
		{"both_keys", []string{"id"}},
		{"full_pk", []string{"id"}},
	} {
		t.Run(tc.table, func(t *testing.T) {
			tb, ok := byName[tc.table]
			if !ok {
				t.Fatalf("table %s not discovered", tc.table)
			}
			if !slices.Equal(tb.KeyColumns, tc.want) {
				t.Errorf("KeyColumns = %v, want %v (primary key %v, replica identity %c, index %v)",
					tb.KeyColumns, tc.want, tb.PrimaryKey, tb.ReplicaIdentity, tb.IdentityIndex)
			}
		})
	}
}

func TestTypeByOID(t *testing.T) {
	ctx := testContext(t)
	db := pgCluster(t).NewDatabase(t)
	db.Exec(t, discoverSchema)
	conn := db.Conn(t)
	var oid uint32
	if err := conn.QueryRow(ctx, `SELECT 'mood[]'::regtype::oid`).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	typ, err := pgsrc.TypeByOID(ctx, conn, oid)
	if err != nil {
		t.Fatal(err)
	}
	if typ.Kind != pgsrc.KindArray || typ.Elem == nil || typ.Elem.Kind != pgsrc.KindEnum || len(typ.Elem.Labels) != 3 {
		t.Errorf("mood[] = %+v, elem %+v", typ, typ.Elem)
	}
	if _, err := pgsrc.TypeByOID(ctx, conn, 4000000000); err == nil {
		t.Error("unknown OID: no error")
	}
}

func TestPublicationTables(t *testing.T) {
	ctx := testContext(t)
	db := pgCluster(t).NewDatabase(t)
	db.Exec(t, discoverSchema)
	conn := db.Conn(t)
	if refs, ok, err := pgsrc.PublicationTables(ctx, conn, "pub"); err != nil || ok || len(refs) != 0 {
		t.Fatalf("absent publication: %v, %v, %v", refs, ok, err)
	}
	db.Exec(t, `CREATE PUBLICATION pub FOR TABLE other.t, many, parted WITH (publish_via_partition_root = true)`)
	refs, ok, err := pgsrc.PublicationTables(ctx, conn, "pub")
	want := []pgsrc.TableRef{{"other", "t"}, {"public", "many"}, {"public", "parted"}}
	if err != nil || !ok || !slices.Equal(refs, want) {
		t.Fatalf("publication tables = %v, %v, %v; want %v", refs, ok, err, want)
	}
}

func TestTableRef(t *testing.T) {
	r := pgsrc.TableRef{Schema: "My Schema", Name: `we"ird`}
	if got := r.String(); got != `My Schema.we"ird` {
		t.Errorf("String = %q", got)
	}
	want := pgx.Identifier{"My Schema", `we"ird`}.Sanitize()
	if got := r.Quoted(); got != want || got != `"My Schema"."we""ird"` {
		t.Errorf("Quoted = %q, want %q", got, want)
	}
	if got, err := pgsrc.ParseTableRef("public.t"); err != nil || got != (pgsrc.TableRef{Schema: "public", Name: "t"}) {
		t.Errorf("ParseTableRef = %v, %v", got, err)
	}
	if _, err := pgsrc.ParseTableRef("t"); err == nil {
		t.Error("ParseTableRef of an unqualified name: no error")
	}
}

func TestTypeKindString(t *testing.T) {
	for k, want := range map[pgsrc.TypeKind]string{
		pgsrc.KindBase: "base", pgsrc.KindArray: "array", pgsrc.KindEnum: "enum", pgsrc.KindDomain: "domain",
		pgsrc.KindComposite: "composite", pgsrc.KindRange: "range", pgsrc.KindMultirange: "multirange",
		pgsrc.KindPseudo: "pseudo", pgsrc.TypeKind(99): "TypeKind(99)",
	} {
		if got := k.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", k, got, want)
		}
	}
}

// TestDiscoverConstDefaults: a column's constant default is read in its
// type's output form, after a rewrite dropped the missing value too;
// defaults that are not constants have none.
func TestDiscoverConstDefaults(t *testing.T) {
	ctx := testContext(t)
	db := pgCluster(t).NewDatabase(t)
	db.Exec(t, `
CREATE SEQUENCE s;
CREATE TABLE defs (id int PRIMARY KEY, n int);
INSERT INTO defs VALUES (1, 1);
ALTER TABLE defs ADD COLUMN txt text NOT NULL DEFAULT 'it''s',
	ADD COLUMN num int NOT NULL DEFAULT 7,
	ADD COLUMN neg int NOT NULL DEFAULT -3,
	ADD COLUMN dec numeric(12,2) NOT NULL DEFAULT 2.5,
	ADD COLUMN flag boolean NOT NULL DEFAULT true,
	ADD COLUMN day date NOT NULL DEFAULT '2024-1-2',
	ADD COLUMN vc varchar(10) NOT NULL DEFAULT 'v',
	ADD COLUMN arr int[] NOT NULL DEFAULT '{1,2}',
	ADD COLUMN esc text NOT NULL DEFAULT E'a\\b',
	ADD COLUMN seq bigint NOT NULL DEFAULT nextval('s'),
	ADD COLUMN stamp timestamptz NOT NULL DEFAULT now(),
	ADD COLUMN expr int NOT NULL DEFAULT 1 + 1,
	ADD COLUMN plain text;
ALTER TABLE defs ALTER COLUMN n TYPE bigint; -- a rewrite: the missing values are gone`)
	tables, err := pgsrc.Discover(ctx, db.Conn(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	cols := map[string]pgsrc.Column{}
	for _, c := range tables[0].Columns {
		cols[c.Name] = c
		if c.HasMissing {
			t.Errorf("column %s still has a missing value after the rewrite", c.Name)
		}
	}
	for _, tc := range []struct {
		col  string
		want string // "" for no constant default
	}{
		{"txt", "it's"}, {"num", "7"}, {"neg", "-3"}, {"dec", "2.5"}, {"flag", "t"}, {"day", "2024-01-02"},
		{"vc", "v"}, {"arr", "{1,2}"}, {"esc", ""}, {"seq", ""}, {"stamp", ""}, {"expr", ""}, {"plain", ""}, {"id", ""},
	} {
		c := cols[tc.col]
		if got := c.ConstDefault; c.HasConstDefault != (tc.want != "") || got != tc.want {
			t.Errorf("column %s: constant default %q (%v), want %q", tc.col, got, c.HasConstDefault, tc.want)
		}
	}
}
