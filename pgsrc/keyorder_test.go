package pgsrc_test

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// builtin is a pg_catalog base type as Discover describes it.
func builtin(name string, category byte) pgsrc.Type {
	return pgsrc.Type{Name: name, Schema: "pg_catalog", Display: name, Kind: pgsrc.KindBase, Category: category}
}

func tableOf(cols ...pgsrc.Column) *pgsrc.Table {
	t := &pgsrc.Table{Schema: "public", Name: "t", Kind: 'r'}
	for i, c := range cols {
		c.Position = i + 1
		t.Columns = append(t.Columns, c)
		t.PrimaryKey = append(t.PrimaryKey, c.Name)
	}
	return t
}

func key(vals ...string) [][]byte {
	k := make([][]byte, len(vals))
	for i, v := range vals {
		k[i] = []byte(v)
	}
	return k
}

// textIntOrder orders a key of (text, int8).
func textIntOrder(t testing.TB) *pgsrc.KeyOrder {
	tbl := tableOf(pgsrc.Column{Name: "s", Type: builtin("text", 'S')}, pgsrc.Column{Name: "n", Type: builtin("int8", 'N')})
	o, err := pgsrc.NewKeyOrder(tbl, tbl.PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestKeyOrderSQL(t *testing.T) {
	tbl := tableOf(
		pgsrc.Column{Name: `we"ird`, Type: builtin("text", 'S')},
		pgsrc.Column{Name: "n", Type: builtin("int4", 'N')},
		pgsrc.Column{Name: "c", Type: builtin("bpchar", 'S')},
	)
	o, err := pgsrc.NewKeyOrder(tbl, tbl.PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := o.OrderBy(), `"we""ird" COLLATE "C", "n", "c" COLLATE "C"`; got != want {
		t.Errorf("OrderBy = %s, want %s", got, want)
	}
	if got, want := o.KeyPredicate(">", 3), `("we""ird" COLLATE "C", "n", "c" COLLATE "C") > ($3 COLLATE "C", $4, $5 COLLATE "C")`; got != want {
		t.Errorf("KeyPredicate = %s, want %s", got, want)
	}
	one, err := pgsrc.NewKeyOrder(tbl, []string{"n"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := one.KeyPredicate("<=", 1), `"n" <= $1`; got != want {
		t.Errorf("KeyPredicate = %s, want %s", got, want)
	}
	if got := o.Columns(); strings.Join(got, ",") != `we"ird,n,c` {
		t.Errorf("Columns = %q", got)
	}
}

func TestKeyOrderRejectsUnorderableTypes(t *testing.T) {
	for _, typ := range []pgsrc.Type{
		builtin("float8", 'N'),
		builtin("inet", 'I'),
		builtin("bytea", 'U'),
		{Name: "int4range", Schema: "pg_catalog", Display: "int4range", Kind: pgsrc.KindRange, Category: 'R'},
		{Name: "myt", Schema: "public", Display: "myt", Kind: pgsrc.KindBase, Category: 'S'},
	} {
		tbl := tableOf(pgsrc.Column{Name: "k", Type: typ})
		_, err := pgsrc.NewKeyOrder(tbl, tbl.PrimaryKey)
		if err == nil {
			t.Errorf("%s: no error", typ.Name)
			continue
		}
		for _, want := range []string{"public.t", `"k"`, typ.Display, "source.advanced.skip_backfills"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not say %q", typ.Name, err, want)
			}
		}
	}
	gen := tableOf(pgsrc.Column{Name: "k", Type: builtin("int4", 'N'), Generated: true})
	if _, err := pgsrc.NewKeyOrder(gen, gen.PrimaryKey); err == nil || !strings.Contains(err.Error(), "generated") {
		t.Errorf("generated key column: %v", err)
	}
}

func TestKeyOrderPositionsSkipGenerated(t *testing.T) {
	tbl := tableOf(
		pgsrc.Column{Name: "a", Type: builtin("int4", 'N')},
		pgsrc.Column{Name: "g", Type: builtin("int4", 'N'), Generated: true},
		pgsrc.Column{Name: "b", Type: builtin("text", 'S')},
	)
	o, err := pgsrc.NewKeyOrder(tbl, []string{"b", "a"})
	if err != nil {
		t.Fatal(err)
	}
	if got := o.Positions(); len(got) != 2 || got[0] != 1 || got[1] != 0 {
		t.Errorf("Positions = %v, want [1 0]", got)
	}
	row := []pgsrc.Value{{Kind: pgsrc.ValueText, Data: []byte("7")}, {Kind: pgsrc.ValueText, Data: []byte("x")}}
	if k := o.Key(nil, row); string(k[0]) != "x" || string(k[1]) != "7" {
		t.Errorf("Key = %q", k)
	}
}

func TestKeyOrderCheck(t *testing.T) {
	o := textIntOrder(t)
	for _, k := range [][][]byte{key("a"), key("a", "1", "2"), key("a", "x"), key("a", "9223372036854775808"), key("a", ""), key("a", "1.5")} {
		if err := o.Check(k); err == nil {
			t.Errorf("Check(%q) passed", k)
		}
	}
	for _, k := range [][][]byte{key("", "0"), key("a", "-9223372036854775808"), key("a", "9223372036854775807")} {
		if err := o.Check(k); err != nil {
			t.Errorf("Check(%q): %v", k, err)
		}
	}
	enum := pgsrc.Type{Name: "mood", Schema: "public", Display: "mood", Kind: pgsrc.KindEnum, Category: 'E', Labels: []string{"b", "a"}}
	tbl := tableOf(pgsrc.Column{Name: "m", Type: enum})
	eo, err := pgsrc.NewKeyOrder(tbl, tbl.PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	if c := eo.Compare(key("b"), key("a")); c != -1 {
		t.Errorf("enum b vs a = %d, want -1 (label order)", c)
	}
	if err := eo.Check(key("c")); !errors.Is(err, pgsrc.ErrStaleKeyOrder) {
		t.Errorf("Check of a new label: %v, want ErrStaleKeyOrder", err)
	}
}

func TestKeyOrderCompareWithoutParsing(t *testing.T) {
	typ := func(name string, cat byte) *pgsrc.KeyOrder {
		tbl := tableOf(pgsrc.Column{Name: "k", Type: builtin(name, cat)})
		o, err := pgsrc.NewKeyOrder(tbl, tbl.PrimaryKey)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	for _, c := range []struct {
		o    *pgsrc.KeyOrder
		a, b string
		want int
	}{
		{typ("int8", 'N'), "-9223372036854775808", "9223372036854775807", -1},
		{typ("int8", 'N'), "10", "9", 1},
		{typ("int2", 'N'), "-1", "-2", 1},
		{typ("numeric", 'N'), "NaN", "Infinity", 1},
		{typ("numeric", 'N'), "-Infinity", "-1000000000000000000000000000000000000000", -1},
		{typ("numeric", 'N'), "1.50", "1.5", 0},
		{typ("numeric", 'N'), "-0.001", "-0.0001", -1},
		{typ("numeric", 'N'), "100", "99.999999999999999999", 1},
		{typ("text", 'S'), "Z", "a", -1},
		{typ("text", 'S'), "a", "a ", -1},
		{typ("bpchar", 'S'), "a   ", "a", 0},
		{typ("bpchar", 'S'), "a\t", "a  ", 1},
		{typ("uuid", 'U'), "A0000000-0000-0000-0000-000000000000", "a0000000-0000-0000-0000-000000000000", 0},
		{typ("bool", 'B'), "f", "t", -1},
		{typ("date", 'D'), "infinity", "5874897-12-31", 1},
		{typ("date", 'D'), "0001-01-01 BC", "0001-01-01", -1},
		{typ("timestamp", 'D'), "-infinity", "4713-01-01 00:00:00 BC", -1},
		{typ("timestamp", 'D'), "2000-01-01 00:00:00.000001", "2000-01-01 00:00:00", 1},
		{typ("timestamptz", 'D'), "2000-01-01 05:00:00+05", "2000-01-01 00:00:00+00", 0},
		{typ("timestamptz", 'D'), "0044-03-15 12:00:00+00 BC", "0044-03-15 11:59:59.999999+00 BC", 1},
	} {
		got := c.o.Compare(key(c.a), key(c.b))
		back := c.o.Compare(key(c.b), key(c.a))
		if got != c.want || back != -c.want {
			t.Errorf("%s: Compare(%q, %q) = %d, reversed %d, want %d", c.o.Columns(), c.a, c.b, got, back, c.want)
		}
	}
}

func TestKeyOrderCompareDoesNotAllocate(t *testing.T) {
	o := textIntOrder(t)
	a, b := key("abc", "-12345"), key("abc", "12345")
	if n := testing.AllocsPerRun(100, func() { o.Compare(a, b) }); n != 0 {
		t.Errorf("Compare of text and int keys allocates %v times", n)
	}
}

func FuzzKeyOrderCompare(f *testing.F) {
	f.Add("", int64(0), " ", int64(0))
	f.Add("a", int64(-1), "A", int64(1))
	f.Add("é", int64(math.MinInt64), "e", int64(math.MaxInt64))
	f.Add("Zoë", int64(7), "Zoë", int64(7))
	f.Add("a ", int64(10), "a", int64(9))
	o := textIntOrder(f)
	f.Fuzz(func(t *testing.T, s1 string, n1 int64, s2 string, n2 int64) {
		a := key(s1, strconv.FormatInt(n1, 10))
		b := key(s2, strconv.FormatInt(n2, 10))
		if err := o.Check(a); err != nil {
			t.Fatal(err)
		}
		want := bytes.Compare([]byte(s1), []byte(s2))
		if want == 0 {
			want = cmp.Compare(n1, n2)
		}
		if got := o.Compare(a, b); got != want {
			t.Fatalf("Compare(%q, %q) = %d, want %d", a, b, got, want)
		}
		if got := o.Compare(b, a); got != -want {
			t.Fatalf("Compare(%q, %q) = %d, want %d", b, a, got, -want)
		}
		if got := o.Compare(a, a); got != 0 {
			t.Fatalf("Compare(%q, itself) = %d", a, got)
		}
	})
}

// An orderCase is a table whose key the backfill orders.
type orderCase struct {
	name string
	// prep runs first (types, extensions).
	prep string
	// cols are the key columns' definitions; order is the test's own ORDER
	// BY of them, written apart from KeyOrder's.
	cols  []string
	order string
	// rows are the key values, SQL literals.
	rows [][]string
}

func lit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func single(vals ...string) [][]string {
	rows := make([][]string, len(vals))
	for i, v := range vals {
		rows[i] = []string{lit(v)}
	}
	return rows
}

func cross(as, bs []string) [][]string {
	var rows [][]string
	for _, a := range as {
		for _, b := range bs {
			rows = append(rows, []string{lit(a), lit(b)})
		}
	}
	return rows
}

var textValues = []string{"", " ", "  ", "a", "A", "é", "e", "E", "Zoë", "zoe", "ZOE", "a ", "ab", "aB", "Ab",
	"日本", "日本語", "Ω", "ä", "~", "_", "[", "😀", "\t", "a\tb", "0", "10", "9", "b", "ß", "ss", "a  "}

func orderCases() []orderCase {
	r := rand.New(rand.NewPCG(1, 2))
	uuids := []string{"00000000-0000-0000-0000-000000000000", "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", "0000000a-0000-0000-0000-000000000000", "00000009-0000-0000-0000-000000000000"}
	for range 20 {
		uuids = append(uuids, fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", r.Uint32(), r.Uint32()>>16, r.Uint32()>>16, r.Uint32()>>16, r.Uint64()>>16))
	}
	ints := func(lo, hi int64) []string {
		vals := []string{strconv.FormatInt(lo, 10), strconv.FormatInt(hi, 10), "0", "-1", "1", strconv.FormatInt(lo+1, 10), strconv.FormatInt(hi-1, 10)}
		for range 20 {
			vals = append(vals, strconv.FormatInt(lo/2+r.Int64N(hi/2)*int64(1-2*r.IntN(2))/2, 10))
		}
		return dedupe(vals)
	}
	timestamps := []string{"-infinity", "infinity", "4713-01-01 00:00:00 BC", "0044-03-15 12:00:00 BC", "0001-12-31 23:59:59.999999 BC",
		"0001-01-01 00:00:00", "1969-12-31 23:59:59.999999", "1970-01-01 00:00:00", "1970-01-01 00:00:00.000001", "2000-01-01 00:00:00.5",
		"2000-02-29 12:34:56.789", "2038-01-19 03:14:08", "294276-12-31 23:59:59.999999"}
	timestamptzs := []string{"-infinity", "infinity", "4713-01-01 00:00:00+00 BC", "0044-03-15 12:00:00+01 BC", "1969-12-31 23:59:59.999999+00",
		"1970-01-01 00:00:00+00", "1970-01-01 00:00:00.000001-01", "2000-01-01 00:00:00.5+05:30", "2000-01-01 00:00:00.5+00",
		"2038-01-19 03:14:08+00", "294276-12-31 23:59:59.999999+00"}
	return []orderCase{
		{name: "int2", cols: []string{"k int2"}, order: "k", rows: single(ints(math.MinInt16, math.MaxInt16)...)},
		{name: "int4", cols: []string{"k int4"}, order: "k", rows: single(ints(math.MinInt32, math.MaxInt32)...)},
		{name: "int8", cols: []string{"k int8"}, order: "k", rows: single(ints(math.MinInt64, math.MaxInt64)...)},
		{name: "numeric", cols: []string{"k numeric"}, order: "k", rows: single("NaN", "Infinity", "-Infinity", "0", "-0.5", "0.49999",
			"0.5001", "1", "-1", "1.5", "10", "9.99999999999999999999", "-123.456", "1e-20", "-1e-20", "123456789012345678901234567890.5",
			"-99999999999999999999", "0.000000000000000000000000000001", "42", "42.0000001", "7")},
		{name: "numeric_scale", cols: []string{"k numeric(12,3)"}, order: "k", rows: single("0", "0.001", "-0.001", "1.5", "1.499", "-999999999.999", "999999999.999", "12", "NaN")},
		{name: "text", cols: []string{"k text"}, order: `k COLLATE "C"`, rows: single(textValues...)},
		{name: "varchar", cols: []string{"k varchar(10)"}, order: `k COLLATE "C"`, rows: single(textValues...)},
		{name: "bpchar", cols: []string{"k char(4)"}, order: `k COLLATE "C"`, rows: single("", "a", " a", "A", "ab", "aB", "é", "b", "  z", "zz", "a\t", "a b", "日本語", "~")},
		{name: "citext", prep: "CREATE EXTENSION citext", cols: []string{"k citext"}, order: `k COLLATE "C"`, rows: single("a", "B", "c", "É", "é", "_", "[", "Zoë", "", " ", "ab ", "aC", "ab")},
		{name: "text_icu", cols: []string{`k text COLLATE "und-x-icu"`}, order: `k COLLATE "C"`, rows: single(textValues...)},
		{name: "name", cols: []string{"k name"}, order: "k", rows: single(textValues...)},
		{name: "uuid", cols: []string{"k uuid"}, order: "k", rows: single(uuids...)},
		{name: "bool", cols: []string{"k bool"}, order: "k", rows: single("t", "f")},
		{name: "date", cols: []string{"k date"}, order: "k", rows: single("-infinity", "infinity", "4713-01-01 BC", "0001-01-01 BC", "0001-01-01",
			"1970-01-01", "1969-12-31", "2000-02-29", "5874897-12-31", "1999-12-31")},
		{name: "timestamp", cols: []string{"k timestamp"}, order: "k", rows: single(timestamps...)},
		{name: "timestamptz", cols: []string{"k timestamptz"}, order: "k", rows: single(timestamptzs...)},
		{name: "enum", prep: "CREATE TYPE mood AS ENUM ('zeta', 'alpha', 'mid'); ALTER TYPE mood ADD VALUE 'beta' BEFORE 'zeta'; ALTER TYPE mood ADD VALUE 'aaa' AFTER 'alpha'",
			cols: []string{"k mood"}, order: "k", rows: single("zeta", "alpha", "mid", "beta", "aaa")},
		{name: "text_int", cols: []string{"s text", "n int4"}, order: `s COLLATE "C", n`, rows: cross(textValues, []string{"-2147483648", "-1", "0", "7", "2147483647"})},
		{name: "uuid_timestamptz", cols: []string{"u uuid", "ts timestamptz"}, order: "u, ts", rows: cross(uuids[:6], timestamptzs)},
		{name: "domains", prep: `CREATE DOMAIN dtext AS varchar(20) CHECK (VALUE <> 'x'); CREATE DOMAIN dint AS int8 CHECK (VALUE > -100)`,
			cols: []string{"d dtext", "i dint"}, order: `d COLLATE "C", i`, rows: cross([]string{"", "A", "a", "é", "e", "b "}, []string{"-99", "0", "99999999999"})},
	}
}

func dedupe(vals []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range vals {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// TestKeyOrderAgreesWithPostgreSQL reads each table in chunks of 7 and
// checks that every row comes exactly once, in strictly increasing order
// by KeyOrder.Compare, and that Compare orders every pair of keys as the
// server's own ORDER BY does.
func TestKeyOrderAgreesWithPostgreSQL(t *testing.T) {
	db := pgCluster(t).NewDatabase(t)
	cfg := db.SourceConfig("postgres", pgCluster(t).SuperuserPassword())
	ctx := testContext(t)
	conn := db.Conn(t)
	s, err := pgsrc.OpenScanner(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)

	for _, c := range orderCases() {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "numeric" && pgCluster(t).Major() < 14 {
				// numeric has no infinities before PostgreSQL 14: the
				// order of the other values is still checked.
				c.rows = slices.DeleteFunc(slices.Clone(c.rows), func(r []string) bool {
					return r[0] == lit("Infinity") || r[0] == lit("-Infinity")
				})
			}
			if strings.Contains(strings.Join(c.cols, ""), "icu") {
				var ok bool
				if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu')`).Scan(&ok); err != nil || !ok {
					t.Skip("PostgreSQL built without ICU")
				}
			}
			if c.prep != "" {
				db.Exec(t, c.prep)
			}
			var names []string
			for _, col := range c.cols {
				names = append(names, strings.Fields(col)[0])
			}
			table := "k_" + c.name
			db.Exec(t, fmt.Sprintf("CREATE TABLE %s (%s, payload int, PRIMARY KEY (%s))", table, strings.Join(c.cols, ", "), strings.Join(names, ", ")))
			rows := c.rows
			rand.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
			for i, r := range rows {
				db.Exec(t, fmt.Sprintf("INSERT INTO %s VALUES (%s, %d)", table, strings.Join(r, ", "), i))
			}

			// The server's order, written apart from KeyOrder's SQL.
			rank := map[string]int{}
			q := fmt.Sprintf("SELECT %s, row_number() OVER (ORDER BY %s) FROM %s", strings.Join(names, ", "), c.order, table)
			res := conn.PgConn().ExecParams(ctx, q, nil, nil, nil, nil).Read()
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			for _, row := range res.Rows {
				n, _ := strconv.Atoi(string(row[len(row)-1]))
				rank[string(bytes.Join(row[:len(row)-1], []byte{0}))] = n
			}
			if len(rank) != len(rows) {
				t.Fatalf("%d ranked rows for %d inserted", len(rank), len(rows))
			}

			tables, err := pgsrc.Discover(ctx, conn, []pgsrc.TableRef{{Schema: "public", Name: table}})
			if err != nil {
				t.Fatal(err)
			}
			tbl := &tables[0]
			plain, err := pgsrc.NewKeyOrder(tbl, tbl.PrimaryKey)
			if err != nil {
				t.Fatal(err)
			}
			// The Scanner's order, COLLATE "C" left out where the column's
			// collation is C, reads the same rows in the same order.
			o, err := s.KeyOrder(ctx, tbl, tbl.PrimaryKey)
			if err != nil {
				t.Fatal(err)
			}
			keys := readInChunks(t, s, tbl, o, 7)
			if again := readInChunks(t, s, tbl, plain, 7); !slices.EqualFunc(keys, again, func(a, b [][]byte) bool { return plain.Compare(a, b) == 0 }) {
				t.Errorf("with COLLATE \"C\" everywhere the rows come as %q, without it where the collation is C as %q", again, keys)
			}

			if len(keys) != len(rows) {
				t.Errorf("read %d rows, table has %d", len(keys), len(rows))
			}
			for i, k := range keys {
				if err := o.Check(k); err != nil {
					t.Errorf("Check(%q): %v", k, err)
				}
				if i > 0 && o.Compare(keys[i-1], k) >= 0 {
					t.Errorf("row %d: key %q is not after %q", i, k, keys[i-1])
				}
				if _, ok := rank[string(bytes.Join(k, []byte{0}))]; !ok {
					t.Errorf("key %q read, not in the table", k)
				}
			}
			for _, a := range keys {
				for _, b := range keys {
					ra, rb := rank[string(bytes.Join(a, []byte{0}))], rank[string(bytes.Join(b, []byte{0}))]
					if got, want := o.Compare(a, b), cmp.Compare(ra, rb); got != want {
						t.Errorf("Compare(%q, %q) = %d, PostgreSQL orders them %d", a, b, got, want)
					}
				}
			}
		})
	}
}

// readInChunks reads the whole table by ChunkEnd and ScanChunk and returns
// the keys in the order read.
func readInChunks(t *testing.T, s *pgsrc.Scanner, tbl *pgsrc.Table, o *pgsrc.KeyOrder, n int) [][][]byte {
	t.Helper()
	ctx := testContext(t)
	var keys [][][]byte
	var after [][]byte
	for chunk := 0; ; chunk++ {
		end, full, err := s.ChunkEnd(ctx, tbl, o, after, n)
		if err != nil {
			t.Fatal(err)
		}
		read, err := s.ScanChunk(ctx, tbl, o, after, end, nil, func(row []pgsrc.Value) error {
			var k [][]byte
			for _, v := range o.Key(nil, row) {
				k = append(k, bytes.Clone(v))
			}
			keys = append(keys, k)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if full && (read != n || o.Compare(keys[len(keys)-1], end) != 0) {
			t.Fatalf("chunk %d: %d rows up to %q, want %d up to %q", chunk, read, keys[len(keys)-1], n, end)
		}
		if !full {
			if read >= n {
				t.Fatalf("last chunk %d: %d rows, want fewer than %d", chunk, read, n)
			}
			return keys
		}
		after = end
	}
}

// TestScannerKeyOrderUsesTheIndex checks that, where the key's collation is
// C, the chunk queries walk the primary key's index instead of sorting the
// table, and that a column of another collation keeps COLLATE "C".
func TestScannerKeyOrderUsesTheIndex(t *testing.T) {
	db := pgCluster(t).NewDatabase(t)
	cfg := db.SourceConfig("postgres", pgCluster(t).SuperuserPassword())
	ctx := testContext(t)
	db.Exec(t, `CREATE TABLE big (s text, n int, v text, PRIMARY KEY (s, n));
		INSERT INTO big SELECT md5(g::text), g, 'x' FROM generate_series(1, 20000) g;
		CREATE TABLE other (s text COLLATE "POSIX" PRIMARY KEY, t text COLLATE "C" UNIQUE);
		ANALYZE big`)
	conn := db.Conn(t)
	tables, err := pgsrc.Discover(ctx, conn, []pgsrc.TableRef{{Schema: "public", Name: "big"}})
	if err != nil {
		t.Fatal(err)
	}
	tbl := &tables[0]
	s, err := pgsrc.OpenScanner(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	o, err := s.KeyOrder(ctx, tbl, tbl.PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(o.OrderBy(), "COLLATE") {
		t.Errorf("OrderBy %s in a database of collation C", o.OrderBy())
	}
	for _, q := range []string{
		"SELECT " + o.SelectKey() + " FROM big WHERE " + o.KeyPredicate(">", 1) + " ORDER BY " + o.OrderBy() + " LIMIT 1 OFFSET 99",
		"SELECT * FROM big WHERE " + o.KeyPredicate(">", 1) + " AND " + o.KeyPredicate("<=", 3) + " ORDER BY " + o.OrderBy(),
	} {
		res := conn.PgConn().ExecParams(ctx, "EXPLAIN "+q, [][]byte{[]byte("8"), []byte("1"), []byte("9"), []byte("1")}[:strings.Count(q, "$")], nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		var plan []string
		for _, r := range res.Rows {
			plan = append(plan, string(r[0]))
		}
		// The end of a chunk is found walking the index; a chunk is read
		// through it, maybe sorted apart (a bitmap scan): never the table.
		p := strings.Join(plan, "\n")
		if strings.Contains(p, "Seq Scan") || !strings.Contains(p, "big_pkey") || strings.Contains(q, "LIMIT") && strings.Contains(p, "Sort") {
			t.Errorf("%s\nis planned\n%s", q, p)
		}
	}

	others, err := pgsrc.Discover(ctx, conn, []pgsrc.TableRef{{Schema: "public", Name: "other"}})
	if err != nil {
		t.Fatal(err)
	}
	oo, err := s.KeyOrder(ctx, &others[0], []string{"s", "t"})
	if err != nil {
		t.Fatal(err)
	}
	if got := oo.OrderBy(); got != `"s", "t"` {
		t.Errorf("OrderBy %s, want no COLLATE for POSIX and C columns", got)
	}
}

// TestKeyOrderCompareChecked: a value its type cannot parse is an error,
// not a panic, and names the column; well-formed keys compare as Compare.
func TestKeyOrderCompareChecked(t *testing.T) {
	tbl := tableOf(pgsrc.Column{Name: "k", Type: builtin("int8", 'N')})
	o, err := pgsrc.NewKeyOrder(tbl, tbl.PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := o.CompareChecked([][]byte{[]byte("10")}, [][]byte{[]byte("9")}); err != nil || c != 1 {
		t.Fatalf("CompareChecked(10, 9) = %d, %v", c, err)
	}
	for _, bad := range [][][]byte{{[]byte("x")}, {}, {[]byte("1"), []byte("2")}} {
		if _, err := o.CompareChecked(bad, [][]byte{[]byte("1")}); err == nil {
			t.Errorf("CompareChecked(%q, 1): no error", bad)
		}
	}
	if _, err := o.CompareChecked([][]byte{[]byte("x")}, [][]byte{[]byte("1")}); err == nil || !strings.Contains(err.Error(), `"k"`) {
		t.Errorf("the error does not name the column: %v", err)
	}
}
