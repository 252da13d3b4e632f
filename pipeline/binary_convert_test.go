package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/schema"
)

// TestBinaryConvertersMatchText asks PostgreSQL for random and edge values
// of every binary-safe type in both forms pgoutput sends, the output
// function's text (in the walsender's session settings) and the send
// function's bytes, and checks that the codec writes the same Avro bytes
// (or fails alike) from both; for key types, that schema.AppendBinaryText
// renders the send bytes as exactly the text.
func TestBinaryConvertersMatchText(t *testing.T) {
	cluster.SkipBelow(t, 14, "pgoutput's binary option")
	db := cluster.NewDatabase(t)
	conn := db.Conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, set := range []string{`SET client_encoding = 'UTF8'`, `SET DateStyle = 'ISO, YMD'`, `SET TimeZone = 'UTC'`,
		`SET extra_float_digits = 3`, `SET bytea_output = 'hex'`, `SELECT setseed(0.5)`} {
		if _, err := conn.Exec(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	const n = 3000
	cases := []struct {
		typ    string // SQL type
		name   string // pg_type.typname
		typmod int32
		random string // an expression of a random value
		edges  string // edge values, a VALUES list
	}{
		{"boolean", "bool", -1, `random() < 0.5`, `(true), (false)`},
		{"smallint", "int2", -1, `(random() * 65535 - 32768)::int2`, `(-32768), (32767), (0)`},
		{"integer", "int4", -1, `(random() * 4294967295 - 2147483648)::int4`, `(-2147483648), (2147483647), (0)`},
		{"bigint", "int8", -1, `((random() - 0.5) * 1.8e19)::numeric::int8`, `(-9223372036854775808), (9223372036854775807), (0)`},
		{"oid", "oid", -1, `(random() * 4294967295)::int8::oid`, `(0), (4294967295)`},
		{"real", "float4", -1, `((random() - 0.5) * 10 ^ (random() * 70 - 35)::int)::real`,
			`('NaN'), ('Infinity'), ('-Infinity'), ('-0'), (1e-45), (3.4028235e38), ('Infinity'::real - 'Infinity'::real)`},
		{"double precision", "float8", -1, `(random() - 0.5) * 10 ^ (random() * 600 - 300)::int`,
			`('NaN'), ('Infinity'), ('-Infinity'), ('-0'), (5e-324), (1.7976931348623157e308), ('Infinity'::float8 - 'Infinity'::float8)`},
		{"numeric", "numeric", -1, `round(((random() - 0.5) * 10 ^ (random() * 60 - 30)::int)::numeric, (random() * 40)::int)`,
			`('NaN'), ('Infinity'), ('-Infinity'), (0), (0.000), (-0.001), (1e100), (1e-100), (10000), (9999.9999), (123456789012345678901234567890.123456789000)`},
		{"numeric(12,3)", "numeric", (12<<16 | 3) + 4, `round(((random() - 0.5) * 1e9)::numeric, 3)`,
			`(0), (-999999999.999), (999999999.999), (0.001), (-0.001), (1)`},
		{"numeric(5,-2)", "numeric", (5<<16 | (-2 & 0x7ff)) + 4, `round(((random() - 0.5) * 1e7)::numeric, -2)`,
			`(0), (9999900), (-9999900), (100)`},
		{"numeric(40,30)", "numeric", (40<<16 | 30) + 4, `round(((random() - 0.5) * 1e10)::numeric, 30)`,
			`(0), (-9999999999.999999999999999999999999999999), (0.000000000000000000000000000001)`},
		{"text", "text", -1, `md5(random()::text)`, `(''), ('héllo'), (E'tab\tnl\n')`},
		{"varchar(40)", "varchar", 44, `md5(random()::text)`, `(''), ('x')`},
		{"char(5)", "bpchar", 9, `left(md5(random()::text), (random() * 5)::int)`, `(''), ('ab')`},
		{"name", "name", -1, `md5(random()::text)`, `(''), ('x')`},
		{"bytea", "bytea", -1, `decode(md5(random()::text), 'hex')`, `('\x'), ('\x00'), ('\xff00')`},
		{"uuid", "uuid", -1, `md5(random()::text)::uuid`, `('00000000-0000-0000-0000-000000000000'), ('ffffffff-ffff-ffff-ffff-ffffffffffff')`},
		{"date", "date", -1, `date '2000-01-01' + ((random() - 0.5) * 4e6)::int`,
			`('infinity'), ('-infinity'), ('4713-01-01 BC'), ('5874897-12-31'), ('0001-01-01'), ('0001-12-31 BC'), ('1970-01-01')`},
		{"time", "time", -1, `time '00:00' + random() * interval '24 hours'`, `('00:00'), ('24:00:00'), ('23:59:59.999999')`},
		{"timestamp", "timestamp", -1, `timestamp '2000-01-01' + (random() - 0.5) * interval '4000000 days'`,
			`('infinity'), ('-infinity'), ('4713-01-01 00:00:00 BC'), ('200000-01-01 00:00:00'), ('1969-12-31 23:59:59.999999'), ('294276-12-31 23:59:59.999999')`},
		{"timestamptz", "timestamptz", -1, `timestamptz '2000-01-01 00:00:00+00' + (random() - 0.5) * interval '4000000 days'`,
			`('infinity'), ('-infinity'), ('4713-01-01 00:00:00+00 BC'), ('200000-01-01 00:00:00+05:30'), ('1969-12-31 23:59:59.999999+00'), ('294276-12-31 23:59:59.999999+00')`},
		{"json", "json", -1, `json_build_object('a', random(), 'b', md5(random()::text))`, `('{}'), ('null'), ('[1, 2 ]')`},
		{"jsonb", "jsonb", -1, `jsonb_build_object('a', random(), 'b', md5(random()::text))`, `('{}'), ('null'), ('{"é": [1.50, {"b": null}]}')`},
	}
	for _, c := range cases {
		t.Run(c.typ, func(t *testing.T) {
			st := schema.Type{Name: c.name, Typmod: c.typmod}
			if !schema.BinarySafe(st) {
				t.Fatalf("%s is not binary-safe", c.name)
			}
			// Numerics as decimals (NaN and infinities null) and as strings.
			var codecs []*schema.Codec
			for _, f := range []schema.FormatConfig{{NonFiniteDecimal: "null"}, {DecimalHandling: "string"}} {
				codec, err := schema.NewCodec(schema.Table{
					Topic: "t", Namespace: "t.public.t", Schema: "public", Name: "t",
					Columns: []schema.Column{{Name: "v", Type: st, Nullable: true}},
				}, f, schema.Source{Version: "test", Connector: "postgresql", Name: "t", DB: "t"})
				if err != nil {
					t.Fatal(err)
				}
				codecs = append(codecs, codec)
			}
			var send string
			if err := conn.QueryRow(ctx, `SELECT typsend::text FROM pg_type WHERE oid = $1::regtype`, c.typ).Scan(&send); err != nil {
				t.Fatal(err)
			}
			q := fmt.Sprintf(`SELECT concat(v), %[1]s(v) FROM (SELECT (%[2]s)::%[3]s FROM generate_series(1, %[4]d)
				UNION ALL SELECT v::%[3]s FROM (VALUES %[5]s) e(v)) s(v)`, send, c.random, c.typ, n, c.edges)
			rows, err := conn.Query(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var (
				count, failed int
				text, bin     []byte
				a, b, kt      []byte
			)
			for rows.Next() {
				if err := rows.Scan(&text, &bin); err != nil {
					t.Fatal(err)
				}
				count++
				for _, codec := range codecs {
					ea, erra := codec.AppendValue(a[:0], &schema.Event{Op: schema.OpCreate, After: []schema.Datum{{Text: text}}})
					eb, errb := codec.AppendValue(b[:0], &schema.Event{Op: schema.OpCreate, After: []schema.Datum{{Text: bin, Binary: true}}})
					a, b = ea, eb
					if erra != nil {
						failed++
					}
					if (erra == nil) != (errb == nil) || !bytes.Equal(a, b) {
						t.Errorf("%s %q (send %x): text gives %x (%v), binary %x (%v)", c.typ, text, bin, a, erra, b, errb)
					}
				}
				if schema.BinaryKeyText(st) {
					kt, err = schema.AppendBinaryText(kt[:0], st, bin)
					if err != nil || !bytes.Equal(kt, text) {
						t.Errorf("%s %q: AppendBinaryText of %x gives %q (%v)", c.typ, text, bin, kt, err)
					}
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if count < n {
				t.Fatalf("%d values", count)
			}
			t.Logf("%d values, %d encodings out of Avro's range on both paths", count, failed)
		})
	}
}
