package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pipeline"
	"github.com/pgkafka/pgkafka/schema"
)

// binaryTable has a column of every type pgkafka decodes in binary
// pgoutput (schema.BinarySafe), a domain, a key of binary-rendered types
// (int8, uuid) and a TOASTed bytea.
const binaryTable = `CREATE TABLE bin (
	id bigint, u uuid, b boolean, i2 smallint, i4 integer, o oid, f4 real, f8 double precision,
	d numeric(12,3), dn numeric(5,-2), n numeric, dom cents, t text, vc varchar(10), c char(5), nm name,
	by bytea, dt date, tm time, ts timestamp, tz timestamptz, j json, jb jsonb, big bytea,
	PRIMARY KEY (id, u))`

// binaryRows are edge values: extremes, NaN and infinities, -0, BC and far
// future dates, empty strings, nulls.
var binaryRows = []string{
	`(-9223372036854775808, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, -32768, -2147483648, 0, 'NaN', 'NaN', 123456789.123, 1234500, 'NaN', 9999.99,
	  '', '', '', '', '\x', '4713-01-01 BC', '00:00:00', '4713-01-01 00:00:00 BC', '4713-01-01 00:00:00+00 BC', '{}', '{}', NULL)`,
	`(9223372036854775807, '00000000-0000-0000-0000-000000000000', false, 32767, 2147483647, 4294967295, 'Infinity', 'Infinity', -0.001, -99900, 'Infinity', -9999.99,
	  'héllo wörld', 'x', 'ab', 'nm', '\x00ff', 'infinity', '24:00:00', 'infinity', 'infinity', '[1, 2]', '{"a": [1, {"b": null}], "é": 1.50}', NULL)`,
	`(0, 'ffffffff-ffff-ffff-ffff-ffffffffffff', NULL, 0, 0, 1, '-Infinity', '-Infinity', 0, 0, '-Infinity', 0,
	  'x', 'y', 'z', 'w', '\x01', '-infinity', '23:59:59.999999', '-infinity', '-infinity', 'null', 'null', NULL)`,
	`(1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', true, 1, 1, 26, '-0', '-0', -999999999.999, 100, '-0.000000000000000000001', 0.01,
	  'a', 'b', 'c', 'd', '\xdeadbeef', '5874897-12-31', '12:34:56.5', '200000-01-01 00:00:00', '10000-01-01 00:00:00.000001+05:30', '"s"', '[]', NULL)`,
	`(2, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13', false, -1, -1, 2, 3.4028235e38, 1.7976931348623157e308, 0.5, -100, '123456789012345678901234567890.123456789000', -0.5,
	  'tab	and newline
	 ', 'vc', 'cc', 'nn', '\x', '2024-02-29', '00:00:00.000001', '2024-02-29 12:34:56.789', '2024-02-29 12:34:56.789-08', '{"k": "v"}', '{"k": "v"}', NULL)`,
	`(3, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a14', true, 7, 7, 3, 1e-45, 5e-324, 1, 0, 1e100, 1,
	  'x', 'x', 'x', 'x', '\x00', '0001-01-01', '01:02:03', '0001-01-01 00:00:00', '1969-12-31 23:59:59.999999+00', '1', '1', NULL)`,
	`(4, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a15', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
}

// binaryChanges run after the inserts: an update leaving the TOASTed big
// unchanged (filled from the reconciler's cache), an update of the key
// (a delete and a create), deletes (a key-only before image).
var binaryChanges = []string{
	`UPDATE bin SET big = (SELECT decode(string_agg(md5(g::text), ''), 'hex') FROM generate_series(1, 1000) g) WHERE id = 1`,
	`UPDATE bin SET i4 = 42, n = 0.1 WHERE id = 1`,
	`UPDATE bin SET id = 5 WHERE id = 2`,
	`DELETE FROM bin WHERE id = 3`,
	`DELETE FROM bin WHERE id = -9223372036854775808`,
}

// TestBinaryPgoutputMatchesText captures the same table and changes twice,
// with pgoutput in text and in binary mode, and checks that every Kafka
// record is the same: the same key bytes, the same before and after image
// bytes, the same op, and the same decoded values. It also checks that the
// second capture did stream binary (the walsender's START_REPLICATION).
func TestBinaryPgoutputMatchesText(t *testing.T) {
	cluster.SkipBelow(t, 14, "pgoutput's binary option")
	text := captureBinaryTable(t, "off")
	bin := captureBinaryTable(t, "on")
	if len(text) != len(bin) {
		t.Fatalf("text mode wrote %d records, binary mode %d", len(text), len(bin))
	}
	for i := range text {
		a, b := text[i], bin[i]
		if a.op != b.op || !bytes.Equal(a.key, b.key) || !bytes.Equal(a.before, b.before) || !bytes.Equal(a.after, b.after) {
			t.Errorf("record %d differs: text op=%s key=%x, binary op=%s key=%x; %s",
				i, a.op, a.key, b.op, b.key, imageDiff(a.decoded, b.decoded))
		}
	}
}

// imageDiff names the fields of the before and after images whose decoded
// values differ between two records' values, each cut to 80 characters.
func imageDiff(a, b map[string]any) string {
	cut := func(v any) string {
		s := fmt.Sprint(v)
		if len(s) > 80 {
			s = s[:80] + "..."
		}
		return s
	}
	var out []string
	for _, image := range []string{"before", "after"} {
		ai, _ := a[image].(map[string]any)
		bi, _ := b[image].(map[string]any)
		if (ai == nil) != (bi == nil) {
			out = append(out, fmt.Sprintf("%s: text %s, binary %s", image, cut(ai), cut(bi)))
			continue
		}
		for k, av := range ai {
			if bv := bi[k]; !reflect.DeepEqual(av, bv) {
				out = append(out, fmt.Sprintf("%s.%s: text %s, binary %s", image, k, cut(av), cut(bv)))
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// binRecord is one record of a capture of binaryTable.
type binRecord struct {
	op            string
	key           []byte
	before, after []byte // Avro binary of the images, union branch included
	decoded       map[string]any
}

// captureBinaryTable runs a capture with source.advanced.pgoutputBinary
// set to mode and returns the records of table bin, in order.
func captureBinaryTable(t *testing.T, mode string) []binRecord {
	t.Helper()
	e := newEnv(t, "public.bin")
	e.cfg.Source.Advanced.PgoutputBinary = mode
	e.cfg.Source.Advanced.SlotName = "bin_" + mode // slots are the cluster's
	e.db.Exec(t, `SET client_encoding = 'UTF8'`)
	e.db.Exec(t, `CREATE DOMAIN cents AS numeric(6,2)`)
	e.db.Exec(t, binaryTable)
	e.db.Exec(t, `INSERT INTO bin VALUES `+strings.Join(binaryRows[:2], ", "))
	e.start(t)
	for _, r := range binaryRows[2:] {
		e.db.Exec(t, `INSERT INTO bin VALUES `+r)
	}
	for _, c := range binaryChanges {
		e.db.Exec(t, c)
	}
	// Inserts, 2 updates, a key update (d, tombstone, c), 2 deletes with
	// their tombstones.
	want := len(binaryRows) + 2 + 3 + 4
	checkWalsenderBinary(t, e, mode == "on")

	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...), kgo.ConsumeTopics("test.public.bin"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	dec, err := schema.NewDecoder(schema.RegistryConfig{URL: e.reg.URL()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []binRecord
	var envelope *avro.RecordSchema
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("pgoutputBinary %s: %d of %d records after 60s", mode, len(out), want)
		}
		for _, fe := range fs.Errors() {
			t.Fatalf("fetch: %v", fe.Err)
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			x := decodeRec(t, dec, r)
			br := binRecord{op: x.Op, key: r.Key, decoded: x.Value}
			if x.Tombstone {
				br.op = "tombstone"
			} else {
				if envelope == nil {
					envelope = parseSchema(t, registeredSchema(t, e.reg.URL(), r.Value)).(*avro.RecordSchema)
				}
				br.before, br.after = imageBytes(t, envelope, r.Value)
			}
			out = append(out, br)
		}
	}
	return out
}

// imageBytes returns the Avro binary of the before and after fields of a
// framed Debezium envelope.
func imageBytes(t *testing.T, envelope *avro.RecordSchema, framed []byte) (before, after []byte) {
	t.Helper()
	after = afterBytes(t, envelope, framed)
	b := framed[5:]
	skip := &avroSkipper{b: b}
	skip.datum(envelope.Fields()[0].Type())
	if skip.err != nil {
		t.Fatalf("reading the before image of %x: %v", b, skip.err)
	}
	return b[:skip.pos], after
}

// checkWalsenderBinary checks, from pg_stat_activity, whether the
// capture's walsender streams with binary 'true'.
func checkWalsenderBinary(t *testing.T, e *env, want bool) {
	t.Helper()
	conn := e.db.Conn(t)
	var query string
	err := conn.QueryRow(context.Background(), `SELECT query FROM pg_stat_activity
		WHERE backend_type = 'walsender' AND datname = current_database() AND query LIKE 'START_REPLICATION%'`).Scan(&query)
	if err != nil {
		t.Fatalf("finding the walsender: %v", err)
	}
	if got := strings.Contains(query, "binary 'true'"); got != want {
		t.Fatalf("walsender binary %v, want %v: %s", got, want, query)
	}
}

// TestBinaryPgoutputAuto: auto streams binary when every published column
// has a type pgkafka decodes in binary, text when one does not (interval
// here) or when a key column's type is not rendered as text (timestamp);
// on refuses to start then, naming the column.
func TestBinaryPgoutputAuto(t *testing.T) {
	cases := []struct {
		name, ddl string
		binary    bool
		refusal   string // what on's error names; "" when on starts
	}{
		{"safe", `CREATE TABLE a (id int PRIMARY KEY, v numeric, s text)`, true, ""},
		{"interval", `CREATE TABLE a (id int PRIMARY KEY, v interval)`, false, `column "v" of public.a (interval)`},
		{"array", `CREATE TABLE a (id int PRIMARY KEY, v int[])`, false, `column "v" of public.a (_int4)`},
		{"timestamp key", `CREATE TABLE a (id timestamp PRIMARY KEY, v int)`, false, `key column "id" of public.a (timestamp)`},
	}
	for _, c := range cases {
		if cluster.Major() < pgsrc.BinaryMajor {
			// pgoutput has no binary option: auto streams text, on is
			// refused whatever the columns.
			c.binary, c.refusal = false, fmt.Sprintf("on needs PostgreSQL %d or later", pgsrc.BinaryMajor)
		}
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, "public.a")
			e.db.Exec(t, c.ddl)
			e.cfg.Source.Advanced.SlotName = "auto_" + strings.ReplaceAll(c.name, " ", "_")
			e.cfg.Source.Advanced.PgoutputBinary = "auto"
			rn := e.start(t)
			checkWalsenderBinary(t, e, c.binary)
			rn.stop(t)

			e.cfg.Source.Advanced.PgoutputBinary = "on"
			cfg := e.cfg
			cfg.SetDefaults()
			r, err := pipeline.NewRunner(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if c.refusal == "" {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = r.Run(ctx)
			if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), c.refusal) ||
				!strings.Contains(err.Error(), "source.advanced.pgoutputBinary") {
				t.Fatalf("on: got %v, want an error naming %s", err, c.refusal)
			}
		})
	}
}

// TestBinaryPgoutputColumnAdded: a column of a type pgkafka does not decode
// in binary, added while binary streams, stops a capture with
// pgoutputBinary: on, naming the column; with auto the capture restarts
// from its checkpoint, streams text, and the row arrives whole.
func TestBinaryPgoutputColumnAdded(t *testing.T) {
	cluster.SkipBelow(t, 14, "pgoutput's binary option")
	for _, mode := range []string{"auto", "on"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, "public.a")
			e.cfg.Source.Advanced.PgoutputBinary = mode
			e.cfg.Source.Advanced.SlotName = "added_" + mode
			e.db.Exec(t, `CREATE TABLE a (id int PRIMARY KEY, v numeric)`)
			rn := e.start(t)
			checkWalsenderBinary(t, e, true)
			e.db.Exec(t, `INSERT INTO a VALUES (1, 1.5)`)
			e.db.Exec(t, `ALTER TABLE a ADD COLUMN w interval`)
			e.db.Exec(t, `INSERT INTO a VALUES (2, 2.5, '1 day 2 hours')`)
			if mode == "on" {
				select {
				case err := <-rn.done:
					rn.done <- err // for the cleanup
					if err == nil || !strings.Contains(err.Error(), `column "w" of public.a`) || !strings.Contains(err.Error(), "pgoutputBinary") {
						t.Fatalf("Run: %v, want an error naming column w and pgoutputBinary", err)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("the capture goes on")
				}
				return
			}
			rs := e.consume(t, []string{"test.public.a"}, 60*time.Second, atLeast(2))
			got := state(rs, "test.public.a")
			row := got[sortedMap(map[string]any{"id": int32(2)})]
			if row == nil || fmt.Sprint(row["v"]) != "2.5" || row["w"] == nil {
				t.Fatalf("row 2 is %v, want v 2.5 and w set; records:\n%s", row, dump(rs))
			}
			checkWalsenderBinary(t, e, false)
		})
	}
}
