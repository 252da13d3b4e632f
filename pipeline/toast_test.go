package pipeline_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/pipeline"
	"github.com/pgkafka/pgkafka/schema"
)

// toastTable creates a table with a 100 kB text and a 5000-element int[]
// stored out of line, and n, which every update of the tests increments:
// (id, n) names one state of a row.
func toastTable(t *testing.T, e *env, name string, full bool) {
	t.Helper()
	e.db.Exec(t, fmt.Sprintf(`CREATE TABLE %[1]s (id int PRIMARY KEY, big text, xs int[], n int NOT NULL DEFAULT 0);
		ALTER TABLE %[1]s ALTER COLUMN xs SET STORAGE EXTERNAL`, name))
	if full {
		e.db.Exec(t, fmt.Sprintf(`ALTER TABLE %s REPLICA IDENTITY FULL`, name))
	}
}

// toastInsert inserts row id with values of its own (seed).
func toastInsert(t *testing.T, e *env, table string, id, seed int) {
	t.Helper()
	e.db.Exec(t, fmt.Sprintf(`INSERT INTO %s SELECT %d, (SELECT string_agg(md5((g + %d)::text), '') FROM generate_series(1, 3200) g),
		(SELECT array_agg(g + %d) FROM generate_series(1, 5000) g)`, table, id, seed, seed))
}

// toastStates records each state (id, n) of a table's rows as PostgreSQL
// holds it: big, and xs in its text form.
type toastStates map[string][2]string

func (s toastStates) read(t *testing.T, e *env, table string) {
	t.Helper()
	rows, err := e.db.Conn(t).Query(context.Background(), fmt.Sprintf(`SELECT id, n, coalesce(big, 'NULL'), coalesce(xs::text, 'NULL') FROM %s`, table))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, n int
		var big, xs string
		if err := rows.Scan(&id, &n, &big, &xs); err != nil {
			t.Fatal(err)
		}
		s[fmt.Sprintf("%s/%d/%d", table, id, n)] = [2]string{big, xs}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// exec runs sql, then records the states of tables.
func (s toastStates) exec(t *testing.T, e *env, sql string, tables ...string) {
	t.Helper()
	e.db.Exec(t, sql)
	for _, tb := range tables {
		s.read(t, e, tb)
	}
}

// check compares each row image in rs with the state PostgreSQL held.
func (s toastStates) check(t *testing.T, rs []rec) {
	t.Helper()
	for _, r := range rs {
		if r.Tombstone || r.After == nil {
			continue
		}
		table := strings.TrimPrefix(r.Topic, "test.public.")
		name := fmt.Sprintf("%s/%v/%v", table, r.After["id"], r.After["n"])
		want, ok := s[name]
		if !ok {
			t.Errorf("%s op %s: a state PostgreSQL never held", name, r.Op)
			continue
		}
		big, _ := r.After["big"].(string)
		if big != want[0] {
			t.Errorf("%s op %s: big is %d bytes %.40q, want %d bytes %.40q", name, r.Op, len(big), big, len(want[0]), want[0])
		}
		if xs := arrayText(r.After["xs"]); xs != want[1] {
			t.Errorf("%s op %s: xs is %.40s (%d bytes), want %.40s (%d bytes)", name, r.Op, xs, len(xs), want[1], len(want[1]))
		}
	}
}

// arrayText renders a decoded int array as PostgreSQL prints it.
func arrayText(v any) string {
	if m, ok := v.(map[string]any); ok { // hamba/avro names the union branch "array"
		v = m["array"]
	}
	xs, ok := v.([]any)
	if !ok {
		return fmt.Sprintf("%v", v)
	}
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprint(x)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// perTopic is a done function: at least n records (tombstones included)
// in each topic.
func perTopic(n int, topics ...string) func([]rec) bool {
	return func(rs []rec) bool {
		count := map[string]int{}
		for _, r := range rs {
			count[r.Topic]++
		}
		for _, tp := range topics {
			if count[tp] < n {
				return false
			}
		}
		return true
	}
}

// toastCounts reads the runner's pgkafka_toast_values_total by path.
func toastCounts(t *testing.T, r *pipeline.Runner) map[string]float64 {
	t.Helper()
	mfs, err := r.Metrics().Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "pgkafka_toast_values_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "path" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// TestToastReconciler: a 100 kB text and a 5000-element int[], unchanged
// across several updates, arrive whole in every record: from the old tuple
// under REPLICA IDENTITY FULL; from the cache otherwise, fed by the backfill
// (row 1 exists before the capture starts) and by inserts and updates
// (row 2, and row 1's new value); and after a restart from the checkpoint,
// whose cache is cold, from the database (several rows in one batch).
func TestToastReconciler(t *testing.T) {
	const full, dflt = "test.public.tfull", "test.public.tdflt"
	e := newEnv(t, "public.tfull", "public.tdflt")
	toastTable(t, e, "tfull", true)
	toastTable(t, e, "tdflt", false)
	tables := []string{"tfull", "tdflt"}
	st := toastStates{}
	toastInsert(t, e, "tfull", 1, 0)
	toastInsert(t, e, "tdflt", 1, 0)
	st.read(t, e, "tfull")
	st.read(t, e, "tdflt")

	rn := e.start(t)
	toastInsert(t, e, "tfull", 2, 7)
	toastInsert(t, e, "tdflt", 2, 7)
	st.read(t, e, "tfull")
	st.read(t, e, "tdflt")
	for range 3 {
		st.exec(t, e, `UPDATE tfull SET n = n + 1; UPDATE tdflt SET n = n + 1`, tables...)
	}
	st.exec(t, e, `UPDATE tfull SET big = (SELECT string_agg(md5((g + 100)::text), '') FROM generate_series(1, 3200) g), n = n + 1 WHERE id = 1;
		UPDATE tdflt SET big = (SELECT string_agg(md5((g + 100)::text), '') FROM generate_series(1, 3200) g), n = n + 1 WHERE id = 1`, tables...)
	for range 2 {
		st.exec(t, e, `UPDATE tfull SET n = n + 1; UPDATE tdflt SET n = n + 1`, tables...)
	}
	// Per table: 1 r, 1 c, 11 u.
	rs := e.consume(t, []string{full, dflt}, 30*time.Second, perTopic(13, full, dflt))
	st.check(t, rs)
	got := toastCounts(t, rn.r)
	// Per identity: 11 updates of both values, less the new big of row 1.
	if got[pipeline.ToastOldTuple] != 21 || got[pipeline.ToastCache] != 21 || got[pipeline.ToastDatabase] != 0 || got[pipeline.ToastUnavailable] != 0 {
		t.Errorf("paths before the restart %v, want 21 from the old tuple, 21 from the cache, none from the database", got)
	}
	rn.stop(t)

	// Updates while stopped; one statement updates both rows, so their
	// changes come in one batch and are read in one statement.
	st.exec(t, e, `UPDATE tfull SET n = n + 1; UPDATE tdflt SET n = n + 1`, tables...)
	st.exec(t, e, `UPDATE tfull SET n = n + 1 WHERE id = 2; UPDATE tdflt SET n = n + 1 WHERE id = 2`, tables...)
	rn = e.start(t)
	rs = e.consume(t, []string{full, dflt}, 30*time.Second, perTopic(16, full, dflt))
	st.check(t, rs)
	got = toastCounts(t, rn.r)
	// tdflt: the first statement's values (4) come from the database, the
	// second's (2) from the cache the first filled.
	if got[pipeline.ToastOldTuple] != 6 || got[pipeline.ToastDatabase] != 4 || got[pipeline.ToastCache] != 2 || got[pipeline.ToastUnavailable] != 0 {
		t.Errorf("paths after the restart %v, want 6 from the old tuple, 4 from the database, 2 from the cache", got)
	}
}

// TestToastDatabasePath: with a cache too small for the values, every
// unchanged value is read from the database. Each is the right one while
// no later change has touched it (each step waits for its records here),
// and the newer one otherwise: the row read is the current one.
func TestToastDatabasePath(t *testing.T) {
	const topic = "test.public.tsmall"
	e := newEnv(t, "public.tsmall")
	e.cfg.Toast.CacheBytes = 1000
	toastTable(t, e, "tsmall", false)
	st := toastStates{}
	rn := e.start(t)
	toastInsert(t, e, "tsmall", 1, 0)
	toastInsert(t, e, "tsmall", 2, 5)
	st.read(t, e, "tsmall")
	records := 2
	for _, sql := range []string{
		`UPDATE tsmall SET n = n + 1`,
		`UPDATE tsmall SET n = n + 1, big = (SELECT string_agg(md5((g + 9)::text), '') FROM generate_series(1, 3200) g) WHERE id = 2`,
		`UPDATE tsmall SET n = n + 1 WHERE id = 2`,
	} {
		before := len(st)
		st.exec(t, e, sql, "tsmall")
		records += len(st) - before
		e.consume(t, []string{topic}, 30*time.Second, perTopic(records, topic))
	}
	rs := e.consume(t, []string{topic}, 30*time.Second, perTopic(records, topic))
	st.check(t, rs)
	got := toastCounts(t, rn.r)
	if got[pipeline.ToastDatabase] != 7 || got[pipeline.ToastCache] != 0 || got[pipeline.ToastUnavailable] != 0 {
		t.Errorf("paths %v, want 7 values from the database and none from the cache", got)
	}

	// Stopped, an update leaves row 1's big alone and the next changes it:
	// after the restart, both records carry the new value.
	rn.stop(t)
	e.db.Exec(t, `UPDATE tsmall SET n = 10 WHERE id = 1;
		UPDATE tsmall SET n = 11, big = (SELECT string_agg(md5((g + 11)::text), '') FROM generate_series(1, 3200) g) WHERE id = 1`)
	var newer string
	if err := e.db.Conn(t).QueryRow(context.Background(), `SELECT big FROM tsmall WHERE id = 1`).Scan(&newer); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	rs = e.consume(t, []string{topic}, 30*time.Second, perTopic(records+2, topic))
	for _, r := range rs[records:] {
		if big, _ := r.After["big"].(string); big != newer {
			t.Errorf("n=%v after the restart: big %.40q, want the row's current %.40q", r.After["n"], big, newer)
		}
	}
}

// TestToastRowDeleted: an unchanged value of a row deleted before the
// reconciler reads it (and not in the cache, here disabled) is the marker
// in a text column; an int[] cannot carry it: toast.unavailable: null
// writes null, and the default, fail, stops the capture naming the column.
func TestToastRowDeleted(t *testing.T) {
	const topic = "test.public.tgone"
	e := newEnv(t, "public.tgone")
	e.cfg.Toast.CacheBytes = 1000
	e.cfg.Toast.Unavailable = "null"
	toastTable(t, e, "tgone", false)
	rn := e.start(t)
	toastInsert(t, e, "tgone", 1, 0)
	e.db.Exec(t, `BEGIN; UPDATE tgone SET n = 1; DELETE FROM tgone; COMMIT`)
	rs := e.consume(t, []string{topic}, 30*time.Second, perTopic(4, topic))
	if got := ops(rs); fmt.Sprint(got) != "[c u d tombstone]" {
		t.Fatalf("ops %v, want c u d and a tombstone", got)
	}
	u := rs[1].After
	if u["big"] != schema.UnavailableValue || u["xs"] != nil || fmt.Sprint(u["n"]) != "1" {
		t.Errorf("update of a deleted row: big %.40q, xs %.40v, n %v; want the marker, null, 1", u["big"], u["xs"], u["n"])
	}
	if got := toastCounts(t, rn.r); got[pipeline.ToastUnavailable] != 2 || got[pipeline.ToastDatabase] != 0 {
		t.Errorf("paths %v, want 2 values unavailable", got)
	}

	f := newEnv(t, "public.tgone2")
	f.cfg.Source.Advanced.SlotName = "tgone2_slot" // slots are cluster-wide
	f.cfg.Toast.CacheBytes = 1000
	toastTable(t, f, "tgone2", false)
	rn = f.start(t)
	toastInsert(t, f, "tgone2", 1, 0)
	f.db.Exec(t, `BEGIN; UPDATE tgone2 SET n = 1; DELETE FROM tgone2; COMMIT`)
	select {
	case err := <-rn.done:
		if err == nil || !strings.Contains(err.Error(), `column "xs"`) || !strings.Contains(err.Error(), "toast.unavailable: null") {
			t.Fatalf("Run ended with %v", err)
		}
		rn.done <- nil
	case <-time.After(30 * time.Second):
		t.Fatal("the capture did not stop on the unavailable int[]")
	}
}

// TestToastDatabasePathColumns: two changes of one batch leave different
// columns of one row unchanged; the row read for the first serves the
// second with the column it lacks.
func TestToastDatabasePathColumns(t *testing.T) {
	const topic = "test.public.ttwo"
	e := newEnv(t, "public.ttwo")
	e.cfg.Toast.CacheBytes = 1000
	e.db.Exec(t, `CREATE TABLE ttwo (id int PRIMARY KEY, a text, b text, n int)`)
	rn := e.start(t)
	big := func(seed int) string {
		return fmt.Sprintf(`(SELECT string_agg(md5((g + %d)::text), '') FROM generate_series(1, 3200) g)`, seed)
	}
	e.db.Exec(t, `INSERT INTO ttwo VALUES (1, `+big(1)+`, `+big(2)+`, 0)`)
	e.db.Exec(t, `UPDATE ttwo SET a = `+big(3)+`, n = 1; UPDATE ttwo SET b = `+big(4)+`, n = 2`)
	var a, b string
	if err := e.db.Conn(t).QueryRow(context.Background(), `SELECT a, b FROM ttwo`).Scan(&a, &b); err != nil {
		t.Fatal(err)
	}
	rs := e.consume(t, []string{topic}, 30*time.Second, perTopic(3, topic))
	for _, r := range rs[1:] {
		if r.After["a"] != a || r.After["b"] != b {
			t.Errorf("update n=%v: a %.20q, b %.20q; want the row's current %.20q, %.20q", r.After["n"], r.After["a"], r.After["b"], a, b)
		}
	}
	if got := toastCounts(t, rn.r); got[pipeline.ToastDatabase] != 2 || got[pipeline.ToastUnavailable] != 0 {
		t.Errorf("paths %v, want 2 values from the database", got)
	}
}

// counterValue is the sum of a counter of the runner's metrics.
func counterValue(t *testing.T, r *pipeline.Runner, name string) float64 {
	t.Helper()
	mfs, err := r.Metrics().Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
