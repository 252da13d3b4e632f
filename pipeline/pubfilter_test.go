package pipeline_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/pipeline"
)

// TestPublicationColumnListAndRowFilter: a publication made by hand with
// column lists and row filters. Rows backfilled and rows streamed carry
// the same fields, only the published columns, only of rows the filter
// passes (an update moving a row out of the filter is a delete, into it a
// create), and each topic ends equal to SELECT <published columns> FROM t
// WHERE <filter>. A bound table the publication lacks is added to it, with
// every column.
func TestPublicationColumnListAndRowFilter(t *testing.T) {
	cluster.SkipBelow(t, 15, "publication column lists and row filters")
	e := newEnv(t, "public.orders", "public.events", "public.plain")
	e.cfg.Source.Advanced.BackfillChunkSize = 7
	// The row filter of a table whose updates and deletes are published
	// may use only replica identity columns: here an index on (id, region).
	e.db.Exec(t, `CREATE TABLE orders (
			id int PRIMARY KEY,
			region text NOT NULL,
			secret text,
			amount numeric(10,2),
			doubled int GENERATED ALWAYS AS (id * 2) STORED,
			note text
		);
		CREATE UNIQUE INDEX orders_ident ON orders (id, region);
		ALTER TABLE orders REPLICA IDENTITY USING INDEX orders_ident;
		INSERT INTO orders (id, region, secret, amount, note)
			SELECT g, (ARRAY['eu', 'us', 'apac'])[1 + g % 3], 'pw' || g, g * 1.5, 'n' || g FROM generate_series(1, 60) g;
		CREATE TABLE events (kind text, v int, payload text);
		INSERT INTO events SELECT CASE WHEN g % 4 = 0 THEN 'debug' ELSE 'info' END, g, 'p' || g FROM generate_series(1, 30) g;
		CREATE TABLE plain (id int PRIMARY KEY, v text);
		INSERT INTO plain VALUES (1, 'one');
		CREATE TABLE public.flow_watermarks (slot TEXT PRIMARY KEY, watermark TEXT);
		CREATE PUBLICATION flow_publication FOR TABLE
			orders (id, region, amount, note) WHERE (region = 'eu'),
			events (v, kind) WHERE (kind <> 'debug'),
			public.flow_watermarks
			WITH (publish_via_partition_root = true)`)
	rn := e.start(t)

	// Streamed: passes, does not pass, moves in, moves out.
	e.db.Exec(t, `INSERT INTO orders (id, region, secret, amount, note) VALUES (100, 'eu', 'x', 1, 'new eu'), (101, 'us', 'x', 2, 'new us');
		UPDATE orders SET amount = 99.5 WHERE id = 3;             -- eu: an update
		UPDATE orders SET amount = 77 WHERE id = 4;               -- us: nothing
		UPDATE orders SET secret = 'changed' WHERE id = 6;        -- eu, unpublished column: an update all the same
		UPDATE orders SET region = 'eu', note = 'moved in' WHERE id = 7;   -- us to eu: a create
		UPDATE orders SET region = 'us' WHERE id = 9;             -- eu to us: a delete
		DELETE FROM orders WHERE id IN (12, 13);                  -- eu and us: one delete
		INSERT INTO events VALUES ('info', 100, 'x'), ('debug', 101, 'x');
		INSERT INTO plain VALUES (2, 'two'); UPDATE plain SET v = 'uno' WHERE id = 1`)

	ordersTopic, eventsTopic, plainTopic := "test.public.orders", "test.public.events", "test.public.plain"
	wantOrders := pgRows(t, e.db, `SELECT id, region, amount::float8 AS amount, note FROM orders WHERE region = 'eu'`, "id")
	wantEvents := eventRows(pgRows(t, e.db, `SELECT kind, v FROM events WHERE kind <> 'debug'`, "v"))
	wantPlain := pgRows(t, e.db, `SELECT id, v FROM plain`, "id")
	giveUp := time.Now().Add(30 * time.Second) // then the comparisons below show the difference
	rs := e.consume(t, []string{ordersTopic, eventsTopic, plainTopic}, time.Minute, func(rs []rec) bool {
		return time.Now().After(giveUp) ||
			fmt.Sprint(stringify(state(rs, ordersTopic))) == fmt.Sprint(stringify(wantOrders)) &&
				slices.Equal(eventRows(afters(rs, eventsTopic)), wantEvents) &&
				fmt.Sprint(stringify(state(rs, plainTopic))) == fmt.Sprint(stringify(wantPlain))
	})
	rn.stop(t)

	sameRows(t, state(rs, ordersTopic), wantOrders)
	if got := eventRows(afters(rs, eventsTopic)); !slices.Equal(got, wantEvents) {
		t.Errorf("events:\n got %v\nwant %v", got, wantEvents)
	}
	sameRows(t, state(rs, plainTopic), wantPlain)

	// Every record of a table has the same fields, backfilled or streamed:
	// the published columns.
	fields := map[string]string{ordersTopic: "amount id note region", eventsTopic: "kind v", plainTopic: "id v"}
	var streamed []string
	reads := map[string]int{}
	for _, r := range rs {
		for _, row := range []map[string]any{r.Before, r.After} {
			if row == nil {
				continue
			}
			if got := sortedKeys(row); got != fields[r.Topic] {
				t.Errorf("%s %s record with fields %q, want %q", r.Topic, r.Op, got, fields[r.Topic])
			}
		}
		if r.Topic == ordersTopic && r.After != nil && r.After["region"] != "eu" {
			t.Errorf("an orders record of a row the filter does not pass: %+v", r)
		}
		if r.Topic == eventsTopic && r.After["kind"] == "debug" {
			t.Errorf("an events record of a row the filter does not pass: %+v", r)
		}
		if r.Op == "r" {
			reads[r.Topic]++
		} else if r.Topic == ordersTopic {
			op := r.Op
			if r.Tombstone {
				op = "tombstone"
			}
			streamed = append(streamed, fmt.Sprintf("%s:%v", op, r.Key["id"]))
		}
	}
	if reads[ordersTopic] != 20 || reads[eventsTopic] != 23 || reads[plainTopic] != 1 {
		t.Errorf("backfilled %v, want 20 orders (region eu), 23 events (not debug), 1 plain", reads)
	}
	want := []string{"c:100", "u:3", "u:6", "c:7", "d:9", "tombstone:9", "d:12", "tombstone:12"}
	if !slices.Equal(streamed, want) {
		t.Errorf("streamed orders records %v, want %v", streamed, want)
	}
	// One schema per subject: the backfill's and the stream's are the same.
	for _, topic := range []string{ordersTopic, eventsTopic, plainTopic} {
		if vs := e.versions(topic + "-value"); len(vs) != 1 {
			t.Errorf("%s: %d value schemas registered, want 1 (r and c records of the same shape)", topic, len(vs))
		}
	}
}

// TestPublicationLeavingOutKeyRefused: a column list without the table's
// key columns stops the capture at start, naming the table, the
// publication and the columns.
func TestPublicationLeavingOutKeyRefused(t *testing.T) {
	cluster.SkipBelow(t, 15, "publication column lists and row filters")
	e := newEnv(t, "public.t")
	e.db.Exec(t, `CREATE TABLE t (id int PRIMARY KEY, v text);
		CREATE PUBLICATION flow_publication FOR TABLE t (v) WITH (publish = 'insert')`)
	cfg := e.cfg
	cfg.SetDefaults()
	r, err := pipeline.NewRunner(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = r.Run(ctx)
	if err == nil {
		t.Fatal("Run succeeded")
	}
	for _, want := range []string{"table public.t", `publication "flow_publication"`, "key column(s) id", `ADD TABLE "public"."t" ("v", "id")`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// afters are the after images of a topic's records.
func afters(rs []rec, topic string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for i, r := range rs {
		if r.Topic == topic && r.After != nil {
			out[fmt.Sprint(i)] = r.After
		}
	}
	return out
}

// eventRows renders rows as sorted "kind/v" strings.
func eventRows(rows map[string]map[string]any) []string {
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprintf("%v/%v", r["kind"], r["v"]))
	}
	sort.Strings(out)
	return out
}

func sortedKeys(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, " ")
}

// TestPublicationColumnListChanged: a column list changed while pgkafka
// streams reaches it as a new shape of the table: a new schema version.
func TestPublicationColumnListChanged(t *testing.T) {
	cluster.SkipBelow(t, 15, "publication column lists and row filters")
	e := newEnv(t, "public.t")
	e.db.Exec(t, `CREATE TABLE t (id int PRIMARY KEY, a text, b text);
		INSERT INTO t VALUES (1, 'a1', 'b1');
		CREATE TABLE public.flow_watermarks (slot TEXT PRIMARY KEY, watermark TEXT);
		CREATE PUBLICATION flow_publication FOR TABLE t (id, a), public.flow_watermarks`)
	rn := e.start(t)
	e.db.Exec(t, `INSERT INTO t VALUES (2, 'a2', 'b2')`)
	e.db.Exec(t, `ALTER PUBLICATION flow_publication SET TABLE t (id, a, b), public.flow_watermarks`)
	e.db.Exec(t, `INSERT INTO t VALUES (3, 'a3', 'b3')`)
	topic := "test.public.t"
	rs := e.consume(t, []string{topic}, 30*time.Second, atLeast(3))
	rn.stop(t)
	var got []string
	for _, r := range rs {
		got = append(got, r.Op+":"+sortedKeys(r.After))
	}
	if want := []string{"r:a id", "c:a id", "c:a b id"}; !slices.Equal(got, want) {
		t.Errorf("records %v, want %v", got, want)
	}
	if vs := e.versions(topic + "-value"); len(vs) != 2 {
		t.Errorf("%d value schemas, want 2", len(vs))
	}
}
