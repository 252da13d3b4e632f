package pipeline_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTypesReadAsJSON captures TestTypesReadByApacheAvro's type families
// with format.encoding json and schemas on, once by backfill and once by
// streaming, reads the topics with kcat, decodes them with python3's json
// module (testdata/json_types.py, rendering as avro_types.py does) and
// compares every value with what PostgreSQL computes: the JSON carries the
// values the Avro does. Each row's key and after image are the same bytes
// whether backfilled or streamed.
func TestTypesReadAsJSON(t *testing.T) {
	families := typeFamilies()
	if cluster.Major() < 15 {
		t.Skipf("the families' extreme intervals need PostgreSQL 15; this server is PostgreSQL %d (TestTypesReadByApacheAvro covers the older ones)", cluster.Major())
	}
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is needed (make deps installs it):", err)
	}
	e := newEnv(t, typeBindings(families)...)
	e.cfg.Format.Encoding = "json"
	e.cfg.Format.NonFiniteDecimal = "null"
	e.db.Exec(t, `SET client_encoding = 'UTF8'`)
	for _, ddl := range []string{`CREATE EXTENSION hstore`, `CREATE EXTENSION citext`, `CREATE TYPE mood AS ENUM ('happy', 'sad')`,
		`CREATE TYPE pair AS (n int, s text)`, `CREATE DOMAIN cents AS numeric(6,2)`, `CREATE DOMAIN posint AS int CHECK (VALUE > 0)`,
		`CREATE DOMAIN tags AS text[]`, `CREATE DOMAIN stamp AS timestamptz`, `CREATE DOMAIN code AS varchar(4)`} {
		e.db.Exec(t, ddl)
	}
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
	for _, set := range []string{`SET client_encoding = 'UTF8'`, `SET DateStyle = 'ISO, YMD'`, `SET TimeZone = 'UTC'`, `SET IntervalStyle = 'iso_8601'`, `SET extra_float_digits = 3`, `SET bytea_output = 'hex'`} {
		if _, err := conn.Exec(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	brokers := strings.Join(e.broker.ListenAddrs(), ",")
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			streamed := readTypesTopic(t, ctx, kcat, brokers, "python3", "", "test.public."+f.name, "c", len(f.rows))
			backfilled := readTypesTopic(t, ctx, kcat, brokers, "python3", "", "test.public."+f.name+"_bf", "r", len(f.rows))
			compareWithPostgres(t, ctx, conn, f, f.name, streamed)
			compareWithPostgres(t, ctx, conn, f, f.name+"_bf", backfilled)
			for id, s := range streamed.byID {
				b, ok := backfilled.byID[id]
				if !ok {
					t.Errorf("row %s streamed but not backfilled", id)
					continue
				}
				rename := strings.NewReplacer("public."+f.name+"_bf.", "public."+f.name+".")
				if g, w := rename.Replace(string(backfilled.records[b.index].key)), string(streamed.records[s.index].key); g != w {
					t.Errorf("row %s: key %s (backfilled), %s (streamed)", id, g, w)
				}
				if g, w := canonJSON(t, b.Value["after"]), canonJSON(t, s.Value["after"]); g != w {
					t.Errorf("row %s: after\n  %s (backfilled)\n  %s (streamed)", id, g, w)
				}
				if !slices.Contains([]string{"false"}, fmt.Sprint(s.Value["source"].(map[string]any)["snapshot"])) {
					t.Errorf("row %s: streamed source.snapshot %v", id, s.Value["source"])
				}
			}
		})
	}
}
