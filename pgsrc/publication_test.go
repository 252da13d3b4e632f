package pgsrc_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

const pubSchema = `
CREATE TABLE listed (
	id int PRIMARY KEY,
	secret text,
	region text NOT NULL,
	g int GENERATED ALWAYS AS (id * 2) STORED,
	amount int,
	internal text
);
INSERT INTO listed (id, secret, region, amount, internal)
	SELECT g, 's' || g, CASE WHEN g % 3 = 0 THEN 'eu' ELSE 'us' END, g * 10, 'i' || g FROM generate_series(1, 100) g;
CREATE TABLE plain (id int PRIMARY KEY, v text);
CREATE TABLE heap (region text, v int);
INSERT INTO heap SELECT CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g FROM generate_series(1, 50) g;
CREATE TABLE outside (id int PRIMARY KEY, v text);
CREATE PUBLICATION flow_publication FOR TABLE listed (id, region, amount) WHERE (region = 'eu'), plain, heap (v, region) WHERE (region <> 'us')
	WITH (publish_via_partition_root = true);
ANALYZE listed;
`

// TestPublicationDiscovery: the catalog reads the publication's column
// lists and row filters, and the scanner's reads honour both.
func TestPublicationDiscovery(t *testing.T) {
	pgCluster(t).SkipBelow(t, 15, "publication column lists and row filters")
	ctx := testContext(t)
	db := pgCluster(t).NewDatabase(t)
	db.Exec(t, pubSchema)
	cfg := db.SourceConfig(pgtest.Superuser, pgCluster(t).SuperuserPassword())
	cat, err := pgsrc.OpenCatalog(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close(ctx)
	tables, err := cat.Discover(ctx, []pgsrc.TableRef{{Schema: "public", Name: "listed"}, {Schema: "public", Name: "plain"},
		{Schema: "public", Name: "heap"}, {Schema: "public", Name: "outside"}})
	if err != nil {
		t.Fatal(err)
	}
	sent := func(tb *pgsrc.Table) []string {
		var out []string
		for _, c := range tb.Columns {
			if c.Sent() {
				out = append(out, c.Name)
			}
		}
		return out
	}
	listed, plain, heap, outside := &tables[0], &tables[1], &tables[2], &tables[3]
	if got, want := sent(listed), []string{"id", "region", "amount"}; !slices.Equal(got, want) {
		t.Errorf("listed: columns sent %v, want %v (attnum order)", got, want)
	}
	for _, c := range listed.Columns {
		if want := c.Name == "secret" || c.Name == "internal"; c.Unpublished != want {
			t.Errorf("listed.%s: Unpublished %v, want %v (a generated column is Generated, not Unpublished)", c.Name, c.Unpublished, want)
		}
	}
	if !strings.Contains(listed.RowFilter, "region = 'eu'") {
		t.Errorf("listed: row filter %q", listed.RowFilter)
	}
	if listed.Estimated < 20 || listed.Estimated > 50 {
		t.Errorf("listed: estimated %d rows, want about the 33 the filter passes", listed.Estimated)
	}
	if got, want := sent(heap), []string{"region", "v"}; !slices.Equal(got, want) || heap.RowFilter == "" {
		t.Errorf("heap: columns sent %v (want %v), row filter %q", got, want, heap.RowFilter)
	}
	for _, tb := range []*pgsrc.Table{plain, outside} {
		if got := sent(tb); len(got) != 2 || tb.RowFilter != "" {
			t.Errorf("%s: columns sent %v, row filter %q: want every column, no filter", tb.Ref(), got, tb.RowFilter)
		}
	}
	for _, tb := range tables {
		if err := tb.CheckPublished("flow_publication"); err != nil {
			t.Errorf("%s: %v", tb.Ref(), err)
		}
	}

	// The scanner reads the published columns of the rows the filter passes.
	sc, err := pgsrc.OpenScanner(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close(ctx)
	o, err := sc.KeyOrder(ctx, listed, listed.PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	end, full, err := sc.ChunkEnd(ctx, listed, o, nil, 5)
	if err != nil || !full || string(end[0]) != "15" {
		t.Fatalf("ChunkEnd of 5 filtered rows: %q, %v, %v; want 15 (the 5th id divisible by 3)", end, full, err)
	}
	var got []string
	n, err := sc.ScanChunk(ctx, listed, o, end, nil, nil, func(row []pgsrc.Value) error {
		got = append(got, fmt.Sprintf("%s/%s/%s", row[0].Data, row[1].Data, row[2].Data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for id := 18; id <= 99; id += 3 {
		want = append(want, fmt.Sprintf("%d/eu/%d", id, id*10))
	}
	if n != len(want) || !slices.Equal(got, want) {
		t.Errorf("ScanChunk after 15: %d rows %v, want %v", n, got, want)
	}
	left, err := sc.EstimateAfter(ctx, listed, o, end, "")
	if err != nil || left < 10 || left > 40 {
		t.Errorf("EstimateAfter 15: %d, %v; want about the 28 filtered rows left", left, err)
	}
	got = got[:0]
	last, n, err := sc.ScanCTID(ctx, heap, "", 100, nil, func(_ string, row []pgsrc.Value) error {
		if len(row) != 2 {
			return fmt.Errorf("a row of %d columns", len(row))
		}
		got = append(got, string(row[0].Data)+"/"+string(row[1].Data))
		return nil
	})
	if err != nil || last == "" || n != 25 {
		t.Fatalf("ScanCTID of heap: %d rows, last %q, %v; want 25", n, last, err)
	}
	if got[0] != "eu/2" || got[24] != "eu/50" {
		t.Errorf("ScanCTID of heap: %v", got)
	}
}

// TestPublicationLeavesOutKey: a column list without the key columns is
// refused at start, and `pgkafka check` says so with SQL that fixes it.
func TestPublicationLeavesOutKey(t *testing.T) {
	pgCluster(t).SkipBelow(t, 15, "publication column lists and row filters")
	ctx := testContext(t)
	db := pgCluster(t).NewDatabase(t)
	db.Exec(t, `CREATE TABLE keyed (a int, b text, v int, PRIMARY KEY (a, b));
		CREATE PUBLICATION flow_publication FOR TABLE keyed (b, v) WHERE (v > 0) WITH (publish = 'insert')`)
	cfg := db.SourceConfig(pgtest.Superuser, pgCluster(t).SuperuserPassword())
	keyed := pgsrc.TableRef{Schema: "public", Name: "keyed"}
	cat, err := pgsrc.OpenCatalog(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close(ctx)
	tables, err := cat.Discover(ctx, []pgsrc.TableRef{keyed})
	if err != nil {
		t.Fatal(err)
	}
	err = tables[0].CheckPublished("flow_publication")
	var uk *pgsrc.UnpublishedKeyError
	if !errors.As(err, &uk) || !slices.Equal(uk.Missing, []string{"a"}) {
		t.Fatalf("CheckPublished = %v, want an UnpublishedKeyError for a", err)
	}
	for _, want := range []string{"table public.keyed", `publication "flow_publication"`, "key column(s) a,", "ADD TABLE", "WHERE ((v > 0))"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := pgsrc.NewKeyOrder(&tables[0], tables[0].PrimaryKey); err == nil || !strings.Contains(err.Error(), `key column "a" is left out by the publication's column list`) {
		t.Errorf("NewKeyOrder = %v", err)
	}

	results, err := pgsrc.Check(ctx, &cfg, []pgsrc.TableRef{keyed})
	if err != nil {
		t.Fatal(err)
	}
	var res *pgsrc.CheckResult
	for i := range results {
		if results[i].Name == "table public.keyed" {
			res = &results[i]
		}
	}
	if res == nil || res.OK || !strings.Contains(res.Detail, "leaves out the key column(s) a") || !strings.Contains(res.Detail, "publishes only the columns (b, v)") {
		t.Fatalf("check of keyed: %+v", res)
	}

	// The fix works and keeps the filter.
	db.Exec(t, res.Fix)
	tables, err = cat.Discover(ctx, []pgsrc.TableRef{keyed})
	if err != nil {
		t.Fatal(err)
	}
	if err := tables[0].CheckPublished("flow_publication"); err != nil || !strings.Contains(tables[0].RowFilter, "v > 0") {
		t.Errorf("after the fix: %v, row filter %q", err, tables[0].RowFilter)
	}
}

// TestCheckReportsPublicationLackingTable: a hand-made publication with a
// column list that lacks a bound table: check says setup adds the table
// (with every column), and setup does, leaving the column list as it is.
func TestCheckReportsPublicationLackingTable(t *testing.T) {
	pgCluster(t).SkipBelow(t, 15, "publication column lists and row filters")
	ctx := testContext(t)
	db, cfg := ownerDB(t)
	db.Exec(t, `CREATE TABLE public.flow_watermarks (slot TEXT PRIMARY KEY, watermark TEXT);
		ALTER TABLE public.flow_watermarks OWNER TO capture;
		CREATE PUBLICATION flow_publication FOR TABLE orders (id) WHERE (id > 10), public.flow_watermarks WITH (publish_via_partition_root = true);
		ALTER PUBLICATION flow_publication OWNER TO capture`)
	results, err := pgsrc.Check(ctx, &cfg, []pgsrc.TableRef{orders, items})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]pgsrc.CheckResult{}
	for _, r := range results {
		byName[r.Name] = r
	}
	if r := byName["publication"]; !r.OK || !strings.Contains(r.Detail, `publication "flow_publication" lacks public.items; setup will fix it`) {
		t.Errorf("publication check: %+v", r)
	}
	if r := byName["table public.orders"]; !r.OK || !strings.Contains(r.Detail, "publishes only the columns (id)") || !strings.Contains(r.Detail, "rows where (id > 10)") {
		t.Errorf("orders check: %+v", r)
	}
	if err := pgsrc.Setup(ctx, &cfg, []pgsrc.TableRef{orders, items}, nil); err != nil {
		t.Fatal(err)
	}
	var lists []string
	rows, err := db.Conn(t).Query(ctx, `SELECT tablename || ':' || COALESCE(array_to_string(attnames, ','), '-') || ':' || COALESCE(rowfilter, '-')
		FROM pg_publication_tables WHERE pubname = 'flow_publication' ORDER BY tablename`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		lists = append(lists, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"flow_watermarks:slot,watermark:-", "items:id:-", "orders:id:(id > 10)"}; !slices.Equal(lists, want) {
		t.Errorf("publication after setup: %v, want %v", lists, want)
	}
}
