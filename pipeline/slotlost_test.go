package pipeline_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/offsets"
	"github.com/pgkafka/pgkafka/pgsrc"
)

// dropSlot drops flow_slot once the stopped capture's WAL sender let it go.
func dropSlot(t *testing.T, e *env) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := e.db.Conn(t).QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'flow_slot' AND active`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slot flow_slot still active 30s after the capture stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.db.Exec(t, `SELECT pg_drop_replication_slot('flow_slot')`)
}

// TestSlotLostRebackfill: rows deleted, updated and inserted while no slot
// exists; with onSlotLost: rebackfill the next start makes the slot again,
// backfills the table, and removes the deleted rows' keys (a 'd' and a
// tombstone each): the topic's compacted state is the table again, and
// a row inserted while the re-backfill runs survives.
func TestSlotLostRebackfill(t *testing.T) {
	e := newEnv(t, "public.sl")
	e.logs = &lockedBuffer{}
	e.cfg.Source.Advanced.BackfillChunkSize = 50
	e.db.Exec(t, `CREATE TABLE sl (id int PRIMARY KEY, v text NOT NULL); INSERT INTO sl SELECT g, 'v' || g FROM generate_series(1, 500) g`)
	topic := "test.public.sl"
	rn := e.start(t)
	e.db.Exec(t, `DELETE FROM sl WHERE id = 500`)
	e.consume(t, []string{topic}, 30*time.Second, func(rs []rec) bool { return countOps(rs, topic, "d") >= 1 })
	rn.stop(t)
	dropSlot(t, e)
	// Rows deleted while no slot exists.
	e.db.Exec(t, `DELETE FROM sl WHERE id % 7 = 0; UPDATE sl SET v = 'changed' WHERE id % 5 = 0; INSERT INTO sl SELECT g, 'new' FROM generate_series(1001, 1010) g`)

	e.cfg.Source.Advanced.OnSlotLost = pgsrc.SlotLostRebackfill
	rn = e.launch(t)
	// Writes during the re-backfill: a key inserted must survive, one
	// deleted must go.
	e.db.Exec(t, `INSERT INTO sl VALUES (2000, 'during'); DELETE FROM sl WHERE id = 1; INSERT INTO sl VALUES (7, 'back')`)
	select {
	case <-rn.r.Backfilled():
	case err := <-rn.done:
		t.Fatalf("runner ended before its backfills finished: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("backfills not finished after 60s")
	}
	e.db.Exec(t, `INSERT INTO sl VALUES (2001, 'after')`)
	e.consume(t, []string{topic}, 30*time.Second, func(rs []rec) bool { return state(rs, topic)["id=2001;"] != nil })
	rn.stop(t)
	rs := e.settled(t, []string{topic}, 1)
	sameRows(t, state(rs, topic), pgRows(t, e.db, `SELECT id, v FROM sl`, "id"))
	// Each deleted row's key ends with a tombstone.
	last := map[string]rec{}
	for _, r := range rs {
		if r.Topic == topic {
			last[string(r.RawKey)] = r
		}
	}
	tombstones := 0
	for _, r := range last {
		if r.Tombstone {
			tombstones++
		}
	}
	var rows int
	if err := e.db.Conn(t).QueryRow(context.Background(), `SELECT count(*) FROM sl`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if tombstones != len(last)-rows {
		t.Errorf("%d keys end with a tombstone, want %d (keys %d, rows %d)", tombstones, len(last)-rows, len(last), rows)
	}
	if n := countOps(rs, topic, "d"); n < 72 {
		t.Errorf("%d 'd' records, want at least %d", n, 72)
	}
	logs := e.logs.String()
	for _, want := range []string{"replication slot lost", "slot=flow_slot", "keys the table no longer has removed from the topic"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	cp, err := offsets.Load(context.Background(), []kgo.Opt{kgo.SeedBrokers(e.cfg.Kafka.Brokers...)}, "pgkafka-offsets", "test")
	if err != nil {
		t.Fatal(err)
	}
	if cp.SlotLost == nil || cp.SlotLost.Slot != "flow_slot" || cp.SlotLost.Pending {
		t.Errorf("checkpoint slotLost %+v, want flow_slot, not pending", cp.SlotLost)
	}
	if st := cp.Tables["public.sl"]; st.State != offsets.StateStreaming || st.Purge {
		t.Errorf("table state %+v, want streaming without the purge mark", st)
	}
}
