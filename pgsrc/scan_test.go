package pgsrc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// wideTable has columns of many types, a dropped column and a generated
// one, and rows of awkward values.
const wideTable = `
CREATE TYPE color AS ENUM ('red', 'green');
CREATE TABLE wide (
	id int8 PRIMARY KEY,
	gone text,
	ts timestamptz, tsn timestamp, d date, tm time, tmtz timetz, iv interval,
	n numeric, n2 numeric(10, 2), f8 float8, f4 float4, i2 int2, mo money,
	b bytea, j jsonb, js json, arr int4[], tarr text[], tsarr timestamptz[],
	u uuid, bo bool, t text, c char(5), vc varchar(8), col color,
	pt point, ip inet, bits varbit(8), x xml,
	gen int8 GENERATED ALWAYS AS (id * 2) STORED,
	nul text
);
ALTER TABLE wide DROP COLUMN gone;
INSERT INTO wide (id, ts, tsn, d, tm, tmtz, iv, n, n2, f8, f4, i2, mo, b, j, js, arr, tarr, tsarr, u, bo, t, c, vc, col, pt, ip, bits, x, nul) VALUES
	(1, '2024-02-29 12:34:56.789012+05:30', '2024-02-29 12:34:56', '2024-02-29', '23:59:59.999999', '12:00:00+02', '1 year 2 mons 3 days 04:05:06.7',
	 '-12345678901234567890.000001', 3.14, 0.1, 0.1, -32768, 12.34, '\x00ff10', '{"b": [1, 2.50, null], "a": "é\"\\"}', '{"b":1,  "a":2}',
	 '{1,NULL,-3}', '{"a b","","NULL",NULL,"x\"y"}', '{"2000-01-01 00:00:00+00",infinity}',
	 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', true, E'line\nbreak\ttab \\ back', 'ab', 'é ', 'green',
	 '(1.5,-2)', '192.168.0.1/24', B'101', '<a>x</a>', NULL),
	(2, '0044-03-15 12:00:00+00 BC', '-infinity', 'infinity', '00:00:00', '00:00:00-11:30', '-1 day', 'NaN', -0.5, 1e300, 'NaN', 0, -0.01, '',
	 '[]', '[]', '{}', '{}', '{}', '00000000-0000-0000-0000-000000000000', false, '', '', '', 'red', '(0,0)', '::1', B'', '', NULL),
	(3, 'infinity', '294276-12-31 23:59:59.999999', '4713-01-01 BC', '12:00:00', '12:00:00+00', 'P1Y', 'Infinity', 99999999.99, '-Infinity', '-0',
	 32767, 0, repeat('x', 100000)::bytea, '{"big": "x"}', 'null', '{{1,2},{3,4}}', '{"{}"}', NULL,
	 'ffffffff-ffff-ffff-ffff-ffffffffffff', NULL, repeat('é', 50000), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
`

// TestScanChunkValuesAreThoseOfPgoutput checks that each row ScanChunk
// reads is, value for value, the row pgoutput sends when it is inserted.
func TestScanChunkValuesAreThoseOfPgoutput(t *testing.T) {
	db := pgCluster(t).NewDatabase(t)
	cfg := db.SourceConfig("postgres", pgCluster(t).SuperuserPassword())
	cfg.Advanced.SlotName = "scan_values_slot"
	ctx := testContext(t)
	// The table exists empty for Setup; its rows are inserted once the
	// slot streams.
	ddl := wideTable
	if pgCluster(t).Major() < 14 {
		// numeric has no infinities before PostgreSQL 14: a large finite
		// value in their place.
		ddl = strings.Replace(ddl, `'P1Y', 'Infinity',`, `'P1Y', '1e300',`, 1)
	}
	db.Exec(t, ddl)
	db.Exec(t, `CREATE TABLE wide_src AS SELECT * FROM wide; TRUNCATE wide`)
	if err := pgsrc.Setup(ctx, &cfg, []pgsrc.TableRef{{Schema: "public", Name: "wide"}}, nil); err != nil {
		t.Fatal(err)
	}
	r, err := pgsrc.StartReader(ctx, &cfg, 0, pgsrc.ReaderOptions{}, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	cols := "id, ts, tsn, d, tm, tmtz, iv, n, n2, f8, f4, i2, mo, b, j, js, arr, tarr, tsarr, u, bo, t, c, vc, col, pt, ip, bits, x, nul"
	db.Exec(t, "INSERT INTO wide ("+cols+") SELECT "+cols+" FROM wide_src ORDER BY id")

	d := pgsrc.NewDecoder()
	streamed := map[string][]string{}
	var rel *pgsrc.Relation
	for done := false; !done; {
		msg, err := r.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Kind != pgsrc.MessageWAL {
			continue
		}
		var ch pgsrc.Change
		if _, err := d.Decode(msg.WALStart, bytes.Clone(msg.Data), &ch, nil); err != nil {
			t.Fatal(err)
		}
		switch ch.Op {
		case pgsrc.OpInsert:
			rel = ch.Rel
			streamed[string(ch.New[0].Data)] = valueStrings(ch.New)
		case pgsrc.OpCommit:
			done = true
		}
	}
	if len(streamed) != 3 {
		t.Fatalf("%d inserts streamed, want 3", len(streamed))
	}

	conn := db.Conn(t)
	tables, err := pgsrc.Discover(ctx, conn, []pgsrc.TableRef{{Schema: "public", Name: "wide"}})
	if err != nil {
		t.Fatal(err)
	}
	tbl := &tables[0]
	o, err := pgsrc.NewKeyOrder(tbl, tbl.PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	// The scan's columns are the Relation message's.
	var relCols []string
	for _, c := range rel.Columns {
		relCols = append(relCols, c.Name)
	}
	if got, want := strings.Join(relCols, ", "), cols; got != want {
		t.Fatalf("Relation columns %s, want %s", got, want)
	}
	if got := o.Positions(); !slices.Equal(got, rel.KeyColumns()) {
		t.Errorf("key positions %v, Relation's %v", got, rel.KeyColumns())
	}

	s, err := pgsrc.OpenScanner(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	scanned := 0
	_, err = s.ScanChunk(ctx, tbl, o, nil, nil, nil, func(row []pgsrc.Value) error {
		scanned++
		id := string(row[0].Data)
		want := streamed[id]
		got := valueStrings(row)
		if len(got) != len(want) {
			t.Fatalf("row %s: %d values, pgoutput sent %d", id, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("row %s column %s: scanned %.80q, pgoutput sent %.80q", id, relCols[i], got[i], want[i])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned != 3 {
		t.Fatalf("scanned %d rows, want 3", scanned)
	}
}

// valueStrings renders values with their kinds, copying them.
func valueStrings(vals []pgsrc.Value) []string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = string(rune(v.Kind)) + ":" + string(v.Data)
	}
	return out
}

func TestScanChunkBounds(t *testing.T) {
	db := pgCluster(t).NewDatabase(t)
	cfg := db.SourceConfig("postgres", pgCluster(t).SuperuserPassword())
	ctx := testContext(t)
	db.Exec(t, `CREATE TABLE "Odd ""name""" ("K ey" int PRIMARY KEY, v text); INSERT INTO "Odd ""name""" SELECT g, g::text FROM generate_series(1, 20) g`)
	tables, err := pgsrc.Discover(ctx, db.Conn(t), []pgsrc.TableRef{{Schema: "public", Name: `Odd "name"`}})
	if err != nil {
		t.Fatal(err)
	}
	tbl := &tables[0]
	o, err := pgsrc.NewKeyOrder(tbl, tbl.PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := pgsrc.OpenScanner(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)

	end, full, err := s.ChunkEnd(ctx, tbl, o, key("5"), 10)
	if err != nil || !full || string(end[0]) != "15" {
		t.Fatalf("ChunkEnd after 5 by 10 = %q, %v, %v; want 15, true", end, full, err)
	}
	if end, full, err := s.ChunkEnd(ctx, tbl, o, key("15"), 6); err != nil || full || end != nil {
		t.Fatalf("ChunkEnd after 15 by 6 = %q, %v, %v; want nil, false", end, full, err)
	}
	if end, full, err := s.ChunkEnd(ctx, tbl, o, key("15"), 5); err != nil || !full || string(end[0]) != "20" {
		t.Fatalf("ChunkEnd after 15 by 5 = %q, %v, %v; want 20, true", end, full, err)
	}
	var got []string
	n, err := s.ScanChunk(ctx, tbl, o, key("5"), key("8"), nil, func(row []pgsrc.Value) error {
		got = append(got, string(row[0].Data)+"="+string(row[1].Data))
		return nil
	})
	if err != nil || n != 3 || strings.Join(got, " ") != "6=6 7=7 8=8" {
		t.Fatalf("ScanChunk (5, 8] = %d %v, %v", n, got, err)
	}
	stop := errors.New("stop")
	n, err = s.ScanChunk(ctx, tbl, o, nil, nil, nil, func(row []pgsrc.Value) error { return stop })
	if err != stop || n != 1 {
		t.Fatalf("ScanChunk with fn failing = %d, %v; want 1, the error", n, err)
	}
	// The connection is usable after fn stopped a scan.
	if _, _, err := s.ChunkEnd(ctx, tbl, o, nil, 1); err != nil {
		t.Fatal(err)
	}
}

func TestScanCTIDReadsEveryRowOnce(t *testing.T) {
	db := pgCluster(t).NewDatabase(t)
	cfg := db.SourceConfig("postgres", pgCluster(t).SuperuserPassword())
	ctx := testContext(t)
	// Holes from deletes, rows moved by updates, a generated column.
	db.Exec(t, `CREATE TABLE nokey (a int, b text, g int GENERATED ALWAYS AS (a + 1) STORED);
		INSERT INTO nokey (a, b) SELECT g, repeat('x', g % 300) FROM generate_series(1, 500) g;
		DELETE FROM nokey WHERE a % 7 = 0;
		UPDATE nokey SET b = 'moved' WHERE a % 11 = 0;
		INSERT INTO nokey (a, b) VALUES (1000, NULL), (1000, NULL)`)
	conn := db.Conn(t)
	var want int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM nokey`).Scan(&want); err != nil {
		t.Fatal(err)
	}
	tables, err := pgsrc.Discover(ctx, conn, []pgsrc.TableRef{{Schema: "public", Name: "nokey"}})
	if err != nil {
		t.Fatal(err)
	}
	tbl := &tables[0]
	s, err := pgsrc.OpenScanner(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)

	for _, size := range []int{1, 7, 100, 10000} {
		readByCTID(t, s, tbl, size, want)
	}
}

// readByCTID reads the table in chunks of size and checks that every row
// of the want rows comes once, in its current version.
func readByCTID(t *testing.T, s *pgsrc.Scanner, tbl *pgsrc.Table, size, want int) {
	t.Helper()
	ctx := testContext(t)
	seen := map[string]bool{}
	dupes := 0
	var after string
	total := 0
	for {
		last, n, err := s.ScanCTID(ctx, tbl, after, size, nil, func(ctid string, row []pgsrc.Value) error {
			if len(row) != 2 {
				t.Fatalf("row of %d values, want 2 (the generated column left out)", len(row))
			}
			if seen[ctid] {
				t.Errorf("ctid %s read twice", ctid)
			}
			seen[ctid] = true
			if string(row[0].Data) == "1000" {
				dupes++
				if row[1].Kind != pgsrc.ValueNull {
					t.Errorf("NULL read as %q", row[1].Data)
				}
			}
			if a, _ := strconv.Atoi(string(row[0].Data)); a%11 == 0 && a < 1000 && string(row[1].Data) != "moved" {
				t.Errorf("row %d read in its old version", a)
			}
			if after != "" && !tidAfter(ctid, after) {
				t.Errorf("ctid %s read after the cursor %s", ctid, after)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if n < size {
			break
		}
		after = last
	}
	if total != want || len(seen) != want || dupes != 2 {
		t.Fatalf("in chunks of %d: read %d rows, %d distinct ctids, %d of the two identical rows; table has %d", size, total, len(seen), dupes, want)
	}
}

func tidAfter(a, b string) bool {
	var ab, ao, bb, bo int
	fmt.Sscanf(a, "(%d,%d)", &ab, &ao)
	fmt.Sscanf(b, "(%d,%d)", &bb, &bo)
	return ab > bb || ab == bb && ao > bo
}

func TestScannerErrorsSayWhatToDo(t *testing.T) {
	db := pgCluster(t).NewDatabase(t)
	ctx := testContext(t)
	db.Exec(t, `CREATE TABLE secret (id int PRIMARY KEY); CREATE TABLE doomed (id int PRIMARY KEY);
		CREATE TABLE parted (a int) PARTITION BY RANGE (a)`)
	db.CreateRole(t, "scan_nobody", "pw", "LOGIN")
	conn := db.Conn(t)
	tables, err := pgsrc.Discover(ctx, conn, []pgsrc.TableRef{{Schema: "public", Name: "secret"}, {Schema: "public", Name: "doomed"}, {Schema: "public", Name: "parted"}})
	if err != nil {
		t.Fatal(err)
	}
	secret, doomed, parted := &tables[0], &tables[1], &tables[2]
	so, _ := pgsrc.NewKeyOrder(secret, secret.PrimaryKey)
	do, _ := pgsrc.NewKeyOrder(doomed, doomed.PrimaryKey)

	cfg := db.SourceConfig("scan_nobody", "pw")
	s, err := pgsrc.OpenScanner(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	_, _, err = s.ChunkEnd(ctx, secret, so, nil, 10)
	if !errors.Is(err, pgsrc.ErrNotPermitted) || !strings.Contains(err.Error(), `GRANT SELECT ON TABLE "public"."secret" TO "scan_nobody"`) {
		t.Errorf("reading without SELECT: %v", err)
	}
	_, err = s.ScanChunk(ctx, secret, so, nil, nil, nil, func([]pgsrc.Value) error { return nil })
	if !errors.Is(err, pgsrc.ErrNotPermitted) {
		t.Errorf("scanning without SELECT: %v", err)
	}

	db.Exec(t, `DROP TABLE doomed`)
	if _, _, err := s.ChunkEnd(ctx, doomed, do, nil, 10); !errors.Is(err, pgsrc.ErrTableNotFound) || !strings.Contains(err.Error(), "public.doomed") {
		t.Errorf("reading a dropped table: %v", err)
	}
	if _, _, err := s.ScanCTID(ctx, parted, "", 10, nil, func(string, []pgsrc.Value) error { return nil }); err == nil || !strings.Contains(err.Error(), "skip_backfills") {
		t.Errorf("reading a partitioned table by ctid: %v", err)
	}
	if _, _, err := s.ChunkEnd(ctx, doomed, so, nil, 10); err == nil {
		t.Error("a key order of another table was accepted")
	}
}

// TestEstimateAfter: the planner's estimate of the rows after a key cursor
// and after a ctid cursor is close to the truth on an analyzed table.
func TestEstimateAfter(t *testing.T) {
	db := pgCluster(t).NewDatabase(t)
	cfg := db.SourceConfig("postgres", pgCluster(t).SuperuserPassword())
	ctx := testContext(t)
	db.Exec(t, `CREATE TABLE est (k text, n int, PRIMARY KEY (k, n)); CREATE TABLE est_nokey (v int);
		INSERT INTO est SELECT 'k' || lpad(g::text, 5, '0'), g % 3 FROM generate_series(1, 20000) g;
		INSERT INTO est_nokey SELECT generate_series(1, 20000);
		ANALYZE est; ANALYZE est_nokey`)
	tables, err := pgsrc.Discover(ctx, db.Conn(t), []pgsrc.TableRef{{Schema: "public", Name: "est"}, {Schema: "public", Name: "est_nokey"}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := pgsrc.OpenScanner(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	o, err := s.KeyOrder(ctx, &tables[0], tables[0].PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	near := func(what string, got, want int64) {
		t.Helper()
		if got < want*8/10 || got > want*12/10 {
			t.Errorf("%s: estimate %d, want about %d", what, got, want)
		}
	}
	got, err := s.EstimateAfter(ctx, &tables[0], o, [][]byte{[]byte("k14000"), []byte("0")}, "")
	if err != nil {
		t.Fatal(err)
	}
	near("after key (k14000, 0)", got, 6000)
	var mid string
	if err := db.Conn(t).QueryRow(ctx, `SELECT ctid::text FROM est_nokey WHERE v = 15000`).Scan(&mid); err != nil {
		t.Fatal(err)
	}
	got, err = s.EstimateAfter(ctx, &tables[1], nil, nil, mid)
	if err != nil {
		t.Fatal(err)
	}
	near("after ctid "+mid, got, 5000)
}

// TestIndexAdvice: a text key in a collation other than C makes the chunk
// queries sort; the advice is the index that lets them walk it, and once
// it exists there is no advice.
func TestIndexAdvice(t *testing.T) {
	db := pgCluster(t).NewDatabase(t)
	cfg := db.SourceConfig("postgres", pgCluster(t).SuperuserPassword())
	ctx := testContext(t)
	db.Exec(t, `CREATE TABLE icu (k text COLLATE "und-x-icu", n int, PRIMARY KEY (k, n)); CREATE TABLE plain (id int PRIMARY KEY);
		INSERT INTO icu SELECT 'k' || g, g FROM generate_series(1, 5000) g; ANALYZE icu`)
	tables, err := pgsrc.Discover(ctx, db.Conn(t), []pgsrc.TableRef{{Schema: "public", Name: "icu"}, {Schema: "public", Name: "plain"}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := pgsrc.OpenScanner(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	advice := func(tb *pgsrc.Table) string {
		t.Helper()
		o, err := s.KeyOrder(ctx, tb, tb.PrimaryKey)
		if err != nil {
			t.Fatal(err)
		}
		a, err := s.IndexAdvice(ctx, tb, o, 100)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	want := `CREATE INDEX CONCURRENTLY ON "public"."icu" ("k" COLLATE "C", "n");`
	if got := advice(&tables[0]); got != want {
		t.Fatalf("advice for a key in an ICU collation: %q, want %q", got, want)
	}
	if got := advice(&tables[1]); got != "" {
		t.Errorf("advice for an int key: %q", got)
	}
	// check says so too, as a detail of the table's line.
	results, err := pgsrc.Check(ctx, &cfg, []pgsrc.TableRef{{Schema: "public", Name: "icu"}})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range results {
		if r.Name == "table public.icu" {
			found = r.OK && strings.Contains(r.Detail, want)
		}
	}
	if !found {
		t.Errorf("check does not give the index advice: %+v", results)
	}
	db.Exec(t, strings.TrimSuffix(want, ";"))
	if got := advice(&tables[0]); got != "" {
		t.Errorf("advice once the index exists: %q", got)
	}
}
