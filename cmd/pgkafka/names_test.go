package main

import (
	"strings"
	"testing"
	"time"
)

// TestCaptureUnderNamesAsWritten: a publication, a watermarks table (schema
// and table) and a captured table whose names PostgreSQL takes only quoted
// (upper case, spaces, double and single quotes, a comma) pass the
// configuration, `check` and `discover`, and a capture under them backfills
// the table and streams a change.
func TestCaptureUnderNamesAsWritten(t *testing.T) {
	s := newStack(t)
	s.db.Exec(t, `CREATE SCHEMA "Sales Dept"; CREATE TABLE "Sales Dept"."Line ""Items""" (id int PRIMARY KEY, v text);
		INSERT INTO "Sales Dept"."Line ""Items""" VALUES (1, 'backfilled'), (2, 'backfilled');
		CREATE SCHEMA "Ops ""Team"""`)
	cfg := s.config(t, "postgres", cluster.SuperuserPassword(), `  - resource: {namespace: Sales Dept, stream: 'Line "Items"', syncMode: incremental}`)
	path := tune(t, cfg, "", `    publicationName: 'My "Pub", it''s'
    slotName: logical
    watermarksTable: 'Ops "Team".Water ''Marks'''
`)
	if code, out := pgkafka(t, "check", "-c", path); code != 0 {
		t.Fatalf("check: exit %d\n%s", code, out)
	}
	c := startCapture(t, path)
	s.db.Exec(t, `INSERT INTO "Sales Dept"."Line ""Items""" VALUES (3, 'streamed')`)
	topic := `it.Sales_Dept.Line__Items_`
	var got []string
	for deadline := time.Now().Add(30 * time.Second); ; {
		got = got[:0]
		for _, m := range readTopic(t, s.broker.ListenAddrs(), s.reg.URL(), topic) {
			v := m["_value"].(map[string]any)
			got = append(got, v["op"].(string)+":"+v["after"].(map[string]any)["v"].(string))
		}
		if len(got) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s holds %v after 30s, want two 'r' and a 'c':\n%s", topic, got, c.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if want := "r:backfilled r:backfilled c:streamed"; strings.Join(got, " ") != want {
		t.Fatalf("topic %s holds %v, want %s", topic, got, want)
	}
	c.stop(t)

	var pub, wm string
	conn := s.db.Conn(t)
	if err := conn.QueryRow(t.Context(), `SELECT pubname::text, string_agg(schemaname || '.' || tablename, ',' ORDER BY schemaname)
		FROM pg_publication_tables GROUP BY pubname`).Scan(&pub, &wm); err != nil {
		t.Fatal(err)
	}
	if pub != `My "Pub", it's` || wm != `Ops "Team".Water 'Marks',Sales Dept.Line "Items"` {
		t.Errorf("publication %q of %s", pub, wm)
	}
	code, out := pgkafka(t, "discover", "-c", path)
	if code != 0 || !strings.Contains(out, `stream: "Line \"Items\""`) || strings.Contains(out, "Marks") {
		t.Errorf("discover: exit %d, want the captured table and not the watermarks table:\n%s", code, out)
	}
}
