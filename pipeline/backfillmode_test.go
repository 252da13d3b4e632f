package pipeline_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pipeline"
)

// requestBackfill writes a re-backfill request as `pgkafka backfill` does.
func requestBackfill(t *testing.T, e *env, req pipeline.BackfillRequest) {
	t.Helper()
	e.db.Exec(t, fmt.Sprintf(`INSERT INTO public.flow_watermarks (slot, watermark) VALUES ('flow_slot', %s)
		ON CONFLICT (slot) DO UPDATE SET watermark = EXCLUDED.watermark`, "'"+strings.ReplaceAll(req.Encode(), "'", "''")+"'"))
}

// waitDone waits for a Runner that ends by itself, and fails unless it
// returns nil.
func (rn *running) waitDone(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case err := <-rn.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		rn.done <- nil // for the cleanup
	case <-time.After(timeout):
		t.Fatalf("Run still running after %s", timeout)
	}
}

// settled reads topics until n records came and nothing more for a while
// (the capture stopped: everything it wrote is committed).
func (e *env) settled(t *testing.T, topics []string, n int) []rec {
	t.Helper()
	start := time.Now()
	return e.consume(t, topics, 30*time.Second, func(rs []rec) bool {
		return len(rs) >= n && time.Since(start) > 3*time.Second
	})
}

func countOps(rs []rec, topic, op string) int {
	n := 0
	for _, r := range rs {
		if r.Topic == topic && r.Op == op && !r.Tombstone {
			n++
		}
	}
	return n
}

// TestBackfillModeNever: with backfillMode never, the rows present at the
// first start are not read (no 'r' record), changes stream, and an
// explicit `pgkafka backfill` request still reads the table.
func TestBackfillModeNever(t *testing.T) {
	e := newEnv(t, "public.nb")
	e.cfg.Source.Advanced.BackfillMode = pgsrc.BackfillNever
	e.db.Exec(t, `CREATE TABLE nb (id int PRIMARY KEY, v int); INSERT INTO nb SELECT g, 0 FROM generate_series(1, 20) g`)
	rn := e.start(t)
	e.db.Exec(t, `INSERT INTO nb VALUES (21, 0); UPDATE nb SET v = 1 WHERE id = 1`)
	topic := "test.public.nb"
	rs := e.consume(t, []string{topic}, 30*time.Second, atLeast(2))
	if got := fmt.Sprint(ops(rs)); got != "[c u]" {
		t.Fatalf("records %v, want [c u]: no table is backfilled", got)
	}
	requestBackfill(t, e, pipeline.BackfillRequest{Tables: []string{"public.nb"}})
	rs = e.consume(t, []string{topic}, 30*time.Second, func(rs []rec) bool { return countOps(rs, topic, "r") >= 21 })
	rn.stop(t)
	rs = e.settled(t, []string{topic}, len(rs))
	if n := countOps(rs, topic, "r"); n != 21 {
		t.Fatalf("%d 'r' records after the request, want 21", n)
	}
	sameRows(t, state(rs, topic), pgRows(t, e.db, `SELECT id, v FROM nb`, "id"))
}

// TestBackfillModeInitialOnly: with backfillMode initial_only, the capture
// backfills the table while a writer updates it, then stops by itself
// (Run returns nil) with everything committed and the slot confirmed to
// the checkpoint: every row once as 'r', the changes before the stop
// once, for read_committed consumers. A second start has nothing to
// backfill and stops at once, capturing nothing; an initial start then
// streams the changes the slot kept.
func TestBackfillModeInitialOnly(t *testing.T) {
	e := newEnv(t, "public.io")
	e.logs = &lockedBuffer{}
	e.cfg.Source.Advanced.BackfillMode = pgsrc.BackfillInitialOnly
	e.cfg.Source.Advanced.BackfillChunkSize = 13
	e.db.Exec(t, `CREATE TABLE io (id int PRIMARY KEY, v int NOT NULL); INSERT INTO io SELECT g, 0 FROM generate_series(1, 600) g`)
	stop := make(chan struct{})
	done := make(chan error, 1)
	conn := e.db.Conn(t)
	stopped := false
	defer func() { // a failure below ends the writer too
		if !stopped {
			close(stop)
			<-done
		}
	}()
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := conn.Exec(context.Background(), `UPDATE io SET v = v + 1 WHERE id IN ($1, $2)`, 1+rand.IntN(600), 1+rand.IntN(600)); err != nil {
				done <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	rn := e.launch(t)
	rn.waitDone(t, 90*time.Second)
	stopped = true
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wantLog(t, e.logs, "backfills finished; backfillMode initial_only: stopping")

	cfg := e.cfg
	cfg.SetDefaults()
	st, err := pipeline.ReadStatus(context.Background(), cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if st.Checkpoint == nil || st.Slot.ConfirmedFlush != st.Checkpoint.LSN {
		t.Fatalf("slot confirmed to %s, checkpoint %+v: want the slot at the checkpoint", st.Slot.ConfirmedFlush, st.Checkpoint)
	}
	if ts := st.Checkpoint.Tables["public.io"]; ts.State != "streaming" {
		t.Fatalf("table state %+v, want streaming (backfilled)", ts)
	}
	topic := "test.public.io"
	rs := e.settled(t, []string{topic}, 600)
	// Every row came, as 'r' or, when the writer changed it between a
	// chunk's watermarks, as the change ('u') that superseded its read.
	if n := len(state(rs, topic)); n != 600 {
		t.Fatalf("%d rows in the topic, want 600", n)
	}
	t.Logf("%d 'r' records of 600 rows", countOps(rs, topic, "r"))
	checkPerKey(t, rs, topic)
	first := len(rs)

	// Nothing left to backfill: stops at once, reading nothing.
	e.db.Exec(t, `INSERT INTO io SELECT g, 0 FROM generate_series(601, 605) g`)
	e.logs = &lockedBuffer{}
	e.launch(t).waitDone(t, 30*time.Second)
	wantLog(t, e.logs, "no table to backfill; backfillMode initial_only: stopping")
	if rs := e.settled(t, []string{topic}, first); len(rs) != first {
		t.Fatalf("%d records after a start with nothing to backfill, want %d", len(rs), first)
	}

	// The slot kept the changes since: an initial start streams them.
	e.cfg.Source.Advanced.BackfillMode = pgsrc.BackfillInitial
	rn = e.start(t)
	want := pgRows(t, e.db, `SELECT id, v FROM io`, "id")
	rs = e.consume(t, []string{topic}, 30*time.Second, func(rs []rec) bool { return len(state(rs, topic)) == len(want) })
	rn.stop(t)
	rs = e.settled(t, []string{topic}, len(rs))
	if n := countOps(rs, topic, "c"); n != 5 {
		t.Fatalf("%d 'c' records, want the 5 rows inserted while stopped", n)
	}
	checkPerKey(t, rs, topic)
	sameRows(t, state(rs, topic), want)
}

// TestBackfillWhere: a re-backfill request with a condition reads again
// only the rows it passes, once each, as 'r' records of their current
// state; and the request of the old form still reads the whole table.
func TestBackfillWhere(t *testing.T) {
	e := newEnv(t, "public.ev")
	e.cfg.Source.Advanced.BackfillChunkSize = 3
	e.db.Exec(t, `CREATE TABLE ev (id int PRIMARY KEY, v int NOT NULL, created date NOT NULL);
		INSERT INTO ev SELECT g, 0, date '2020-01-01' + g FROM generate_series(1, 100) g`)
	rn := e.start(t)
	topic := "test.public.ev"
	e.consume(t, []string{topic}, 30*time.Second, atLeast(100))
	e.db.Exec(t, `UPDATE ev SET v = 1 WHERE id <= 20`)
	requestBackfill(t, e, pipeline.BackfillRequest{Tables: []string{"public.ev"}, Where: "id % 10 = 0 AND created > date '2020-01-01'"})
	rs := e.consume(t, []string{topic}, 30*time.Second, func(rs []rec) bool { return countOps(rs, topic, "r") >= 110 })
	rn.stop(t)
	rs = e.settled(t, []string{topic}, len(rs))
	if n := countOps(rs, topic, "r"); n != 110 {
		t.Fatalf("%d 'r' records, want 100 then the 10 rows the condition passes", n)
	}
	again := map[string]bool{}
	for _, r := range rs[100:] {
		if r.Op != "r" {
			continue
		}
		id := fmt.Sprint(r.After["id"])
		if !strings.HasSuffix(id, "0") || again[id] {
			t.Errorf("re-read row %s: not passed by the condition, or read twice", id)
		}
		again[id] = true
		want := "0"
		if id == "10" || id == "20" {
			want = "1"
		}
		if fmt.Sprint(r.After["v"]) != want {
			t.Errorf("re-read row %s has v %v, want its current %s", id, r.After["v"], want)
		}
	}
	sameRows(t, state(rs, topic), pgRows(t, e.db, `SELECT id, v, created FROM ev`, "id"))
}

// TestBackfillWhereResumes: a filtered backfill interrupted keeps its
// condition with its cursor in the checkpoint, and the next session goes
// on from the cursor with the condition, not with a full backfill.
func TestBackfillWhereResumes(t *testing.T) {
	e := newEnv(t, "public.rs")
	e.db.Exec(t, `CREATE TABLE rs (id int PRIMARY KEY, v int NOT NULL); INSERT INTO rs SELECT g, 0 FROM generate_series(1, 100) g`)
	rn := e.start(t)
	topic := "test.public.rs"
	e.consume(t, []string{topic}, 30*time.Second, atLeast(100))
	rn.stop(t)

	// The checkpoint of a session stopped inside the filtered backfill,
	// its cursor at key 50.
	cfg := e.cfg
	cfg.SetDefaults()
	st, err := pipeline.ReadStatus(context.Background(), cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cp := st.Checkpoint
	ts := cp.Tables["public.rs"]
	ts.State, ts.Cursor, ts.Where = "backfilling", []byte(`["50"]`), "id % 10 = 0"
	cp.Tables["public.rs"] = ts
	record, err := cp.Record(cfg.Kafka.OffsetsTopic, cfg.Name)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), record).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()

	rn = e.start(t)
	rn.stop(t)
	rs := e.settled(t, []string{topic}, 105)
	var ids []string
	for _, r := range rs[100:] {
		ids = append(ids, fmt.Sprint(r.Op, r.After["id"]))
	}
	if got := fmt.Sprint(ids); got != "[r60 r70 r80 r90 r100]" {
		t.Fatalf("after the resume: %s, want the rows after key 50 that the condition passes", got)
	}
}
