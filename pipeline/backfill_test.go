package pipeline_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

// TestBackfillThenStream: rows that exist at the first start arrive as 'r'
// records, snapshot set, then changes stream.
func TestBackfillThenStream(t *testing.T) {
	e := newEnv(t, "public.items")
	e.cfg.Source.Advanced.BackfillChunkSize = 37
	e.db.Exec(t, `CREATE TABLE items (id int PRIMARY KEY, v text);
		INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 1000) g`)
	e.start(t)
	e.db.Exec(t, `UPDATE items SET v = 'changed' WHERE id = 500; DELETE FROM items WHERE id = 7; INSERT INTO items VALUES (1001, 'new')`)
	rs := e.consume(t, []string{"test.public.items"}, 30*time.Second, atLeast(1000+4))
	reads := 0
	for _, r := range rs[:1000] {
		if r.Op != "r" || r.Source["snapshot"] != "true" || r.Before != nil {
			t.Fatalf("backfill record %+v", r)
		}
		reads++
	}
	if got := ops(rs[1000:]); fmt.Sprint(got) != "[u d tombstone c]" {
		t.Fatalf("after the backfill: %v", got)
	}
	sameRows(t, state(rs, "test.public.items"), pgRows(t, e.db, `SELECT id, v FROM items`, "id"))
}

// TestBackfillInvariantUnderWrites backfills a table of 20k rows with a
// composite text+int key in chunks of 97 while a writer inserts, updates
// and deletes rows on both sides of the cursor: for every key the records
// never step back, never repeat a change, and end at the row's state.
func TestBackfillInvariantUnderWrites(t *testing.T) { backfillInvariantUnderWrites(t, "off") }

// TestBackfillInvariantUnderWritesBinary is TestBackfillInvariantUnderWrites
// with binary pgoutput: the stream's binary keys (text, int) are placed
// against the backfill's text cursor and chunk keys.
func TestBackfillInvariantUnderWritesBinary(t *testing.T) {
	cluster.SkipBelow(t, 14, "pgoutput's binary option")
	backfillInvariantUnderWrites(t, "on")
}

func backfillInvariantUnderWrites(t *testing.T, pgoutputBinary string) {
	e := newEnv(t, "public.kv")
	e.cfg.Source.Advanced.BackfillChunkSize = 97
	e.cfg.Source.Advanced.PgoutputBinary = pgoutputBinary
	labels := []string{"", " ", "  ", "a", "A", "a ", "b b", "é", "e", "Zoë", "zoe", "ß", "東京"}
	e.db.Exec(t, `CREATE TABLE kv (label text, n int, v int NOT NULL, PRIMARY KEY (label, n))`)
	e.db.Exec(t, fmt.Sprintf(`INSERT INTO kv SELECT (ARRAY[%s])[1 + g %% %d], g, 0 FROM generate_series(1, 20000) g`, quoted(labels), len(labels)))

	// The writer: v counts each row's updates; deleted keys never return.
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		conn := e.db.Conn(t)
		next := 20001
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			n := 1 + rand.IntN(20000)
			var err error
			switch i % 10 {
			case 0:
				_, err = conn.Exec(context.Background(), `INSERT INTO kv VALUES ($1, $2, 0)`, labels[rand.IntN(len(labels))], next)
				next++
			case 1:
				_, err = conn.Exec(context.Background(), `DELETE FROM kv WHERE n = $1`, n)
			case 2, 3:
				_, err = conn.Exec(context.Background(), `UPDATE kv SET v = v + 1 WHERE n IN ($1, $2)`, n, 1+rand.IntN(20000))
			default:
				// Rows spread over the whole key range: most chunks have
				// some changed between their watermarks.
				_, err = conn.Exec(context.Background(), `UPDATE kv SET v = v + 1 WHERE n % 89 = $1`, rand.IntN(89))
			}
			if err != nil {
				done <- err
				return
			}
		}
	}()
	rn := e.start(t)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := pgRows(t, e.db, `SELECT label, n, v FROM kv`, "label", "n")
	topic := "test.public.kv"
	giveUp := time.Now().Add(90 * time.Second) // then sameRows shows the difference
	rs := e.consume(t, []string{topic}, 2*time.Minute, func(rs []rec) bool {
		return time.Now().After(giveUp) || len(state(rs, topic)) == len(want) && fmt.Sprint(stringify(state(rs, topic))) == fmt.Sprint(stringify(want))
	})
	rn.stop(t)
	sameRows(t, state(rs, topic), want)

	reads := checkPerKey(t, rs, topic)
	if reads < 15000 {
		t.Errorf("only %d rows came by backfill", reads)
	}
	t.Logf("%d records, %d backfilled", len(rs), reads)
}

// checkPerKey checks DESIGN §3's invariant on topic's records, whose values
// hold a column v that every update increments: per key, the values
// strictly increase (no step back, no repeat), and nothing follows a
// delete. It returns how many 'r' records there were.
func checkPerKey(t *testing.T, rs []rec, topic string) (reads int) {
	t.Helper()
	type hist struct {
		vs      []int64
		deleted bool
	}
	per := map[string]*hist{}
	for _, r := range rs {
		if r.Topic != topic {
			continue
		}
		k := sortedMap(r.Key)
		h := per[k]
		if h == nil {
			h = &hist{}
			per[k] = h
		}
		switch {
		case r.Tombstone:
			continue
		case r.Op == "d":
			h.deleted = true
		default:
			if h.deleted {
				t.Errorf("%s key %s: a %s record after its delete", topic, k, r.Op)
			}
			var v int64
			fmt.Sscan(fmt.Sprint(r.After["v"]), &v)
			if n := len(h.vs); n > 0 && v <= h.vs[n-1] {
				t.Errorf("%s key %s: value %d after %d (op %s)", topic, k, v, h.vs[n-1], r.Op)
			}
			h.vs = append(h.vs, v)
			if r.Op == "r" {
				reads++
			}
		}
	}
	return reads
}

// TestBackfillKinds: a table without a key (read by ctid ranges), a table
// in skip_backfills, and a partitioned table read through its root.
func TestBackfillKinds(t *testing.T) {
	e := newEnv(t, "public.nokey", "public.skipped", "public.parted")
	e.cfg.Source.Advanced.BackfillChunkSize = 10
	e.cfg.Source.Advanced.SkipBackfills = "public.skipped"
	e.db.Exec(t, `CREATE TABLE nokey (a int, b text);
		INSERT INTO nokey SELECT g, 'x' FROM generate_series(1, 95) g;
		CREATE TABLE skipped (id int PRIMARY KEY);
		INSERT INTO skipped SELECT generate_series(1, 50);
		CREATE TABLE parted (id int, region text, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
		CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
		CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us');
		INSERT INTO parted SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 40) g`)
	e.start(t)
	e.db.Exec(t, `INSERT INTO skipped VALUES (51); INSERT INTO parted VALUES (41, 'eu')`)
	rs := e.consume(t, []string{"test.public.nokey", "test.public.skipped", "test.public.parted"}, 30*time.Second, atLeast(95+1+41))
	count := map[string]map[string]int{}
	for _, r := range rs {
		if count[r.Topic] == nil {
			count[r.Topic] = map[string]int{}
		}
		count[r.Topic][r.Op]++
		if r.Topic == "test.public.nokey" && r.RawKey != nil {
			t.Errorf("keyless record with a key: %+v", r)
		}
	}
	if c := count["test.public.nokey"]; c["r"] != 95 || len(c) != 1 {
		t.Errorf("keyless table: %v, want 95 reads", c)
	}
	if c := count["test.public.skipped"]; c["r"] != 0 || c["c"] != 1 {
		t.Errorf("skipped table: %v, want only the new row", c)
	}
	if c := count["test.public.parted"]; c["r"] != 40 || c["c"] != 1 {
		t.Errorf("partitioned table: %v, want 40 reads and 1 insert", c)
	}
	sameRows(t, state(rs, "test.public.parted"), pgRows(t, e.db, `SELECT id, region FROM parted`, "region", "id"))
}

// TestBindingAddedLater: a table bound after the first run is backfilled
// while the others keep streaming; a binding removed stops being captured.
func TestBindingAddedLater(t *testing.T) {
	e := newEnv(t, "public.first")
	e.db.Exec(t, `CREATE TABLE first (id int PRIMARY KEY); CREATE TABLE later (id int PRIMARY KEY);
		INSERT INTO later SELECT generate_series(1, 30)`)
	rn := e.start(t)
	e.db.Exec(t, `INSERT INTO first VALUES (1)`)
	e.consume(t, []string{"test.public.first"}, 20*time.Second, atLeast(1))
	rn.stop(t)

	e.cfg = withBindings(e.cfg, "public.first", "public.later")
	rn = e.start(t)
	e.db.Exec(t, `INSERT INTO first VALUES (2); INSERT INTO later VALUES (31)`)
	rs := e.consume(t, []string{"test.public.first", "test.public.later"}, 30*time.Second, atLeast(2+31))
	rn.stop(t)
	var later []string
	for _, r := range rs {
		if r.Topic == "test.public.later" {
			later = append(later, r.Op)
		}
	}
	sort.Strings(later)
	if len(later) != 31 || later[0] != "c" || later[1] != "r" {
		t.Errorf("the table added later: %d records %v", len(later), later[:min(3, len(later))])
	}

	// Removed: its changes are no longer captured.
	e.cfg = withBindings(e.cfg, "public.first")
	rn = e.start(t)
	e.db.Exec(t, `INSERT INTO later VALUES (32); INSERT INTO first VALUES (3)`)
	rs = e.consume(t, []string{"test.public.first"}, 20*time.Second, atLeast(3))
	rn.stop(t)
	all := e.consume(t, []string{"test.public.later"}, 20*time.Second, atLeast(31))
	if len(all) != 31 {
		t.Errorf("the removed binding still captured: %d records", len(all))
	}
}

func quoted(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += ", "
		}
		out += "'" + s + "'"
	}
	return out
}

// TestRebackfillOnRequest: a row written to the watermarks table asks for
// a table to be read again; new 'r' records follow, with the same invariant,
// while the other table keeps streaming.
func TestRebackfillOnRequest(t *testing.T) {
	e := newEnv(t, "public.again", "public.other")
	e.db.Exec(t, `CREATE TABLE again (id int PRIMARY KEY, v int); CREATE TABLE other (id int PRIMARY KEY);
		INSERT INTO again SELECT g, 0 FROM generate_series(1, 50) g`)
	rn := e.start(t)
	e.consume(t, []string{"test.public.again"}, 20*time.Second, atLeast(50))
	e.db.Exec(t, `UPDATE again SET v = 1 WHERE id <= 10`)
	e.db.Exec(t, `INSERT INTO public.flow_watermarks (slot, watermark) VALUES ('flow_slot', 'pgkafka-backfill:public.again')
		ON CONFLICT (slot) DO UPDATE SET watermark = EXCLUDED.watermark`)
	e.db.Exec(t, `INSERT INTO other VALUES (1)`)
	rs := e.consume(t, []string{"test.public.again", "test.public.other"}, 30*time.Second, atLeast(50+10+50+1))
	rn.stop(t)
	reads := 0
	for _, r := range rs {
		if r.Topic == "test.public.again" && r.Op == "r" {
			reads++
		}
	}
	if reads != 100 {
		t.Fatalf("%d 'r' records, want 50 then 50 more after the request", reads)
	}
	sameRows(t, state(rs, "test.public.again"), pgRows(t, e.db, `SELECT id, v FROM again`, "id"))
	if len(state(rs, "test.public.other")) != 1 {
		t.Errorf("the other table did not keep streaming")
	}
}

// TestBackfillChunkBytes backfills rows of about 1 MB with the default
// backfill_chunk_size (4096 rows): the first two chunks read 8 rows (the
// second is planned while the first is read), the next ones the rows of
// the first's size that fit in 4 MiB (4), not the whole table at once;
// the records are the table's rows.
func TestBackfillChunkBytes(t *testing.T) {
	e := newEnv(t, "public.wide")
	e.db.Exec(t, `CREATE TABLE wide (id int PRIMARY KEY, v text);
		ALTER TABLE wide ALTER COLUMN v SET STORAGE EXTERNAL;
		INSERT INTO wide SELECT g, repeat(md5(g::text), 32000) FROM generate_series(1, 20) g`)
	rn := e.start(t)
	rs := e.consume(t, []string{"test.public.wide"}, 30*time.Second, atLeast(20))
	sameRows(t, state(rs, "test.public.wide"), pgRows(t, e.db, `SELECT id, v FROM wide`, "id"))
	// 8 + 8 + 4 rows, then the last, empty and unbounded chunk.
	if got := counterValue(t, rn.r, "pgkafka_backfill_chunks_total"); got != 4 {
		t.Fatalf("%v chunks, want 4 (8 and 8 rows, then 4 rows of 1 MB a chunk, then the empty last)", got)
	}
}
