package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestKilledWithEveryShapeExactlyOnce is the kill test with the record
// shapes downstream systems ask for on at once: a table routed to a topic
// of its own choosing (kafka.topicRoutes), an outbox, and transaction
// metadata. pgkafka is killed with SIGKILL at random instants while both
// are written: the routed table's changes arrive exactly once, the
// outbox's events too, and every transaction's END counts exactly the
// change records that carry its id, with one BEGIN and one END each.
func TestKilledWithEveryShapeExactlyOnce(t *testing.T) {
	s := newStack(t)
	ctr := newCounters(t, s.db, 10)
	s.db.Exec(t, `CREATE TABLE outbox (id bigserial PRIMARY KEY, aggregatetype text NOT NULL, aggregateid text NOT NULL, type text NOT NULL, payload jsonb)`)
	base := s.config(t, "postgres", cluster.SuperuserPassword(), countersBinding+"\n"+outboxBinding)
	path := tune(t, base, "  transactionWindow: 20ms\n  topicRoutes: [{match: 'public\\.counters', topic: it.routed}]\n", "")
	path = writeConfig(t, readFile(t, path)+"format:\n  transactionMetadata: true\n")
	c := startCapture(t, path)
	ctr.seed(t)
	stop := make(chan struct{})
	counted := ctr.write(t, s.db.DSN(), stop)
	const keys = 10
	events := outboxWrite(t, s.db.DSN(), keys, stop)
	for i := range 6 {
		time.Sleep(time.Duration(150+rand.IntN(600)) * time.Millisecond)
		c.kill(t)
		slotFollowsCheckpoint(t, s, fmt.Sprintf("after kill %d", i+1))
		c = startCapture(t, path)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	n, m := <-counted, <-events

	// The routed table: every change once, in order per key.
	table := ctr.tableState(t)
	brokers, reg := s.broker.ListenAddrs(), s.reg.URL()
	waitCaughtUp(t, brokers, reg, "it.routed", table)
	raw := readTopic(t, brokers, reg, "it.routed")
	checkExactlyOnce(t, counterRecs(t, raw), table)

	// The outbox: every event once.
	var rows int
	if err := s.db.Conn(t).QueryRow(context.Background(), `SELECT count(*) FROM outbox`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if recs := readEvents(t, brokers, []string{"outbox.event.Order", "outbox.event.Customer"}, rows); len(recs) != rows {
		t.Errorf("%d events in Kafka, %d outbox rows", len(recs), rows)
	}

	// Transaction metadata: one BEGIN and one END per transaction id, the
	// END counting the change records that carry the id.
	c.stop(t)
	carried := map[string]int64{}
	for _, r := range raw {
		v, _ := r["_value"].(map[string]any)
		if tx, ok := v["transaction"].(map[string]any); ok {
			carried[fmt.Sprint(tx["id"])]++
		}
	}
	begins, ends := map[string]int{}, map[string]int64{}
	for _, r := range readTopic(t, brokers, reg, "it.transaction") {
		v, _ := r["_value"].(map[string]any)
		id := fmt.Sprint(v["id"])
		switch v["status"] {
		case "BEGIN":
			begins[id]++
		case "END":
			if _, dup := ends[id]; dup {
				t.Errorf("transaction %s: a second END", id)
			}
			ends[id] = toInt(v["event_count"])
		}
	}
	for id, count := range carried {
		if begins[id] != 1 {
			t.Errorf("transaction %s: %d BEGIN records, want 1", id, begins[id])
		}
		if ends[id] != count {
			t.Errorf("transaction %s: END counts %d events, %d change records carry its id", id, ends[id], count)
		}
	}
	if len(ends) != len(carried) {
		t.Errorf("%d END records, %d transactions with change records", len(ends), len(carried))
	}
	t.Logf("%d counter transactions, %d outbox transactions (%d events), %d transactions with metadata, 6 kills", n, m, rows, len(ends))
}
