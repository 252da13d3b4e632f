package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

const countersTopic = "it.public.counters"

// tune adds keys under kafka: and source.advanced of a stack config.
func tune(t *testing.T, path, kafka, advanced string) string {
	t.Helper()
	text := readFile(t, path)
	if kafka != "" {
		text = strings.Replace(text, "kafka:\n", "kafka:\n"+kafka, 1)
	}
	if advanced != "" {
		text = strings.Replace(text, "  advanced: {sslmode: disable}\n", "  advanced:\n    sslmode: disable\n"+advanced, 1)
	}
	return writeConfig(t, text)
}

// finishWrites stops the writer, waits until Kafka holds the table's state,
// stops pgkafka cleanly and checks that every change arrived exactly once.
// It returns how many transactions the writer committed.
func finishWrites(t *testing.T, s *stack, c *capture, ctr *counters, stop chan struct{}, written <-chan int) int {
	t.Helper()
	close(stop)
	n := <-written
	table := ctr.tableState(t)
	recs := waitCaughtUp(t, s.broker.ListenAddrs(), s.reg.URL(), countersTopic, table)
	c.stop(t)
	checkExactlyOnce(t, recs, table)
	return n
}

// slotFollowsCheckpoint asserts the slot is not confirmed past the checkpoint.
func slotFollowsCheckpoint(t *testing.T, s *stack, when string) {
	t.Helper()
	cp := checkpoint(t, s.broker.ListenAddrs(), "it")
	confirmed := slotConfirmed(t, s.db)
	c, err := pglogrepl.ParseLSN(confirmed)
	if err != nil {
		t.Fatalf("slot confirmed_flush_lsn %q: %v", confirmed, err)
	}
	var at pglogrepl.LSN
	if cp != nil {
		at = cp.LSN
	}
	if c > at {
		t.Fatalf("%s: the slot is confirmed to %s, past the checkpoint %s", when, c, at)
	}
}

// TestKilledAtRandomExactlyOnce kills pgkafka with SIGKILL at random
// instants while transactions commit: a read_committed consumer sees every
// change once, and the slot is never confirmed past the checkpoint.
func TestKilledAtRandomExactlyOnce(t *testing.T) {
	s := newStack(t)
	ctr := newCounters(t, s.db, 20)
	path := tune(t, s.config(t, "postgres", cluster.SuperuserPassword(), countersBinding), "  transactionWindow: 20ms\n", "")
	c := startCapture(t, path)
	ctr.seed(t)
	stop := make(chan struct{})
	written := ctr.write(t, s.db.DSN(), stop)
	for i := range 10 {
		time.Sleep(time.Duration(150+rand.IntN(600)) * time.Millisecond)
		c.kill(t)
		slotFollowsCheckpoint(t, s, fmt.Sprintf("after kill %d", i+1))
		c = startCapture(t, path)
	}
	time.Sleep(300 * time.Millisecond)
	n := finishWrites(t, s, c, ctr, stop, written)
	slotFollowsCheckpoint(t, s, "after the clean stop")
	t.Logf("%d writer transactions, 10 kills", n)
}

// TestPostgresRestartExactlyOnce restarts PostgreSQL under the capture: it
// retries, resumes from its checkpoint, and loses or repeats nothing.
func TestPostgresRestartExactlyOnce(t *testing.T) {
	own := pgtest.Start(t)
	s := newStack(t)
	s.db = own.NewDatabase(t)
	ctr := newCounters(t, s.db, 10)
	path := writeConfig(t, strings.Replace(readFile(t, s.config(t, "postgres", own.SuperuserPassword(), countersBinding)), cluster.Address(), own.Address(), 1))
	c := startCapture(t, path)
	ctr.seed(t)
	stop := make(chan struct{})
	written := ctr.write(t, s.db.DSN(), stop)
	time.Sleep(500 * time.Millisecond)
	if err := own.Restart(); err != nil {
		t.Fatal(err)
	}
	c.waitLog(t, "retrying from the last checkpoint", 30*time.Second)
	time.Sleep(time.Second)
	n := finishWrites(t, s, c, ctr, stop, written)
	t.Logf("%d writer transactions across a PostgreSQL restart", n)
}

// TestBrokerRestartExactlyOnce restarts the Kafka broker (persisting to
// disk) under the capture.
func TestBrokerRestartExactlyOnce(t *testing.T) {
	s := newStack(t)
	dir := t.TempDir()
	s.broker.Close()
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir), kfake.SyncWrites())
	if err != nil {
		t.Fatal(err)
	}
	addr := broker.ListenAddrs()[0]
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	s.broker = broker
	t.Cleanup(func() { s.broker.Close() })
	ctr := newCounters(t, s.db, 10)
	path := s.config(t, "postgres", cluster.SuperuserPassword(), countersBinding)
	c := startCapture(t, path)
	ctr.seed(t)
	stop := make(chan struct{})
	written := ctr.write(t, s.db.DSN(), stop)
	time.Sleep(700 * time.Millisecond)
	s.broker.Close()
	time.Sleep(500 * time.Millisecond)
	var p int
	fmt.Sscan(port, &p)
	if s.broker, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir), kfake.SyncWrites(), kfake.Ports(p)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	n := finishWrites(t, s, c, ctr, stop, written)
	t.Logf("%d writer transactions across a broker restart", n)
}

// TestLargeTransactionSplitAndKilled: a transaction of 300k rows with
// kafka.maxTransactionRecords 50k is split across Kafka transactions; a
// kill in the middle of it resumes inside it, exactly once.
func TestLargeTransactionSplitAndKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("300k rows")
	}
	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE big (id int PRIMARY KEY, v text)`)
	path := tune(t, s.config(t, "postgres", cluster.SuperuserPassword(), "  - resource: {namespace: public, stream: big, syncMode: incremental}"),
		"  maxTransactionRecords: 50000\n", "")
	c := startCapture(t, path)
	s.db.Exec(t, `INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, 300000) g`)
	// A checkpoint at or past this position, not partial, would mean the
	// transaction went whole (idle positions checkpointed while it was
	// being written are below it).
	var after string
	if err := s.db.Conn(t).QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	afterLSN, _ := pglogrepl.ParseLSN(after)
	// Kill once a checkpoint says Kafka holds part of it.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cp := checkpoint(t, s.broker.ListenAddrs(), "it")
		if cp != nil && cp.Partial != nil {
			t.Logf("killing with %d changes of transaction %d in Kafka", cp.Partial.Changes, cp.Partial.Xid)
			break
		}
		if cp != nil && cp.Partial == nil && cp.LSN >= afterLSN {
			t.Fatal("the transaction was committed in Kafka before any partial checkpoint was seen")
		}
		if time.Now().After(deadline) {
			t.Fatal("no partial checkpoint within 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.kill(t)
	slotFollowsCheckpoint(t, s, "after the kill inside the transaction")
	c = startCapture(t, path)
	deadline = time.Now().Add(2 * time.Minute)
	for {
		cp := checkpoint(t, s.broker.ListenAddrs(), "it")
		if cp != nil && cp.Partial == nil && cp.LSN > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the transaction never completed after the restart")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.stop(t)
	recs := readKeys(t, s.broker.ListenAddrs(), s.reg.URL(), "it.public.big")
	seen := make(map[int64]int, 300000)
	for _, m := range recs {
		seen[toInt(m["_key"].(map[string]any)["id"])]++
	}
	missing, repeated := 0, 0
	for id := int64(1); id <= 300000; id++ {
		switch seen[id] {
		case 0:
			missing++
		case 1:
		default:
			repeated++
		}
	}
	if missing > 0 || repeated > 0 || len(recs) != 300000 {
		t.Fatalf("%d records: %d rows missing, %d repeated", len(recs), missing, repeated)
	}
	if logs := c.logs.String(); !strings.Contains(logs, `"partial":true`) {
		t.Errorf("the restart does not say it resumes inside a transaction:\n%s", logs)
	}
}

// TestSlotLostWithCheckpointIsFatal: a checkpoint exists but the slot is
// gone; pgkafka refuses to go on and says how to recover.
func TestSlotLostWithCheckpointIsFatal(t *testing.T) {
	s := newStack(t)
	ctr := newCounters(t, s.db, 3)
	path := s.config(t, "postgres", cluster.SuperuserPassword(), countersBinding)
	c := startCapture(t, path)
	ctr.seed(t)
	waitCaughtUp(t, s.broker.ListenAddrs(), s.reg.URL(), countersTopic, ctr.tableState(t))
	c.stop(t)
	dropSlot(t, s.db)
	c = startCaptureNoWait(t, path)
	if code := c.exit(t, time.Minute); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	logs := c.logs.String()
	for _, want := range []string{"flow_slot", "does not exist", "checkpoint", "tombstone"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the message lacks %q:\n%s", want, logs)
		}
	}
}

// TestSlotLostRebackfillKilled: with onSlotLost: rebackfill, a capture
// killed in the middle of the re-backfill after a lost slot (held there
// by a lock on the table) leaves a checkpoint that says so, and `pgkafka
// status` shows it; the next capture does the re-backfill again and
// removes the key of the row deleted while no slot existed; status then
// says it is done.
func TestSlotLostRebackfillKilled(t *testing.T) {
	s := newStack(t)
	ctr := newCounters(t, s.db, 20)
	ctr.seed(t)
	s.db.Exec(t, `INSERT INTO counters VALUES (1001, 0, 'a'), (1002, 0, 'b')`)
	path := tune(t, s.config(t, "postgres", cluster.SuperuserPassword(), countersBinding), "  transactionWindow: 20ms\n", "    onSlotLost: rebackfill\n")
	c := startCapture(t, path)
	brokers := s.broker.ListenAddrs()
	c.stop(t)
	dropSlot(t, s.db)
	s.db.Exec(t, `DELETE FROM counters WHERE id = 1001; UPDATE counters SET n = 9 WHERE id = 1002`)

	release := lockTable(t, s.db, "counters")
	c = startCaptureNoWait(t, path)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if cp := checkpoint(t, brokers, "it"); cp != nil && cp.SlotLost != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot loss in the checkpoint:\n%s", c.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, out := pgkafka(t, "status", "-c", path); code != 0 || !strings.Contains(out, "slot lost   flow_slot") || !strings.Contains(out, "re-backfill after a lost slot in progress: 1 tables left") {
		t.Errorf("status during the re-backfill: exit %d:\n%s", code, out)
	}
	c.kill(t)
	release()

	c = startCapture(t, path)
	defer c.stop(t)
	c.waitLog(t, `"msg":"re-backfill after a lost slot: keys the table no longer has removed from the topic"`, 30*time.Second)
	if code, out := pgkafka(t, "verify", "-c", path, "--catch-up", "20s"); code != 0 {
		t.Errorf("verify after the re-backfill: exit %d, want 0:\n%s", code, out)
	}
	var last valueRec
	for _, r := range counterRecs(t, readTopic(t, brokers, s.reg.URL(), countersTopic)) {
		if r.id == 1001 {
			last = r
		}
	}
	if !last.tombstone {
		t.Errorf("key 1001 (deleted while no slot existed): last record %+v, want a tombstone", last)
	}
	if code, out := pgkafka(t, "status", "-c", path); code != 0 || !strings.Contains(out, "re-backfill done") {
		t.Errorf("status after the re-backfill: exit %d:\n%s", code, out)
	}
}

// dropSlot drops the slot flow_slot of a capture that stopped, once the
// server has released it: its WAL sender sees the connection close a
// moment after pgkafka exits.
func dropSlot(t *testing.T, db *pgtest.DB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	conn := db.Conn(t)
	for {
		var active bool
		if err := conn.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = 'flow_slot'`).Scan(&active); err != nil {
			t.Fatal(err)
		}
		if !active {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slot flow_slot still active 30s after pgkafka exited")
		}
		time.Sleep(20 * time.Millisecond)
	}
	db.Exec(t, `SELECT pg_drop_replication_slot('flow_slot')`)
}

// TestIdleCaptureFollowsNeighbours: a captured database where nothing
// changes, while another database of the server writes: the slot's
// restart_lsn keeps moving (keepalive positions are checkpointed, and
// heartbeats are written).
func TestIdleCaptureFollowsNeighbours(t *testing.T) {
	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE quiet (id int PRIMARY KEY)`)
	path := tune(t, s.config(t, "postgres", cluster.SuperuserPassword(), "  - resource: {namespace: public, stream: quiet, syncMode: incremental}"), "", "    heartbeatInterval: 1s\n")
	c := startCapture(t, path)
	neighbour := cluster.NewDatabase(t)
	neighbour.Exec(t, `CREATE TABLE noise (id serial PRIMARY KEY, v text)`)
	slotRestart := slotRestarts(t, s)
	first := slotRestart()
	deadline := time.Now().Add(60 * time.Second)
	for {
		neighbour.Exec(t, `INSERT INTO noise (v) SELECT repeat('n', 200) FROM generate_series(1, 2000)`)
		if now := slotRestart(); now > first+1<<20 {
			t.Logf("restart_lsn moved from %s to %s", first, now)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restart_lsn stuck at %s while the neighbour wrote for a minute:\n%s", first, c.logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	slotFollowsCheckpoint(t, s, "idle")
	c.stop(t)
}

// slotRestarts returns a reader of the slot's restart_lsn, on one
// connection for all its reads (a connection per read ran a slow run out
// of connections).
func slotRestarts(t *testing.T, s *stack) func() pglogrepl.LSN {
	t.Helper()
	conn := s.db.Conn(t)
	return func() pglogrepl.LSN {
		t.Helper()
		var v string
		if err := conn.QueryRow(context.Background(), `SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = 'flow_slot' AND database = current_database()`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		lsn, err := pglogrepl.ParseLSN(v)
		if err != nil {
			t.Fatal(err)
		}
		return lsn
	}
}

// TestHardStopAborts: a second SIGTERM, or the shutdownTimeout running out,
// during a long transaction aborts the open Kafka transaction and exits 1;
// the next run delivers everything exactly once.
func TestHardStopAborts(t *testing.T) {
	for _, tc := range []struct {
		name, timeout, message string
		signals                int
	}{
		{"second signal", "30s", "second signal (terminated): aborting the open transaction", 2},
		{"shutdown timeout", "200ms", "no clean stop within shutdownTimeout (200ms): aborting", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t)
			s.db.Exec(t, `CREATE TABLE big (id int PRIMARY KEY, v text)`)
			path := tune(t, s.config(t, "postgres", cluster.SuperuserPassword(), "  - resource: {namespace: public, stream: big, syncMode: incremental}"),
				"  maxTransactionRecords: 1000000\n", "")
			path = writeConfig(t, "shutdownTimeout: "+tc.timeout+"\n"+readFile(t, path))
			c := startCapture(t, path)
			s.db.Exec(t, `INSERT INTO big SELECT g, repeat('v', 100) FROM generate_series(1, 200000) g`)
			time.Sleep(300 * time.Millisecond) // the transaction is being read
			for range tc.signals {
				_ = c.cmd.Process.Signal(syscall.SIGTERM)
				time.Sleep(50 * time.Millisecond)
			}
			code := c.exit(t, 30*time.Second)
			if logs := c.logs.String(); code == 0 {
				t.Logf("the transaction was in Kafka before the stop was forced: a clean stop")
			} else if code != 1 || !strings.Contains(logs, tc.message) {
				t.Fatalf("exit %d, want 1 with %q:\n%s", code, tc.message, logs)
			}
			c = startCapture(t, path)
			deadline := time.Now().Add(2 * time.Minute)
			for {
				recs := readKeys(t, s.broker.ListenAddrs(), s.reg.URL(), "it.public.big")
				if len(recs) >= 200000 {
					seen := map[int64]bool{}
					for _, m := range recs {
						id := toInt(m["_key"].(map[string]any)["id"])
						if seen[id] {
							t.Fatalf("row %d delivered twice", id)
						}
						seen[id] = true
					}
					if len(recs) != 200000 {
						t.Fatalf("%d records for 200000 rows", len(recs))
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d of 200000 rows after 2 minutes", len(recs))
				}
				time.Sleep(200 * time.Millisecond)
			}
			c.stop(t)
		})
	}
}

// TestStatus prints the checkpoint, the slot and the tables.
func TestStatus(t *testing.T) {
	s := newStack(t)
	ctr := newCounters(t, s.db, 3)
	path := s.config(t, "postgres", cluster.SuperuserPassword(), countersBinding)
	code, out := pgkafka(t, "status", "-c", path)
	if code != 0 || !strings.Contains(out, "checkpoint  none yet") || !strings.Contains(out, "slot        flow_slot does not exist") {
		t.Fatalf("status before the first run: exit %d\n%s", code, out)
	}
	c := startCapture(t, path)
	ctr.seed(t)
	waitCaughtUp(t, s.broker.ListenAddrs(), s.reg.URL(), countersTopic, ctr.tableState(t))
	c.stop(t)
	cp := checkpoint(t, s.broker.ListenAddrs(), "it")
	code, out = pgkafka(t, "status", "-c", path)
	for _, want := range []string{
		"checkpoint  LSN " + cp.LSN.String(),
		"slot        flow_slot: confirmed_flush_lsn " + slotConfirmed(t, s.db),
		"inactive", "lag ", "public.counters", "streaming", "topic it.public.counters",
		`instance    none running (no session holds the lease of "it"); 0 standby`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestBackfillKilledResumes kills pgkafka in the middle of a backfill: the
// next run resumes from the checkpoint's cursor and no row is read twice.
func TestBackfillKilledResumes(t *testing.T) {
	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE wide (region text, id int, v text, PRIMARY KEY (region, id));
		INSERT INTO wide SELECT (ARRAY['eu','us','Asia',''])[1 + g % 4], g, repeat('w', 150) FROM generate_series(1, 20000) g;
		ANALYZE wide`)
	path := tune(t, s.config(t, "postgres", cluster.SuperuserPassword(), "  - resource: {namespace: public, stream: wide, syncMode: incremental}"),
		"", "    backfill_chunk_size: 97\n")
	c := startCaptureNoWait(t, path)
	deadline := time.Now().Add(time.Minute)
	for {
		cp := checkpoint(t, s.broker.ListenAddrs(), "it")
		if cp != nil && cp.Tables["public.wide"].State == "backfilling" && len(cp.Tables["public.wide"].Cursor) > 0 {
			t.Logf("killing with the cursor at %s", cp.Tables["public.wide"].Cursor)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backfill cursor in a checkpoint after a minute:\n%s", c.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.kill(t)
	// status estimates the share read from the cursor and the statistics.
	code, out := pgkafka(t, "status", "-c", path)
	var pct float64
	var est int
	if i := strings.Index(out, "(about "); code != 0 || i < 0 {
		t.Errorf("status of an interrupted backfill lacks its share read: exit %d\n%s", code, out)
	} else if _, err := fmt.Sscanf(out[i:], "(about %f%% of ~%d rows)", &pct, &est); err != nil || pct <= 0 || pct >= 100 || est != 20000 {
		t.Errorf("status of an interrupted backfill: %q (%v)\n%s", out[i:], err, out)
	}
	c = startCapture(t, path)
	if logs := c.logs.String(); !strings.Contains(logs, `"resumed":true`) {
		t.Errorf("the backfill did not resume from its cursor:\n%s", logs)
	}
	c.stop(t)
	recs := readKeys(t, s.broker.ListenAddrs(), s.reg.URL(), "it.public.wide")
	seen := map[string]int{}
	for _, m := range recs {
		k := m["_key"].(map[string]any)
		seen[fmt.Sprint(k["region"], "/", k["id"])]++
	}
	repeated := 0
	for _, n := range seen {
		if n > 1 {
			repeated++
		}
	}
	if len(seen) != 20000 || repeated > 0 || len(recs) != 20000 {
		t.Fatalf("%d records, %d keys, %d read more than once", len(recs), len(seen), repeated)
	}
	if st := checkpoint(t, s.broker.ListenAddrs(), "it").Tables["public.wide"]; st.State != "streaming" {
		t.Errorf("table state after the backfill: %+v", st)
	}
}

// TestBackfillCommand: `pgkafka backfill -c FILE TABLE` makes the running
// capture read the table again.
func TestBackfillCommand(t *testing.T) {
	s := newStack(t)
	ctr := newCounters(t, s.db, 5)
	ctr.seed(t) // before the start: backfilled
	path := s.config(t, "postgres", cluster.SuperuserPassword(), countersBinding)
	c := startCapture(t, path)
	if code, out := pgkafka(t, "backfill", "-c", path, "public.nope"); code != 2 || !strings.Contains(out, "public.nope is not among the bindings") {
		t.Fatalf("backfill of an unbound table: exit %d\n%s", code, out)
	}
	if code, out := pgkafka(t, "backfill", "-c", path, "public.counters"); code != 0 || !strings.Contains(out, "backfill of public.counters requested") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		reads := 0
		for _, r := range counterRecs(t, readTopic(t, s.broker.ListenAddrs(), s.reg.URL(), countersTopic)) {
			if r.op == "r" {
				reads++
			}
		}
		if reads == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d 'r' records a minute after the request, want 10:\n%s", reads, c.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.stop(t)
}
