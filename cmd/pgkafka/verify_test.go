package main

import (
	"bytes"
	"context"
	"encoding/base64"
	bin "encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/offsets"
	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
	"github.com/pgkafka/pgkafka/pipeline"
)

// rawRecords reads a topic as it is, records of one key (an int id) in
// offset order, undecoded.
func rawRecords(t *testing.T, brokers []string, topic string, id int64) []*kgo.Record {
	t.Helper()
	want := bin.AppendVarint(nil, id) // Avro int: zigzag varint
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Up to the topic's last stable offsets now, however long that takes
	// on a loaded machine (a fixed time to read missed records under CI).
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(adm).ListCommittedOffsets(ctx, topic)
	adm.Close()
	if err != nil {
		t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.KeepControlRecords(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %v (left %v)", topic, ctx.Err(), left)
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			if end, ok := left[r.Partition]; ok && r.Offset >= end-1 {
				delete(left, r.Partition)
			}
			if !r.Attrs.IsControl() && len(r.Key) > 5 && bytes.Equal(r.Key[5:], want) {
				out = append(out, r)
			}
		}
	}
	return out
}

// waitRawRecords waits until the counters topic holds want[id] records
// of each key id, and returns them (rawRecords).
func waitRawRecords(t *testing.T, brokers []string, want map[int64]int) map[int64][]*kgo.Record {
	t.Helper()
	got := map[int64][]*kgo.Record{}
	for deadline := time.Now().Add(30 * time.Second); ; {
		done := true
		for id, n := range want {
			got[id] = rawRecords(t, brokers, countersTopic, id)
			done = done && len(got[id]) == n
		}
		if done {
			return got
		}
		if time.Now().After(deadline) {
			for id, n := range want {
				t.Errorf("key %d: %d records, want %d", id, len(got[id]), n)
			}
			t.FailNow()
		}
	}
}

// wantRun checks a command's exit code, and that its output holds each of
// wants.
func wantRun(t *testing.T, what string, code int, out string, wantCode int, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s: no %q", what, w)
		}
	}
	if code != wantCode {
		t.Fatalf("%s: exit %d, want %d", what, code, wantCode)
	}
}

// lockTable holds a lock on table that keeps every read of it waiting,
// until release.
func lockTable(t *testing.T, db *pgtest.DB, table string) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.Conn(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, `LOCK TABLE `+table+` IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// produceRaw writes records outside pgkafka: a plain producer, not
// transactional.
func produceRaw(t *testing.T, brokers []string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestVerify: a clean capture verifies equal (exit 0) while a writer
// runs; then the topic is damaged outside pgkafka in three ways, and
// verify, the writer still running, finds exactly those keys (exit 1):
// a tombstone written for key 1001 (missing from the topic), key 1002's
// first record produced again after an update (a stale value, column n),
// and key 1003's first record produced again after the row was deleted
// (a row deleted whose delete the topic lost: extra in the topic).
func TestVerify(t *testing.T) {
	s := newStack(t)
	ctr := newCounters(t, s.db, 200)
	ctr.seed(t)
	s.db.Exec(t, `INSERT INTO counters VALUES (1001, 0, 'a'), (1002, 0, 'b'), (1003, 0, 'c')`)
	path := tune(t, s.config(t, "postgres", cluster.SuperuserPassword(), countersBinding), "  transactionWindow: 20ms\n", "")
	c := startCapture(t, path)
	defer c.stop(t)
	stop := make(chan struct{})
	written := ctr.write(t, s.db.DSN(), stop)
	defer func() {
		close(stop)
		t.Logf("%d writer transactions", <-written)
	}()
	brokers := s.broker.ListenAddrs()

	code, out := pgkafka(t, "verify", "-c", path, "--catch-up", "20s")
	t.Logf("clean:\n%s", out)
	if code != 0 || !strings.Contains(out, "public.counters -> it.public.counters: equal: 203 rows compared") {
		t.Fatalf("clean capture: exit %d, want 0 and equal:\n%s", code, out)
	}

	s.db.Exec(t, `UPDATE counters SET n = 5 WHERE id = 1002; DELETE FROM counters WHERE id = 1003`)
	rr := waitRawRecords(t, brokers, map[int64]int{1001: 1, 1002: 2, 1003: 3}) // r; r, u; r, d, tombstone
	r1001, r1002, r1003 := rr[1001], rr[1002], rr[1003]
	produceRaw(t, brokers,
		&kgo.Record{Topic: countersTopic, Partition: r1001[0].Partition, Key: r1001[0].Key},                        // a tombstone
		&kgo.Record{Topic: countersTopic, Partition: r1002[0].Partition, Key: r1002[0].Key, Value: r1002[0].Value}, // n = 0 again
		&kgo.Record{Topic: countersTopic, Partition: r1003[0].Partition, Key: r1003[0].Key, Value: r1003[0].Value}) // back from the dead

	code, out = pgkafka(t, "verify", "-c", path, "--catch-up", "20s", "public.counters")
	t.Logf("damaged:\n%s", out)
	wantRun(t, "damaged topic", code, out, 1,
		"public.counters -> it.public.counters: DIFFERENT: 202 rows compared, 202 keys in the topic; 1 missing, 1 extra, 1 with other values",
		"missing from the topic (1): id=1001\n",
		"extra in the topic (1): id=1003\n",
		"    id=1002: columns n\n")
}

// TestVerifyRefuses: a table without a key is refused (exit 2), and so
// is a table not among the bindings.
func TestVerifyRefuses(t *testing.T) {
	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE nokey (v int)`)
	path := s.config(t, "postgres", cluster.SuperuserPassword(), "  - resource: {namespace: public, stream: nokey, syncMode: incremental}")
	code, out := pgkafka(t, "verify", "-c", path)
	if code != 2 || !strings.Contains(out, "public.nokey has no primary key") {
		t.Errorf("table without a key: exit %d, want 2:\n%s", code, out)
	}
	code, out = pgkafka(t, "verify", "-c", path, "public.other")
	if code != 2 || !strings.Contains(out, "not among the bindings") {
		t.Errorf("table not bound: exit %d, want 2:\n%s", code, out)
	}
}

// TestVerifyRepair: topics damaged in each way, while a writer runs: rows
// deleted while the slot was dropped (the capture reset as its error says:
// checkpoint deleted, a new slot and a new backfill, which cannot see
// those deletes), a record removed by a tombstone written outside pgkafka,
// a stale value. verify finds exactly those keys; verify --repair has the
// running capture read the missing and stale rows again and remove the
// deleted rows' keys (a 'd' record and a tombstone each, in its own Kafka
// transactions), and verify then reports equal. Then the whole-table
// repair (more keys than --repair-keys) does the same.
func TestVerifyRepair(t *testing.T) {
	s := newStack(t)
	// Few keys, written slowly: verify reads the topic whole, 7 times,
	// and checks each key that changed while it read again.
	ctr := newCounters(t, s.db, 20)
	ctr.pause = 10 * time.Millisecond
	ctr.seed(t)
	s.db.Exec(t, `INSERT INTO counters SELECT g, 0, 'k' FROM generate_series(1001, 1006) g`)
	path := tune(t, s.config(t, "postgres", cluster.SuperuserPassword(), countersBinding), "  transactionWindow: 20ms\n", "")
	c := startCapture(t, path)
	stop := make(chan struct{})
	written := ctr.write(t, s.db.DSN(), stop)
	defer func() {
		close(stop)
		t.Logf("%d writer transactions", <-written)
	}()
	brokers := s.broker.ListenAddrs()

	// Rows deleted while the slot was dropped.
	c.stop(t)
	dropSlot(t, s.db)
	s.db.Exec(t, `DELETE FROM counters WHERE id IN (1003, 1004)`)
	produceRaw(t, brokers, &kgo.Record{Topic: "pgkafka-offsets", Key: []byte("it")}) // the checkpoint deleted
	c = startCapture(t, path)
	defer c.stop(t)

	// A record removed, a stale value.
	s.db.Exec(t, `UPDATE counters SET n = 5 WHERE id = 1002`)
	rr := waitRawRecords(t, brokers, map[int64]int{1001: 2, 1002: 3}) // r, r; r, r, u
	r1001, r1002 := rr[1001], rr[1002]
	produceRaw(t, brokers,
		&kgo.Record{Topic: countersTopic, Partition: r1001[0].Partition, Key: r1001[0].Key},                        // a tombstone
		&kgo.Record{Topic: countersTopic, Partition: r1002[1].Partition, Key: r1002[1].Key, Value: r1002[1].Value}) // n = 0 again

	start := time.Now()
	code, out := pgkafka(t, "verify", "-c", path, "--catch-up", "20s")
	t.Logf("damaged (%s):\n%s", time.Since(start), out)
	wantRun(t, "damaged topic", code, out, 1,
		"public.counters -> it.public.counters: DIFFERENT: 24 rows compared, 25 keys in the topic; 1 missing, 2 extra, 1 with other values",
		"missing from the topic (1): id=1001\n",
		"extra in the topic (2): id=1003; id=1004\n",
		"    id=1002: columns n\n")

	start = time.Now()
	code, out = pgkafka(t, "verify", "-c", path, "--catch-up", "20s", "--repair")
	t.Logf("repair (%s):\n%s", time.Since(start), out)
	wantRun(t, "repair", code, out, 0,
		"repair of public.counters: 4 keys read again, 2 of them removed from it.public.counters unless the table has them by then",
		"repair of public.counters: done",
		"after the repair:\npublic.counters -> it.public.counters: equal: 24 rows compared, 24 keys in the topic")
	// The capture wrote the repair, in its transactions: 1001 and 1002
	// read again ('r'), 1003 and 1004 removed ('d', then a tombstone).
	recs := readTopic(t, brokers, s.reg.URL(), countersTopic)
	last := map[int64][]map[string]any{}
	for _, r := range recs {
		id := toInt(r["_key"].(map[string]any)["id"])
		last[id] = append(last[id], r)
	}
	for _, id := range []int64{1001, 1002} {
		rs := last[id]
		v, _ := rs[len(rs)-1]["_value"].(map[string]any)
		if v == nil || v["op"] != "r" || toInt(v["after"].(map[string]any)["n"]) != map[int64]int64{1001: 0, 1002: 5}[id] {
			t.Errorf("key %d: last record %v, want an 'r' of the table's row", id, rs[len(rs)-1])
		}
	}
	for _, id := range []int64{1003, 1004} {
		rs := last[id]
		if len(rs) < 2 {
			t.Fatalf("key %d: records %v", id, rs)
		}
		d, _ := rs[len(rs)-2]["_value"].(map[string]any)
		if d == nil || d["op"] != "d" || rs[len(rs)-1]["_value"] != nil {
			t.Errorf("key %d: last records %v, want a 'd' and a tombstone", id, rs[len(rs)-2:])
		}
	}
	c.waitLog(t, `"msg":"re-backfill for a repair: keys the table no longer has removed from the topic"`, 10*time.Second)

	// More keys than --repair-keys: the whole table is read again, and
	// the keys the table lacks removed.
	s.db.Exec(t, `UPDATE counters SET n = 7 WHERE id = 1005`)
	s.db.Exec(t, `DELETE FROM counters WHERE id = 1006`)
	rr = waitRawRecords(t, brokers, map[int64]int{1005: 3, 1006: 4}) // r, r, u; r, r, d, tombstone
	r1005, r1006 := rr[1005], rr[1006]
	produceRaw(t, brokers,
		&kgo.Record{Topic: countersTopic, Partition: r1005[1].Partition, Key: r1005[1].Key, Value: r1005[1].Value}, // n = 0 again
		&kgo.Record{Topic: countersTopic, Partition: r1006[1].Partition, Key: r1006[1].Key, Value: r1006[1].Value}) // back from the dead
	start = time.Now()
	code, out = pgkafka(t, "verify", "-c", path, "--catch-up", "20s", "--repair", "--repair-keys", "1", "public.counters")
	t.Logf("whole-table repair (%s):\n%s", time.Since(start), out)
	wantRun(t, "whole-table repair", code, out, 0,
		"repair of public.counters: the whole table is read again, and the keys of it.public.counters it lacks are removed (2 keys to repair, more than 1)",
		"after the repair:\npublic.counters -> it.public.counters: equal: 23 rows compared, 23 keys in the topic")
	if code, out := pgkafka(t, "verify", "-c", path, "--catch-up", "20s"); code != 0 {
		t.Errorf("verify after the repairs: exit %d, want 0:\n%s", code, out)
	}
}

// TestRepairKilledResumes: a capture killed in the middle of a repair
// does it again when it starts: the condition and the keys to remove are
// in its checkpoint. The repair is held at its first read by a lock on
// the table, the capture killed there, and the next one finishes it: the
// stale row read again, the deleted row's key removed.
func TestRepairKilledResumes(t *testing.T) {
	s := newStack(t)
	ctr := newCounters(t, s.db, 20)
	ctr.seed(t)
	s.db.Exec(t, `INSERT INTO counters VALUES (1001, 0, 'a'), (1002, 0, 'b')`)
	path := tune(t, s.config(t, "postgres", cluster.SuperuserPassword(), countersBinding), "  transactionWindow: 20ms\n", "")
	c := startCapture(t, path)
	brokers := s.broker.ListenAddrs()

	// 1001 deleted, its record written again; 1002's value stale.
	s.db.Exec(t, `DELETE FROM counters WHERE id = 1001; UPDATE counters SET n = 3 WHERE id = 1002`)
	rr := waitRawRecords(t, brokers, map[int64]int{1001: 3, 1002: 2}) // r, d, tombstone; r, u
	r1001, r1002 := rr[1001], rr[1002]
	produceRaw(t, brokers,
		&kgo.Record{Topic: countersTopic, Partition: r1001[0].Partition, Key: r1001[0].Key, Value: r1001[0].Value},
		&kgo.Record{Topic: countersTopic, Partition: r1002[0].Partition, Key: r1002[0].Key, Value: r1002[0].Value})

	// The table locked: the repair's backfill cannot read it.
	release := lockTable(t, s.db, "counters")
	req := pipeline.BackfillRequest{Tables: []string{"public.counters"}, Where: `"id" IN ('1001'::integer, '1002'::integer)`,
		Purge: true, PurgeKeys: []string{base64.StdEncoding.EncodeToString(r1001[0].Key[5:])}}
	s.db.Exec(t, `INSERT INTO public.flow_watermarks (slot, watermark) VALUES ('flow_slot', '`+strings.ReplaceAll(req.Encode(), "'", "''")+`')
		ON CONFLICT (slot) DO UPDATE SET watermark = EXCLUDED.watermark`)
	var st offsets.TableState
	for deadline := time.Now().Add(30 * time.Second); ; {
		st = checkpoint(t, brokers, "it").Tables["public.counters"]
		if st.State == offsets.StateBackfilling {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the repair is not in the checkpoint: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.Where != req.Where || !st.Purge || len(st.PurgeKeys) != 1 || st.PurgeKeys[0] != req.PurgeKeys[0] {
		t.Fatalf("checkpoint of the repair: %+v, want the request's condition and keys", st)
	}
	if code, out := pgkafka(t, "status", "-c", path); code != 0 || !strings.Contains(out, "backfilling") || !strings.Contains(out, "a repair: at its end, 1 of its keys removed unless the table has them") {
		t.Errorf("status during the repair: exit %d:\n%s", code, out)
	}
	c.kill(t)
	release()

	c = startCapture(t, path)
	defer c.stop(t)
	c.waitLog(t, `"msg":"re-backfill for a repair: keys the table no longer has removed from the topic"`, 30*time.Second)
	rr = waitRawRecords(t, brokers, map[int64]int{1001: 6, 1002: 4}) // + the copy, the repair's d and tombstone; + the copy, the repair's r
	if r1001 = rr[1001]; r1001[len(r1001)-1].Value != nil {
		t.Errorf("key 1001: the last record is not a tombstone")
	}
	if code, out := pgkafka(t, "verify", "-c", path, "--catch-up", "20s"); code != 0 {
		t.Errorf("verify after the repair: exit %d, want 0:\n%s", code, out)
	}
}
