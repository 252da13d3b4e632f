package main

import (
	"bytes"
	"context"
	bin "encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
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
	var r1001, r1002, r1003 []*kgo.Record
	for deadline := time.Now().Add(30 * time.Second); ; {
		r1001, r1002, r1003 = rawRecords(t, brokers, countersTopic, 1001), rawRecords(t, brokers, countersTopic, 1002), rawRecords(t, brokers, countersTopic, 1003)
		if len(r1001) == 1 && len(r1002) == 2 && len(r1003) == 3 { // r; r, u; r, d, tombstone
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("records of 1001, 1002, 1003: %d, %d, %d", len(r1001), len(r1002), len(r1003))
		}
	}
	produceRaw(t, brokers,
		&kgo.Record{Topic: countersTopic, Partition: r1001[0].Partition, Key: r1001[0].Key},                        // a tombstone
		&kgo.Record{Topic: countersTopic, Partition: r1002[0].Partition, Key: r1002[0].Key, Value: r1002[0].Value}, // n = 0 again
		&kgo.Record{Topic: countersTopic, Partition: r1003[0].Partition, Key: r1003[0].Key, Value: r1003[0].Value}) // back from the dead

	code, out = pgkafka(t, "verify", "-c", path, "--catch-up", "20s", "public.counters")
	t.Logf("damaged:\n%s", out)
	for _, want := range []string{
		"public.counters -> it.public.counters: DIFFERENT: 202 rows compared, 202 keys in the topic; 1 missing, 1 extra, 1 with other values",
		"missing from the topic (1): id=1001\n",
		"extra in the topic (1): id=1003\n",
		"    id=1002: columns n\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("damaged topic: no %q", want)
		}
	}
	if code != 1 {
		t.Errorf("damaged topic: exit %d, want 1", code)
	}
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
