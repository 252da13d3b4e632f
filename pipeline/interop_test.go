package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestReadByKcatAndApacheAvro reads the topic with kcat (librdkafka) and
// decodes it with the Apache Avro reference implementation (python3-avro),
// no code of ours on the read side, and compares every value with what
// PostgreSQL prints.
func TestReadByKcatAndApacheAvro(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is needed (make deps installs it):", err)
	}
	python := "/usr/bin/python3" // Debian's python3-avro serves this one
	if out, err := exec.Command(python, "-c", "import avro.io, avro.schema").CombinedOutput(); err != nil {
		t.Fatalf("python3-avro is needed (make deps installs it): %v %s", err, out)
	}

	e := newEnv(t, "public.typed")
	e.db.Exec(t, `CREATE TABLE typed (
		id int PRIMARY KEY, name text, price numeric(10,2), big bigint, f float8, flag boolean,
		at timestamptz, d date, data bytea, u uuid, j jsonb)`)
	e.start(t)
	e.db.Exec(t, `INSERT INTO typed VALUES
		(1, 'Zoë "quoted"', 12.50, 9007199254740993, 1.5, true, '2024-02-29 23:59:58.123456+02', '1999-12-31', '\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2]}'),
		(2, NULL, -0.01, -1, -2.25e-10, false, '1970-01-01 00:00:00.000001+00', '2038-01-19', '\x', NULL, NULL)`)
	e.db.Exec(t, `UPDATE typed SET name = 'changed' WHERE id = 2`)
	e.db.Exec(t, `DELETE FROM typed WHERE id = 1`)
	topic := "test.public.typed"
	e.consume(t, []string{topic}, 20*time.Second, atLeast(5)) // c c u d tombstone

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kc := exec.CommandContext(ctx, kcat, "-C", "-b", strings.Join(e.broker.ListenAddrs(), ","), "-t", topic,
		"-o", "beginning", "-e", "-q", "-f", "%K %S\n%k%s")
	raw, err := kc.Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	py := exec.CommandContext(ctx, python, "testdata/avro_decode.py", e.reg.URL())
	py.Stdin = bytes.NewReader(raw)
	var stderr bytes.Buffer
	py.Stderr = &stderr
	out, err := py.Output()
	if err != nil {
		t.Fatalf("python3-avro: %v\n%s", err, stderr.String())
	}
	type record struct {
		Key   map[string]any
		Value map[string]any
	}
	var recs []record
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	for dec.More() {
		var r record
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("%v in %s", err, out)
		}
		recs = append(recs, r)
	}
	if len(recs) != 5 {
		t.Fatalf("kcat read %d records, want 5:\n%s", len(recs), out)
	}
	var opsSeen []string
	for _, r := range recs {
		if r.Value == nil {
			opsSeen = append(opsSeen, "tombstone")
			continue
		}
		opsSeen = append(opsSeen, fmt.Sprint(r.Value["op"]))
	}
	if got := strings.Join(opsSeen, ","); got != "c,c,u,d,tombstone" {
		t.Fatalf("ops %s:\n%s", got, out)
	}

	// What PostgreSQL prints, in the renderings the Python side uses.
	want := pgRows(t, e.db, `SELECT id::text, coalesce(name, '<null>') AS name, price::text, big::text, f::text, flag::text,
		to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00' AS at, d::text,
		'hex:' || encode(data, 'hex') AS data, coalesce(u::text, '<null>') AS u, coalesce(j::text, '<null>') AS j FROM typed`, "id")
	// Row 1 as inserted (it is deleted now): its insert record; row 2: the update.
	first := map[string]string{"id": "1", "name": `Zoë "quoted"`, "price": "12.50", "big": "9007199254740993", "f": "1.5", "flag": "true",
		"at": "2024-02-29T21:59:58.123456+00:00", "d": "1999-12-31", "data": "hex:00ff10", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "j": `{"a": [1, 2]}`}
	check := func(what string, after map[string]any, want map[string]string) {
		t.Helper()
		for col, w := range want {
			v := after[col]
			got := "<null>"
			switch x := v.(type) {
			case nil:
			case string:
				got = x
			case json.Number:
				got = x.String()
			case bool:
				got = fmt.Sprint(x)
			default:
				got = fmt.Sprint(x)
			}
			if col == "f" {
				// Both sides print the shortest exact rendering of the double.
				var a, b float64
				fmt.Sscan(got, &a)
				fmt.Sscan(w, &b)
				if a == b {
					continue
				}
			}
			if got != w {
				t.Errorf("%s: column %s decoded by Apache Avro as %q, PostgreSQL has %q", what, col, got, w)
			}
		}
	}
	check("insert of row 1", recs[0].Value["after"].(map[string]any), first)
	row2 := map[string]string{}
	for k, v := range want[fmt.Sprint(sortedMap(map[string]any{"id": "2"}))] {
		row2[k] = fmt.Sprint(v)
	}
	if len(row2) == 0 {
		t.Fatalf("row 2 missing from PostgreSQL: %v", want)
	}
	check("update of row 2", recs[2].Value["after"].(map[string]any), row2)
	if k := recs[3].Key; fmt.Sprint(k["id"]) != "1" {
		t.Errorf("delete key decoded by Apache Avro: %v", k)
	}
	if src := recs[0].Value["source"].(map[string]any); src["connector"] != "postgresql" || src["table"] != "typed" {
		t.Errorf("source decoded by Apache Avro: %v", src)
	}
}
