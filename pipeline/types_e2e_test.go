package pipeline_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/jackc/pgx/v5"

	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
	"github.com/pgkafka/pgkafka/schema"
)

// typeFamily is one table of edge values of a type family, captured once
// by backfill and once by streaming, with what PostgreSQL says each value
// is in the rendering testdata/avro_types.py gives it.
type typeFamily struct {
	name    string
	columns string   // after "id int, "
	key     string   // the primary key's columns after id, if any
	rows    []string // VALUES tuples, id first
	// avro is the Avro type (JSON, without the null branch) some columns
	// must have, where the values alone do not tell it.
	avro map[string]string
	// expect is a json_build_object over the table's columns (the ones
	// captured: exactly the fields the after image must have): the after
	// image as PostgreSQL computes it (date, time and timestamp as the
	// days or microseconds since the epoch, floats as Python's repr, bytea
	// as "hex:", intervals as {months, days, micros}, arrays flattened
	// with unnest).
	expect string
}

// SQL renderings shared by the families.
const (
	sqlFloat = `CASE WHEN %[1]s = 'NaN' THEN 'nan' WHEN %[1]s = 'Infinity' THEN 'inf' WHEN %[1]s = '-Infinity' THEN '-inf' ELSE %[1]s::text END`
	sqlDate  = `CASE WHEN %[1]s = 'infinity' THEN 2147483647 WHEN %[1]s = '-infinity' THEN -2147483648 ELSE %[1]s - date '1970-01-01' END`
	// Whole seconds, then the microseconds: before PostgreSQL 14 extract
	// gives a float8, which has not the digits of far-off epochs' micros.
	sqlStamp = `CASE WHEN %[1]s = 'infinity' THEN 9223372036854775807 WHEN %[1]s = '-infinity' THEN -9223372036854775808 ` +
		`ELSE extract(epoch FROM date_trunc('second', %[1]s))::bigint * 1000000 + mod(extract(microseconds FROM %[1]s)::bigint, 1000000) END`
	sqlTime = `(extract(epoch FROM %[1]s) * 1000000)::bigint`
	// The extreme intervals are PostgreSQL 17's infinity and -infinity,
	// whose fields extract cannot give: every field at its max or min.
	sqlInterval = `CASE WHEN NOT isfinite(%[1]s) AND %[1]s > interval '0' THEN json_build_object('months', 2147483647, 'days', 2147483647, 'micros', 9223372036854775807) ` +
		`WHEN NOT isfinite(%[1]s) THEN json_build_object('months', -2147483648, 'days', -2147483648, 'micros', -9223372036854775808) ` +
		`ELSE json_build_object('months', (extract(year FROM %[1]s) * 12 + extract(month FROM %[1]s))::int, 'days', extract(day FROM %[1]s)::int, ` +
		`'micros', ((extract(hour FROM %[1]s) * 3600 + extract(minute FROM %[1]s) * 60) * 1000000 + extract(microseconds FROM %[1]s))::bigint) END`
	// sqlOut is the type's output function (a cast to text may differ:
	// char(n) drops its padding, inet adds its mask).
	sqlOut   = `CASE WHEN %[1]s IS NULL THEN NULL ELSE concat(%[1]s) END`
	sqlArray = `(SELECT coalesce(json_agg(%[2]s ORDER BY o), '[]') FROM unnest(%[1]s) WITH ORDINALITY u(e, o))`
)

// create is the CREATE TABLE statement of the family's table name.
func (f typeFamily) create(name string) string {
	key := "id"
	if f.key != "" {
		key += ", " + f.key
	}
	return fmt.Sprintf(`CREATE TABLE %s (id int, %s, PRIMARY KEY (%s))`, name, f.columns, key)
}

// insertRows is the SQL inserting rows into table in one transaction: one
// statement, or one a row before PostgreSQL 14, which refuses DEFAULT for
// a generated column in a VALUES list of several rows.
func insertRows(table string, rows []string) string {
	if cluster.Major() < 14 {
		var b strings.Builder
		for _, row := range rows {
			fmt.Fprintf(&b, "INSERT INTO %s VALUES %s;\n", table, row)
		}
		return b.String()
	}
	return fmt.Sprintf(`INSERT INTO %s VALUES %s`, table, strings.Join(rows, ", "))
}

func r(format, col string) string { return fmt.Sprintf(format, col) }

// arr renders array column col element by element with the element format.
func arr(col, elem string) string {
	return fmt.Sprintf(`CASE WHEN %[1]s IS NULL THEN NULL ELSE %[2]s END`, col, fmt.Sprintf(sqlArray, col, fmt.Sprintf(elem, "e")))
}

// numbersBefore15 is typeFamilies' numbers for the servers that lack
// numeric's negative scales (PostgreSQL 15) and infinities (14): without
// the numeric(5,-2) column, and with finite numerics where it has them.
func numbersBefore15() typeFamily {
	return typeFamily{
		name:    "numbers",
		columns: `b boolean, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision, d numeric(10,2), n numeric, m money`,
		rows: []string{
			`(1, true, -32768, -2147483648, -9223372036854775808, 1.5, 1.7976931348623157e308, 12345678.90, 'NaN', -1234.56)`,
			`(2, false, 32767, 2147483647, 9223372036854775807, 'NaN', '-Infinity', 'NaN', '123456789012345678901234567890.5', 0)`,
			`(3, NULL, 0, 0, 0, '-Infinity', -2.25e-10, -0.01, '-1e-30', 92233720368547758.07)`,
			`(4, true, 1, 1, 1, -0.25, 'NaN', NULL, '-0.000000000000000000001', -92233720368547758.08)`,
		},
		expect: `json_build_object('b', b, 'i2', i2, 'i4', i4, 'i8', i8, 'f4', ` + r(sqlFloat, "f4") + `, 'f8', ` + r(sqlFloat, "f8") +
			`, 'd', CASE WHEN d = 'NaN' THEN NULL ELSE d::text END, 'n', n::text, 'm', m::text)`,
	}
}

func typeFamilies() []typeFamily {
	return []typeFamily{{
		name:    "numbers",
		columns: `b boolean, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision, d numeric(10,2), dn numeric(5,-2), n numeric, m money`,
		rows: []string{
			`(1, true, -32768, -2147483648, -9223372036854775808, 1.5, 1.7976931348623157e308, 12345678.90, 1234500, 'NaN', -1234.56)`,
			`(2, false, 32767, 2147483647, 9223372036854775807, 'NaN', '-Infinity', 'NaN', -99900, 'Infinity', 0)`,
			`(3, NULL, 0, 0, 0, '-Infinity', -2.25e-10, -0.01, NULL, '-Infinity', 92233720368547758.07)`,
			`(4, true, 1, 1, 1, -0.25, 'NaN', NULL, 0, '-0.000000000000000000001', -92233720368547758.08)`,
		},
		// format.nonFiniteDecimal is null: a NaN in numeric(10,2) is null.
		expect: `json_build_object('b', b, 'i2', i2, 'i4', i4, 'i8', i8, 'f4', ` + r(sqlFloat, "f4") + `, 'f8', ` + r(sqlFloat, "f8") +
			`, 'd', CASE WHEN d = 'NaN' THEN NULL ELSE d::text END, 'dn', dn::text, 'n', n::text, 'm', m::text)`,
	}, {
		name:    "times",
		columns: `d date, t time, tz timetz, ts timestamp, tstz timestamptz, iv interval`,
		rows: []string{
			`(1, '2024-02-29', '24:00:00', '24:00:00+00', '2024-01-02 03:04:05.123456', '2024-02-29 23:59:58.123456+02', 'P1Y2M3DT4H5M6.789S')`,
			`(2, 'infinity', '00:00:00', '00:00:00.5-05:30', 'infinity', '-infinity', 'PT0S')`,
			`(3, '0044-03-15 BC', '23:59:59.999999', '12:00:00+14', '10000-01-01 00:00:00', '12345-06-07 08:09:10.000001+00', '-1 year -2 months +3 days -04:05:06.789')`,
			`(4, '-infinity', '12:34:56.5', NULL, '-infinity', 'infinity', '-0.5 seconds')`,
			`(5, '4714-11-24 BC', NULL, '23:59:59.999999-12', '0001-01-01 00:00:00 BC', '1970-01-01 00:00:00.000001+00', '178956970 years 7 months 2147483647 days 2562047788:00:54.775807')`,
			`(6, NULL, NULL, NULL, NULL, NULL, 'P-178956970Y-8M-2147483648DT-2562047788H-54.775808S')`,
		},
		expect: `json_build_object('d', ` + r(sqlDate, "d") + `, 't', ` + r(sqlTime, "t") + `, 'tz', tz::text, 'ts', ` + r(sqlStamp, "ts") +
			`, 'tstz', ` + r(sqlStamp, "tstz") + `, 'iv', ` + r(sqlInterval, "iv") + `)`,
	}, {
		name:    "texts",
		columns: `s text, v varchar(5), c char(5), nm name, ch "char", ci citext, x xml, j json, jb jsonb, u uuid, by bytea, e mood`,
		rows: []string{
			`(1, 'Zoë "quoted" \ back', 'ab', 'ab', 'pg_class', 'x', 'MiXeD', '<a x="1">b</a>', '{"b": 1,  "a": [1, 2]}', '{"b": 1, "a": [1, 2]}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x00ff10', 'happy')`,
			`(2, '', '', '', '', '', '', '', 'null', '"str"', '00000000-0000-0000-0000-000000000000', '\x', 'sad')`,
			`(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
			`(4, E'line\nbreak\ttab', 'NULL', '  x', 'NULL', '"', 'ß', '<!-- c -->', '[]', '{}', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', decode(repeat('deadbeef', 3), 'hex'), 'happy')`,
		},
		expect: `json_build_object('s', s, 'v', v, 'c', ` + r(sqlOut, "c") + `, 'nm', nm, 'ch', ch::text, 'ci', ci::text, 'x', x::text, 'j', j::text, 'jb', jb::text, 'u', u::text, ` +
			`'by', CASE WHEN by IS NULL THEN NULL ELSE 'hex:' || encode(by, 'hex') END, 'e', e::text)`,
	}, {
		name: "text_forms",
		columns: `bi bit(4), vb varbit, ip inet, cd cidr, mac macaddr, mac8 macaddr8, tv tsvector, tq tsquery, r int4range, tr tstzrange, mr int4multirange, ` +
			`pt point, ln line, ls lseg, bx box, pa path, pg polygon, ci circle, co pair`,
		rows: []string{
			`(1, B'0101', B'', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05', 'a fat:2B cat', 'fat & !rat', '[1,5)', '[2024-01-01 00:00:00+02,infinity)', '{[1,3),[5,7)}', ` +
				`'(1.5,-2)', '{1,-1,0}', '[(0,0),(1,1)]', '(1,1),(0,0)', '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(1,0))', '<(0,0),1.5>', '(1,"x y")')`,
			`(2, B'1111', B'1', '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', '00:00:00:00:00:00:00:00', '', '!x', 'empty', '(,)', '{}', ` +
				`'(1e+300,-0)', '{0,1,-1}', '[(1,2),(3,4)]', '(0,0),(0,0)', '((0,0),(1,1))', '((0,0))', '<(1,2),0>', '(,)')`,
			`(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
		},
		expect: `json_build_object('bi', bi::text, 'vb', vb::text, 'ip', ` + r(sqlOut, "ip") + `, 'cd', cd::text, 'mac', mac::text, 'mac8', mac8::text, 'tv', tv::text, 'tq', tq::text, ` +
			`'r', r::text, 'tr', tr::text, 'mr', mr::text, 'pt', pt::text, 'ln', ln::text, 'ls', ls::text, 'bx', bx::text, 'pa', pa::text, 'pg', pg::text, 'ci', ci::text, 'co', co::text)`,
	}, {
		name: "arrays",
		columns: `ai int[], at text[], ad numeric(10,2)[], ats timestamptz[], adt date[], aby bytea[], abx box[], aiv interval[], ab boolean[], af float8[], ` +
			`au uuid[], aj jsonb[], am int[][], alb int[], ah hstore[], ar int4range[]`,
		rows: []string{
			`(1, '{1,NULL,-3}', ARRAY['plain', 'a b', 'NULL', NULL, '', 'q"uote', 'back\slash', '{brace}', 'a,b', 'Zoë'], '{1.50,NULL,-0.01,NaN}', ` +
				`'{"2024-01-02 03:04:05.123456+00",infinity,"0044-03-15 10:00:00+00 BC"}', '{2024-02-29,-infinity,NULL}', '{"\\x00ff","\\x",NULL}', ` +
				`ARRAY['(3,4),(1,2)'::box, '(0,0),(0,0)', NULL], '{P1D,NULL,PT-1.5S}', '{t,f,NULL}', '{1.5,NaN,-Infinity,NULL}', ` +
				`'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}', ARRAY['{"a": [1, 2]}'::jsonb, 'null', NULL], '{{1,2,3},{4,NULL,6}}', '[0:2]={7,8,9}', ` +
				`ARRAY['"a"=>"1", "b"=>NULL'::hstore, ''], '{"[1,5)",empty,NULL}')`,
			`(2, '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '[-5:-4]={NULL,1}', '{}', '{}')`,
			`(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{{{1},{2}},{{3},{4}}}', '[1:2][0:1]={{1,2},{3,4}}', NULL, NULL)`,
			`(4, (SELECT array_agg(g) FROM generate_series(1, 300) g), ARRAY[repeat('x', 3000), '"', '\', ' '], '{99999999.99,-99999999.99}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
		},
		expect: `json_build_object('ai', ` + arr("ai", "%s") + `, 'at', ` + arr("at", "%s") + `, 'ad', ` + arr("ad", "CASE WHEN %[1]s = 'NaN' THEN NULL ELSE %[1]s::text END") +
			`, 'ats', ` + arr("ats", sqlStamp) + `, 'adt', ` + arr("adt", sqlDate) + `, 'aby', ` + arr("aby", "'hex:' || encode(%s, 'hex')") +
			`, 'abx', ` + arr("abx", "%s::text") + `, 'aiv', ` + arr("aiv", "CASE WHEN %[1]s IS NULL THEN NULL ELSE "+sqlInterval+" END") + `, 'ab', ` + arr("ab", "%s") +
			`, 'af', ` + arr("af", sqlFloat) + `, 'au', ` + arr("au", "%s::text") + `, 'aj', ` + arr("aj", "%s::text") + `, 'am', ` + arr("am", "%s") +
			`, 'alb', ` + arr("alb", "%s") + `, 'ah', ` + arr("ah", "hstore_to_json(%s)") + `, 'ar', ` + arr("ar", "%s::text") + `)`,
	}, {
		name:    "hstores",
		columns: `h hstore`,
		rows: []string{
			`(1, '"a"=>"1", "b"=>NULL')`,
			`(2, '')`,
			`(3, NULL)`,
			`(4, hstore(ARRAY['q"k', 'back\slash', 'NULL', '', 'a b'], ARRAY['v"', NULL, 'NULL', '', 'c => d, e']))`,
		},
		expect: `json_build_object('h', hstore_to_json(h))`,
	}, {
		// pgoutput (before PostgreSQL 18's publish_generated_columns) does
		// not send generated columns: the backfill leaves them out too.
		name:    "generated",
		columns: `a int, g int GENERATED ALWAYS AS (a * 2) STORED, s text, gs text GENERATED ALWAYS AS (upper(s)) STORED, z numeric(4,1)`,
		rows: []string{
			`(1, 5, DEFAULT, 'x', DEFAULT, 1.5)`,
			`(2, NULL, DEFAULT, NULL, DEFAULT, NULL)`,
		},
		expect: `json_build_object('a', a, 's', s, 'z', z::text)`,
	}, {
		name:    "domains",
		columns: `dc cents, dp posint NOT NULL, dt tags, ds stamp, dv code, da cents[]`,
		rows: []string{
			`(1, 1234.50, 1, '{a,NULL,"b c"}', '2024-02-29 12:00:00.000001+00', 'abcd', '{1.5,NULL,-9999.99}')`,
			`(2, NULL, 2147483647, '{}', 'infinity', '', '{}')`,
			`(3, -0.01, 3, NULL, NULL, NULL, NULL)`,
		},
		avro: map[string]string{
			"dc": `{"type":"bytes","logicalType":"decimal","precision":6,"scale":2}`,
			"dp": `"int"`,
			"dt": `{"type":"array","items":["null","string"]}`,
			"ds": `{"type":"long","logicalType":"timestamp-micros"}`,
			"da": `{"type":"array","items":["null",{"type":"bytes","logicalType":"decimal","precision":6,"scale":2}]}`,
		},
		expect: `json_build_object('dc', dc::text, 'dp', dp, 'dt', ` + arr("dt", "%s") + `, 'ds', ` + r(sqlStamp, "ds") + `, 'dv', dv, 'da', ` + arr("da", "%s::text") + `)`,
	}, {
		// Keys of every type a backfill orders by, after id.
		name: "keys",
		columns: `kt text, kn numeric(8,3), kts timestamptz, kl timestamp, ku uuid, kd date, kb boolean, ke mood, kc char(3), kci citext, ` +
			`kdp posint, k8 bigint, v text`,
		key: `kt, kn, kts, kl, ku, kd, kb, ke, kc, kci, kdp, k8`,
		rows: []string{
			`(1, 'Zoë', -12345.678, '-infinity', '2024-01-02 03:04:05.123456', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '0044-03-15 BC', true, 'sad', 'a', 'MiXeD', 1, -9223372036854775808, 'x')`,
			`(2, '', 0, 'infinity', '-infinity', '00000000-0000-0000-0000-000000000000', 'infinity', false, 'happy', '', '', 2147483647, 9223372036854775807, NULL)`,
			`(3, E'tab\there "q"', 0.001, '1970-01-01 00:00:00+00', '10000-01-01 00:00:00', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '1970-01-01', true, 'happy', 'abc', 'ß', 3, 0, '')`,
		},
		expect: `json_build_object('kt', kt, 'kn', kn::text, 'kts', ` + r(sqlStamp, "kts") + `, 'kl', ` + r(sqlStamp, "kl") + `, 'ku', ku::text, 'kd', ` + r(sqlDate, "kd") +
			`, 'kb', kb, 'ke', ke::text, 'kc', ` + r(sqlOut, "kc") + `, 'kci', kci::text, 'kdp', kdp, 'k8', k8, 'v', v)`,
	}}
}

// TestTypesReadByApacheAvro captures a table of edge values per type family
// (DESIGN §5) twice: <family>_bf holds the rows before the capture starts
// and is backfilled ('r' records), <family> gets the same rows once the
// capture streams ('c' records). It reads both topics with kcat, decodes
// them with the Apache Avro reference implementation and compares every
// value with what PostgreSQL computes for it; then it compares the two
// captures of each row: the same key and after image (the same Avro bytes,
// the same values for python3-avro and for hamba/avro), no before image,
// and the same key and value schemas apart from the table's name.
func TestTypesReadByApacheAvro(t *testing.T) {
	families := typeFamilies()
	if cluster.Major() < 15 {
		families[0] = numbersBefore15()
		// Interval input takes more than 2^31 hours from PostgreSQL 15 on:
		// the extreme intervals with the most hours older servers read.
		old := strings.NewReplacer(
			`'178956970 years 7 months 2147483647 days 2562047788:00:54.775807'`, `'178956970 years 7 months 2147483647 days 596523:14:07.999999'`,
			`'P-178956970Y-8M-2147483648DT-2562047788H-54.775808S'`, `'P-178956970Y-8M-2147483648DT-596523H-14M-8S'`)
		for i := range families {
			families[i].rows = slices.Clone(families[i].rows)
			for j, row := range families[i].rows {
				families[i].rows[j] = old.Replace(row)
			}
		}
	}
	if cluster.Major() < 14 {
		// text_forms has a multirange column (PostgreSQL 14).
		t.Logf("family text_forms left out: multiranges need PostgreSQL 14 or later; this server is PostgreSQL %d", cluster.Major())
		families = slices.DeleteFunc(families, func(f typeFamily) bool { return f.name == "text_forms" })
	}
	e := newEnv(t, typeBindings(families)...)
	captureTypes(t, e, families)
}

// TestTypesLatin1Database captures text of a LATIN1 database: the server
// converts it to UTF-8 for both the backfill and the stream (client_encoding
// pinned), so the Avro strings are valid and hold the same characters.
func TestTypesLatin1Database(t *testing.T) {
	families := []typeFamily{{
		name:    "latin1",
		columns: `s text, c char(5), v varchar(5), a text[], j jsonb, x xml, e accent, h hstore, ci citext`,
		key:     `s`,
		rows: []string{
			`(1, 'Zoë ß ÿ ©', 'é', '¼½¾', '{"naïve",NULL,"Ä"}', '{"clé": "valeur ü"}', '<a b="ö">å</a>', 'café', '"ñ"=>"ç", "x"=>NULL', 'ÉCOLE')`,
			`(2, '', '', '', '{}', '"Ø"', '', 'plain', '', '')`,
		},
		expect: `json_build_object('s', s, 'c', ` + r(sqlOut, "c") + `, 'v', v, 'a', ` + arr("a", "%s") + `, 'j', j::text, 'x', x::text, 'e', e::text, 'h', hstore_to_json(h), 'ci', ci::text)`,
	}}
	e := newEnv(t, typeBindings(families)...)
	e.db = cluster.NewDatabaseEncoded(t, "LATIN1")
	e.cfg.Source = e.db.SourceConfig(pgtest.Superuser, cluster.SuperuserPassword())
	e.db.Exec(t, `SET client_encoding = 'UTF8'`)
	e.db.Exec(t, `CREATE TYPE accent AS ENUM ('café', 'plain')`)
	captureTypes(t, e, families)
}

// typeBindings binds the two tables of each family.
func typeBindings(families []typeFamily) []string {
	var bindings []string
	for _, f := range families {
		bindings = append(bindings, "public."+f.name, "public."+f.name+"_bf")
	}
	return bindings
}

// captureTypes creates the families' tables in e's database, fills the
// _bf ones, starts the capture, fills the others, and checks what Kafka
// holds (see TestTypesReadByApacheAvro).
func captureTypes(t *testing.T, e *env, families []typeFamily) {
	t.Helper()
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is needed (make deps installs it):", err)
	}
	python := "/usr/bin/python3" // Debian's python3-avro serves this one
	if out, err := exec.Command(python, "-c", "import avro.io, avro.schema").CombinedOutput(); err != nil {
		t.Fatalf("python3-avro is needed (make deps installs it): %v %s", err, out)
	}
	e.cfg.Format.NonFiniteDecimal = "null"
	// This file's literals are UTF-8, whatever the database's encoding.
	e.db.Exec(t, `SET client_encoding = 'UTF8'`)
	e.db.Exec(t, `CREATE EXTENSION hstore`)
	e.db.Exec(t, `CREATE EXTENSION citext`)
	e.db.Exec(t, `CREATE TYPE mood AS ENUM ('happy', 'sad')`)
	e.db.Exec(t, `CREATE TYPE pair AS (n int, s text)`)
	e.db.Exec(t, `CREATE DOMAIN cents AS numeric(6,2)`)
	e.db.Exec(t, `CREATE DOMAIN posint AS int CHECK (VALUE > 0)`)
	e.db.Exec(t, `CREATE DOMAIN tags AS text[]`)
	e.db.Exec(t, `CREATE DOMAIN stamp AS timestamptz`)
	e.db.Exec(t, `CREATE DOMAIN code AS varchar(4)`)
	total := 0
	for _, f := range families {
		e.db.Exec(t, f.create(f.name))
		e.db.Exec(t, f.create(f.name+"_bf"))
		e.db.Exec(t, insertRows(f.name+"_bf", f.rows))
		total += 2 * len(f.rows)
	}
	e.start(t)
	var topics []string
	for _, f := range families {
		e.db.Exec(t, insertRows(f.name, f.rows))
		topics = append(topics, "test.public."+f.name, "test.public."+f.name+"_bf")
	}
	e.consume(t, topics, 60*time.Second, atLeast(total))

	conn := e.db.Conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The session settings pgoutput's values are printed with.
	for _, set := range []string{`SET client_encoding = 'UTF8'`, `SET DateStyle = 'ISO, YMD'`, `SET TimeZone = 'UTC'`, `SET IntervalStyle = 'iso_8601'`, `SET extra_float_digits = 3`, `SET bytea_output = 'hex'`} {
		if _, err := conn.Exec(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	dec, err := schema.NewDecoder(schema.RegistryConfig{URL: e.reg.URL()})
	if err != nil {
		t.Fatal(err)
	}
	brokers := strings.Join(e.broker.ListenAddrs(), ",")
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			streamed := readTypesTopic(t, ctx, kcat, brokers, python, e.reg.URL(), "test.public."+f.name, "c", len(f.rows))
			backfilled := readTypesTopic(t, ctx, kcat, brokers, python, e.reg.URL(), "test.public."+f.name+"_bf", "r", len(f.rows))
			compareWithPostgres(t, ctx, conn, f, f.name, streamed)
			compareWithPostgres(t, ctx, conn, f, f.name+"_bf", backfilled)

			// The schemas: the same apart from the table's name.
			rename := strings.NewReplacer("public."+f.name+"_bf", "public."+f.name)
			sk, sv := registeredSchemas(t, e.reg.URL(), streamed.records[0])
			bk, bv := registeredSchemas(t, e.reg.URL(), backfilled.records[0])
			if got, want := canonSchema(t, rename.Replace(bk)), canonSchema(t, sk); got != want {
				t.Errorf("key schemas differ beyond the table's name:\nbackfill  %s\nstreaming %s", bk, sk)
			}
			if got, want := canonSchema(t, rename.Replace(bv)), canonSchema(t, sv); got != want {
				t.Errorf("value schemas differ beyond the table's name:\nbackfill  %s\nstreaming %s", bv, sv)
			}
			envelope := parseSchema(t, sv).(*avro.RecordSchema)
			checkFieldTypes(t, sv, f.avro)

			for id, s := range streamed.byID {
				b, ok := backfilled.byID[id]
				if !ok {
					t.Errorf("row %s streamed but not backfilled", id)
					continue
				}
				// python3-avro's reading.
				if g, w := canonJSON(t, b.Key), canonJSON(t, s.Key); g != w {
					t.Errorf("row %s: backfilled key %s, streamed %s", id, g, w)
				}
				if g, w := canonJSON(t, b.Value["after"]), canonJSON(t, s.Value["after"]); g != w {
					t.Errorf("row %s: python3-avro read the backfilled after\n  %s\nand the streamed one\n  %s", id, g, w)
				}
				if b.Value["before"] != nil || s.Value["before"] != nil {
					t.Errorf("row %s: before %v (backfilled) and %v (streamed), want null", id, b.Value["before"], s.Value["before"])
				}
				bsrc, _ := b.Value["source"].(map[string]any)
				ssrc, _ := s.Value["source"].(map[string]any)
				if bsrc["snapshot"] != "true" || ssrc["snapshot"] != "false" {
					t.Errorf("row %s: source.snapshot %v (backfilled) and %v (streamed), want true and false", id, bsrc["snapshot"], ssrc["snapshot"])
				}
				if bsrc["table"] != f.name+"_bf" || ssrc["table"] != f.name {
					t.Errorf("row %s: source.table %v and %v", id, bsrc["table"], ssrc["table"])
				}
				// Nothing else differs.
				if g, w := canonJSON(t, without(b.Value, "op", "source", "ts_ms")), canonJSON(t, without(s.Value, "op", "source", "ts_ms")); g != w {
					t.Errorf("row %s: the values differ beyond op, source and ts_ms:\nbackfilled %s\nstreamed   %s", id, g, w)
				}
				if g, w := canonJSON(t, without(bsrc, "snapshot", "lsn", "txId", "ts_ms", "table")), canonJSON(t, without(ssrc, "snapshot", "lsn", "txId", "ts_ms", "table")); g != w {
					t.Errorf("row %s: the sources differ beyond snapshot, lsn, txId, ts_ms and table:\nbackfilled %s\nstreamed   %s", id, g, w)
				}

				// The bytes: the key's and the after image's.
				bk, sk := backfilled.records[b.index].key, streamed.records[s.index].key
				if !bytes.Equal(bk[5:], sk[5:]) {
					t.Errorf("row %s: key bytes %x (backfilled) and %x (streamed)", id, bk[5:], sk[5:])
				}
				ba, sa := afterBytes(t, envelope, backfilled.records[b.index].value), afterBytes(t, envelope, streamed.records[s.index].value)
				if !bytes.Equal(ba, sa) {
					t.Errorf("row %s: the after image's Avro bytes differ:\nbackfilled %x\nstreamed   %x", id, ba, sa)
				}

				// hamba/avro's reading.
				bv, sv := goDecode(t, dec, backfilled.records[b.index].value), goDecode(t, dec, streamed.records[s.index].value)
				if g, w := fmt.Sprint(bv["after"]), fmt.Sprint(sv["after"]); g != w {
					t.Errorf("row %s: hamba/avro read the backfilled after\n  %s\nand the streamed one\n  %s", id, g, w)
				}
				if bv["before"] != nil || sv["before"] != nil {
					t.Errorf("row %s: hamba/avro read before %v and %v, want null", id, bv["before"], sv["before"])
				}
			}
		})
	}
}

// typesTopic is a topic read by kcat: its records as bytes, and as
// python3-avro decodes them, by the id of their key.
type typesTopic struct {
	records []kafkaRecord
	byID    map[string]pyRecord
}

type kafkaRecord struct{ key, value []byte }

type pyRecord struct {
	Key   map[string]any
	Value map[string]any
	index int // in typesTopic.records
}

// readTypesTopic reads topic with kcat and decodes it with python3-avro; it
// fails the test unless the topic holds n records, each with op op and its
// own key.
func readTypesTopic(t *testing.T, ctx context.Context, kcat, brokers, python, registry, topic, op string, n int) typesTopic {
	t.Helper()
	raw, err := exec.CommandContext(ctx, kcat, "-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%K %S\n%k%s").Output()
	if err != nil {
		t.Fatalf("kcat %s: %v", topic, err)
	}
	tt := typesTopic{records: splitKcat(t, raw), byID: map[string]pyRecord{}}
	py := exec.CommandContext(ctx, python, "testdata/avro_types.py", registry)
	if registry == "" { // format.encoding json (json_types_e2e_test.go)
		py = exec.CommandContext(ctx, python, "testdata/json_types.py")
	}
	py.Stdin = bytes.NewReader(raw)
	var stderr bytes.Buffer
	py.Stderr = &stderr
	out, err := py.Output()
	if err != nil {
		t.Fatalf("python3-avro on %s: %v\n%s", topic, err, stderr.String())
	}
	d := json.NewDecoder(bytes.NewReader(out))
	d.UseNumber()
	for i := 0; d.More(); i++ {
		var rec pyRecord
		if err := d.Decode(&rec); err != nil {
			t.Fatalf("%v in %s", err, out)
		}
		if rec.Value["op"] != op {
			t.Fatalf("%s: op %v, want %s", topic, rec.Value["op"], op)
		}
		rec.index = i
		id := fmt.Sprint(rec.Key["id"])
		if _, dup := tt.byID[id]; dup {
			t.Fatalf("%s: row %s twice:\n%s", topic, id, out)
		}
		tt.byID[id] = rec
	}
	if len(tt.byID) != n || len(tt.records) != n {
		t.Fatalf("%s: kcat read %d records (%d rows), want %d:\n%s", topic, len(tt.records), len(tt.byID), n, out)
	}
	return tt
}

// splitKcat splits what kcat prints with -f '%K %S\n%k%s' into records.
func splitKcat(t *testing.T, raw []byte) []kafkaRecord {
	t.Helper()
	var out []kafkaRecord
	for len(raw) > 0 {
		head, rest, ok := bytes.Cut(raw, []byte("\n"))
		var klen, vlen int
		if _, err := fmt.Sscanf(string(head), "%d %d", &klen, &vlen); !ok || err != nil || klen > len(rest) || vlen > len(rest)-max(klen, 0) {
			t.Fatalf("kcat printed %q: want \"<key length> <value length>\" and that many bytes", head)
		}
		var r kafkaRecord
		if klen >= 0 {
			r.key, rest = rest[:klen], rest[klen:]
		}
		if vlen >= 0 {
			r.value, rest = rest[:vlen], rest[vlen:]
		}
		if len(r.key) < 5 || len(r.value) < 5 {
			t.Fatalf("kcat read a record without a framed key or value: %x %x", r.key, r.value)
		}
		out = append(out, r)
		raw = rest
	}
	return out
}

// compareWithPostgres compares the after image of every record of table
// with what PostgreSQL computes for its row with f.expect: the same
// fields, the same values.
func compareWithPostgres(t *testing.T, ctx context.Context, conn *pgx.Conn, f typeFamily, table string, got typesTopic) {
	t.Helper()
	rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT id::text, (%s)::text FROM %s ORDER BY id`, f.expect, table))
	if err != nil {
		t.Fatalf("%v\n%s", err, f.expect)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id, js string
		if err := rows.Scan(&id, &js); err != nil {
			t.Fatal(err)
		}
		n++
		var want map[string]any
		d := json.NewDecoder(strings.NewReader(js))
		d.UseNumber()
		if err := d.Decode(&want); err != nil {
			t.Fatalf("PostgreSQL's JSON %s: %v", js, err)
		}
		after, _ := got.byID[id].Value["after"].(map[string]any)
		if after == nil {
			t.Errorf("%s row %s: missing from Kafka", table, id)
			continue
		}
		for col, w := range want {
			if g, w := canonJSON(t, after[col]), canonJSON(t, w); g != w {
				t.Errorf("%s row %s column %s: Apache Avro decoded %s, PostgreSQL has %s", table, id, col, g, w)
			}
		}
		for col := range after {
			if _, ok := want[col]; !ok && col != "id" {
				t.Errorf("%s row %s: field %s (%v) is not a captured column", table, id, col, after[col])
			}
		}
		for col, k := range got.byID[id].Key {
			if g, w := canonJSON(t, k), canonJSON(t, after[col]); g != w {
				t.Errorf("%s row %s: key field %s is %s, the after image has %s", table, id, col, g, w)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(f.rows) {
		t.Fatalf("PostgreSQL has %d rows in %s, want %d", n, table, len(f.rows))
	}
}

// checkFieldTypes checks the Avro type of the after image's fields in
// the value schema sv against want (null branches left out).
func checkFieldTypes(t *testing.T, sv string, want map[string]string) {
	t.Helper()
	type record struct {
		Fields []struct {
			Name string
			Type json.RawMessage
		}
	}
	var env, value record
	var before []json.RawMessage
	if err := json.Unmarshal([]byte(sv), &env); err != nil || len(env.Fields) == 0 || env.Fields[0].Name != "before" {
		t.Fatalf("value schema %s: want an envelope whose first field is before: %v", sv, err)
	}
	if err := json.Unmarshal(env.Fields[0].Type, &before); err != nil || len(before) != 2 {
		t.Fatalf("value schema %s: before is not [null, Value]: %v", sv, err)
	}
	if err := json.Unmarshal(before[1], &value); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range value.Fields {
		w, ok := want[f.Name]
		if !ok {
			continue
		}
		seen[f.Name] = true
		got := canonSchema(t, string(f.Type))
		var u []json.RawMessage
		if json.Unmarshal(f.Type, &u) == nil && len(u) == 2 && string(u[0]) == `"null"` {
			got = canonSchema(t, string(u[1]))
		}
		if got != canonSchema(t, w) {
			t.Errorf("field %s: Avro type %s, want %s", f.Name, got, w)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("no field %s in the value schema", name)
		}
	}
}

// without returns m without the keys given.
func without(m map[string]any, keys ...string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for _, k := range keys {
		delete(out, k)
	}
	return out
}

// registeredSchemas returns the registered key and value schemas of r.
func registeredSchemas(t *testing.T, registry string, r kafkaRecord) (key, value string) {
	t.Helper()
	return registeredSchema(t, registry, r.key), registeredSchema(t, registry, r.value)
}

func registeredSchema(t *testing.T, registry string, framed []byte) string {
	t.Helper()
	id := binary.BigEndian.Uint32(framed[1:5])
	resp, err := http.Get(fmt.Sprintf("%s/schemas/ids/%d", strings.TrimRight(registry, "/"), id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Schema string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("schema %d: %s %v", id, resp.Status, err)
	}
	return body.Schema
}

// canonSchema renders a schema's JSON canonically (object keys sorted).
func canonSchema(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("schema %s: %v", s, err)
	}
	return canonJSON(t, v)
}

func parseSchema(t *testing.T, s string) avro.Schema {
	t.Helper()
	sch, err := avro.ParseWithCache(s, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatalf("schema %s: %v", s, err)
	}
	return sch
}

// afterBytes returns the Avro binary of the after field (its union branch
// included) of a framed Debezium envelope.
func afterBytes(t *testing.T, envelope *avro.RecordSchema, framed []byte) []byte {
	t.Helper()
	fields := envelope.Fields()
	if fields[0].Name() != "before" || fields[1].Name() != "after" {
		t.Fatalf("envelope fields %s, %s: want before, after first", fields[0].Name(), fields[1].Name())
	}
	b := framed[5:]
	skip := &avroSkipper{b: b}
	skip.datum(fields[0].Type())
	start := skip.pos
	skip.datum(fields[1].Type())
	if skip.err != nil {
		t.Fatalf("reading the after image of %x: %v", b, skip.err)
	}
	return b[start:skip.pos]
}

// avroSkipper walks Avro binary data without decoding it, to find where a
// datum ends.
type avroSkipper struct {
	b   []byte
	pos int
	err error
}

func (d *avroSkipper) datum(s avro.Schema) {
	if d.err != nil {
		return
	}
	switch s := s.(type) {
	case *avro.NullSchema:
	case *avro.RefSchema:
		d.datum(s.Schema())
	case *avro.RecordSchema:
		for _, f := range s.Fields() {
			d.datum(f.Type())
		}
	case *avro.UnionSchema:
		i := d.long()
		if i < 0 || i >= int64(len(s.Types())) {
			d.fail("union branch %d of %d", i, len(s.Types()))
			return
		}
		d.datum(s.Types()[i])
	case *avro.ArraySchema:
		d.blocks(func() { d.datum(s.Items()) })
	case *avro.MapSchema:
		d.blocks(func() { d.skip(d.long()); d.datum(s.Values()) })
	case *avro.FixedSchema:
		d.skip(int64(s.Size()))
	case *avro.EnumSchema:
		d.long()
	case *avro.PrimitiveSchema:
		switch s.Type() {
		case avro.Boolean:
			d.skip(1)
		case avro.Int, avro.Long:
			d.long()
		case avro.Float:
			d.skip(4)
		case avro.Double:
			d.skip(8)
		case avro.Bytes, avro.String:
			d.skip(d.long())
		default:
			d.fail("primitive type %s", s.Type())
		}
	default:
		d.fail("schema type %s", s.Type())
	}
}

func (d *avroSkipper) blocks(item func()) {
	for d.err == nil {
		n := d.long()
		if n == 0 {
			return
		}
		if n < 0 {
			n = -n
			d.long() // the block's size in bytes
		}
		for ; n > 0 && d.err == nil; n-- {
			item()
		}
	}
}

func (d *avroSkipper) long() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.pos:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.pos += n
	return v
}

func (d *avroSkipper) skip(n int64) {
	if d.err == nil && (n < 0 || n > int64(len(d.b)-d.pos)) {
		d.fail("%d bytes past the end", n)
	}
	if d.err == nil {
		d.pos += int(n)
	}
}

func (d *avroSkipper) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("at byte %d: "+format, append([]any{d.pos}, args...)...)
	}
}

// goDecode decodes a framed value with hamba/avro's generic decoder.
func goDecode(t *testing.T, dec *schema.Decoder, framed []byte) map[string]any {
	t.Helper()
	v, err := dec.Decode(context.Background(), framed)
	if err != nil {
		t.Fatal(err)
	}
	return plain(v).(map[string]any)
}

// canonJSON renders a decoded JSON value canonically (object keys sorted,
// numbers as written).
func canonJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
