package pipeline_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// opsOf renders a topic's records as op+key, tombstones as "~key".
func opsOf(rs []rec) string {
	var out []string
	for _, r := range rs {
		if r.Tombstone {
			out = append(out, fmt.Sprintf("~%v", r.Key["id"]))
			continue
		}
		out = append(out, fmt.Sprintf("%s%v", r.Op, r.Key["id"]))
	}
	return strings.Join(out, " ")
}

// settled is a done function: at least n records, and reading went on for
// d, so that a record written twice would show.
func settled(n int, d time.Duration) func([]rec) bool {
	t0 := time.Now()
	return func(rs []rec) bool { return len(rs) >= n && time.Since(t0) >= d }
}

// whileRunning is atLeast(n) that fails the test at once when the capture ends.
func whileRunning(t *testing.T, rn *running, n int) func([]rec) bool {
	return func(rs []rec) bool {
		select {
		case err := <-rn.done:
			rn.done <- err
			t.Fatalf("the capture ended: %v", err)
		default:
		}
		return len(rs) >= n
	}
}

// wantLog fails the test unless the log has a line with every part.
func wantLog(t *testing.T, logs *lockedBuffer, parts ...string) {
	t.Helper()
	for _, line := range strings.Split(logs.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return
		}
	}
	t.Errorf("no log line with %q in:\n%s", parts, logs.String())
}

// stallBehind stops Kafka taking records, then writes a large transaction
// to table (id int PRIMARY KEY, pad text), bound and created, which fills
// the pipeline: what is committed next waits in the stream until the
// returned function is called.
func (e *env) stallBehind(t *testing.T, table string) (open func()) {
	t.Helper()
	release := make(chan struct{})
	released := false
	open = func() {
		if !released {
			released = true
			close(release)
		}
	}
	t.Cleanup(open)
	e.broker.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		e.broker.SleepControl(func() { <-release })
		return nil, nil, false
	})
	e.db.Exec(t, `INSERT INTO `+table+` SELECT i, repeat('x', 200) FROM generate_series(1, 300000) i`)
	return open
}

// TestDroppedTableWhileRunning: a captured table dropped while the capture
// runs, with the stream behind the catalog (Kafka stalls while the table
// changes shape, changes again and is dropped, so the Relation message of
// its new shape makes pgkafka read a catalog that has lost it): every
// change committed before the drop reaches its topic exactly once, the
// binding ends with a log line, and the capture goes on with the other
// tables (it stopped, saying the table did not exist, before). A restart
// with the binding still configured starts, warning that it names a
// dropped table whose changes are all in its topic.
func TestDroppedTableWhileRunning(t *testing.T) {
	e := newEnv(t, "public.dd", "public.other", "public.later")
	e.logs = &lockedBuffer{}
	e.db.Exec(t, `CREATE TABLE dd (id int PRIMARY KEY, v text NOT NULL); CREATE TABLE other (id int PRIMARY KEY, pad text);
		CREATE TABLE later (id int PRIMARY KEY); INSERT INTO dd VALUES (1, 'a'), (2, 'b')`)
	e.cfg.Kafka.MaxTransactionRecords = 1000
	rn := e.start(t)
	e.consume(t, []string{"test.public.dd"}, 30*time.Second, atLeast(2))

	// Kafka takes no record until open: the pipeline fills with the
	// large transaction, and what follows it waits in the stream.
	open := e.stallBehind(t, "other")
	e.db.Exec(t, `INSERT INTO dd VALUES (3, 'c')`)
	e.db.Exec(t, `ALTER TABLE dd ADD COLUMN w int`)
	e.db.Exec(t, `INSERT INTO dd VALUES (4, 'd', 40); UPDATE dd SET v = 'a2' WHERE id = 1`)
	e.db.Exec(t, `DROP TABLE dd`)
	open()

	e.db.Exec(t, `INSERT INTO later VALUES (1)`)
	e.consume(t, []string{"test.public.later"}, 90*time.Second, whileRunning(t, rn, 1))
	rs := e.consume(t, []string{"test.public.dd"}, 30*time.Second, settled(5, 2*time.Second))
	if got := opsOf(rs); got != "r1 r2 c3 c4 u1" {
		t.Fatalf("dd's topic holds %s, want r1 r2 c3 c4 u1 (every change before the drop, once):\n%s", got, dump(rs))
	}
	if fmt.Sprint(rs[3].After["w"]) != "40" || rs[4].After["v"] != "a2" {
		t.Errorf("changes after the column was added: %v, %v", rs[3].After, rs[4].After)
	}
	wantLog(t, e.logs, "captured table was dropped", "table=public.dd", "relation=", "topic=test.public.dd", "lsn=")
	wantLog(t, e.logs, "its binding ends", "table=public.dd", "topic=test.public.dd", "lsn=")
	rn.stop(t)

	// The binding still there: the restart starts, and says to remove it.
	rn2 := e.start(t)
	wantLog(t, e.logs, "level=WARN", "the binding names a dropped table whose changes are all in its topic", "table=public.dd", "topic=test.public.dd")
	e.db.Exec(t, `INSERT INTO later VALUES (2)`)
	e.consume(t, []string{"test.public.later"}, 30*time.Second, atLeast(2))
	if rs := e.consume(t, []string{"test.public.dd"}, 30*time.Second, settled(5, 2*time.Second)); opsOf(rs) != "r1 r2 c3 c4 u1" {
		t.Errorf("after the restart dd's topic holds %s, want r1 r2 c3 c4 u1", opsOf(rs))
	}
	rn2.stop(t)
}

// TestDroppedTableWhileStopped: a captured table changed, then dropped,
// while pgkafka is stopped, its binding still configured: the restart
// captures the changes between the checkpoint and the drop (the slot
// still holds them) into its topic, exactly once, ends the binding with a
// log line, and streams the other tables (it stopped, saying the table did
// not exist, before, and the changes were lost once its binding was
// removed). The next restart starts and warns to remove the binding.
func TestDroppedTableWhileStopped(t *testing.T) {
	e := newEnv(t, "public.dd", "public.later")
	e.logs = &lockedBuffer{}
	e.db.Exec(t, `CREATE TABLE dd (id int PRIMARY KEY, v text); CREATE TABLE later (id int PRIMARY KEY); INSERT INTO dd VALUES (1, 'a'), (2, 'b')`)
	rn := e.start(t)
	e.db.Exec(t, `INSERT INTO dd VALUES (3, 'c')`)
	e.consume(t, []string{"test.public.dd"}, 30*time.Second, atLeast(3))
	rn.stop(t)

	e.db.Exec(t, `INSERT INTO dd VALUES (4, 'd'), (5, 'e')`)
	e.db.Exec(t, `UPDATE dd SET v = 'a2' WHERE id = 1; DELETE FROM dd WHERE id = 2`)
	e.db.Exec(t, `DROP TABLE dd`)

	rn2 := e.start(t)
	e.db.Exec(t, `INSERT INTO later VALUES (1)`)
	e.consume(t, []string{"test.public.later"}, 30*time.Second, whileRunning(t, rn2, 1))
	rs := e.consume(t, []string{"test.public.dd"}, 30*time.Second, settled(8, 2*time.Second))
	if got := opsOf(rs); got != "r1 r2 c3 c4 c5 u1 d2 ~2" {
		t.Fatalf("dd's topic holds %s, want r1 r2 c3 c4 c5 u1 d2 ~2 (every change before the drop, once):\n%s", got, dump(rs))
	}
	if rs[5].After["v"] != "a2" {
		t.Errorf("update after the restart: %v", rs[5].After)
	}
	wantLog(t, e.logs, "captured table was dropped", "table=public.dd", "topic=test.public.dd", "lsn=")
	wantLog(t, e.logs, "its binding ends", "table=public.dd", "topic=test.public.dd", "lsn=")
	rn2.stop(t)

	rn3 := e.start(t)
	wantLog(t, e.logs, "level=WARN", "the binding names a dropped table whose changes are all in its topic", "table=public.dd", "topic=test.public.dd")
	e.db.Exec(t, `INSERT INTO later VALUES (2)`)
	e.consume(t, []string{"test.public.later"}, 30*time.Second, atLeast(2))
	if rs := e.consume(t, []string{"test.public.dd"}, 30*time.Second, settled(8, 2*time.Second)); opsOf(rs) != "r1 r2 c3 c4 c5 u1 d2 ~2" {
		t.Errorf("after the next restart dd's topic holds %s", opsOf(rs))
	}
	rn3.stop(t)
}

// TestDroppedTableRecreated: a captured table dropped and created again
// under its name while pgkafka is stopped: the former relation's changes
// up to the drop reach the topic exactly once, and the binding captures
// the new table (another relation ID) from its creation: backfilled, then
// streamed, in the same topic, after them.
func TestDroppedTableRecreated(t *testing.T) {
	e := newEnv(t, "public.dd", "public.later")
	e.logs = &lockedBuffer{}
	e.db.Exec(t, `CREATE TABLE dd (id int PRIMARY KEY, v text); CREATE TABLE later (id int PRIMARY KEY); INSERT INTO dd VALUES (1, 'a'), (2, 'b')`)
	rn := e.start(t)
	e.db.Exec(t, `INSERT INTO dd VALUES (3, 'c')`)
	e.consume(t, []string{"test.public.dd"}, 30*time.Second, atLeast(3))
	rn.stop(t)

	e.db.Exec(t, `INSERT INTO dd VALUES (4, 'd'); UPDATE dd SET v = 'a2' WHERE id = 1`)
	e.db.Exec(t, `DROP TABLE dd; CREATE TABLE dd (id int PRIMARY KEY, v text); INSERT INTO dd VALUES (1, 'new'), (9, 'nine')`)

	rn2 := e.start(t)
	e.db.Exec(t, `INSERT INTO dd VALUES (10, 'ten')`)
	rs := e.consume(t, []string{"test.public.dd"}, 30*time.Second, settled(8, 2*time.Second))
	if got := opsOf(rs); got != "r1 r2 c3 c4 u1 r1 r9 c10" {
		t.Fatalf("dd's topic holds %s, want r1 r2 c3 c4 u1 (the former table's), then r1 r9 c10 (the new one's):\n%s", got, dump(rs))
	}
	if rs[4].After["v"] != "a2" || rs[5].After["v"] != "new" {
		t.Errorf("the former table's last update %v, the new table's row %v", rs[4].After, rs[5].After)
	}
	wantLog(t, e.logs, "captured table was dropped and created again", "table=public.dd", "relation=", "new_relation=", "topic=test.public.dd")
	rn2.stop(t)

	// The new table is the binding's now: a restart neither warns nor
	// backfills it again.
	rn3 := e.start(t)
	e.db.Exec(t, `INSERT INTO dd VALUES (11, 'eleven')`)
	if rs := e.consume(t, []string{"test.public.dd"}, 30*time.Second, settled(9, 2*time.Second)); opsOf(rs) != "r1 r2 c3 c4 u1 r1 r9 c10 c11" {
		t.Errorf("after the next restart dd's topic holds %s", opsOf(rs))
	}
	if strings.Contains(e.logs.String(), "the binding names a dropped table") {
		t.Error("a restart warns of a dropped table though its binding captures the table created since")
	}
	rn3.stop(t)
}

// TestDroppedTableDuringBackfill: a table dropped while it is backfilled:
// the backfill ends (the session is retried, once, and the next one finds
// the table dropped), its rows read before are in its topic once each, and
// the capture goes on with the other tables (it stopped, saying the table
// did not exist, before).
func TestDroppedTableDuringBackfill(t *testing.T) {
	e := newEnv(t, "public.big", "public.later")
	e.logs = &lockedBuffer{}
	e.db.Exec(t, `CREATE TABLE big (id int PRIMARY KEY); CREATE TABLE later (id int PRIMARY KEY); INSERT INTO big SELECT generate_series(1, 2000)`)
	e.cfg.Source.Advanced.BackfillChunkSize = 10
	e.cfg.Kafka.TransactionWindow = time.Millisecond

	// After a few Kafka transactions, Kafka takes no record until the
	// table is dropped.
	conn := e.db.Conn(t)
	stalled, release := make(chan struct{}), make(chan struct{})
	produced := 0
	e.broker.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if produced++; produced == 8 {
			close(stalled)
			e.broker.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	dropped := make(chan error, 1)
	go func() {
		defer close(release)
		select {
		case <-stalled:
		case <-time.After(60 * time.Second):
			dropped <- fmt.Errorf("no stall")
			return
		}
		_, err := conn.Exec(context.Background(), `DROP TABLE big`)
		dropped <- err
	}()
	rn := e.start(t)
	if err := <-dropped; err != nil {
		t.Fatal(err)
	}
	e.db.Exec(t, `INSERT INTO later VALUES (1)`)
	e.consume(t, []string{"test.public.later"}, 30*time.Second, whileRunning(t, rn, 1))
	rs := e.consume(t, []string{"test.public.big"}, 30*time.Second, settled(1, 2*time.Second))
	for i, r := range rs {
		if r.Op != "r" || fmt.Sprint(r.Key["id"]) != fmt.Sprint(i+1) {
			t.Fatalf("big's topic holds %s, want r1 r2 ... rN, N < 2000:\n%s", opsOf(rs), dump(rs))
		}
	}
	if len(rs) >= 2000 {
		t.Fatalf("the backfill finished (%d rows) before the drop: the test proves nothing", len(rs))
	}
	wantLog(t, e.logs, "capture failed; retrying", "backfill of public.big")
	wantLog(t, e.logs, "captured table was dropped", "table=public.big", "topic=test.public.big", "lsn=")
	rn.stop(t)
}

// TestDroppedOnlyBinding: the only bound table dropped while pgkafka is
// stopped: the restart captures its last changes, ends its binding, and
// keeps running with nothing else bound, as the next restart does.
func TestDroppedOnlyBinding(t *testing.T) {
	e := newEnv(t, "public.dd")
	e.logs = &lockedBuffer{}
	e.db.Exec(t, `CREATE TABLE dd (id int PRIMARY KEY, v text); INSERT INTO dd VALUES (1, 'a')`)
	rn := e.start(t)
	e.consume(t, []string{"test.public.dd"}, 30*time.Second, atLeast(1))
	rn.stop(t)
	e.db.Exec(t, `INSERT INTO dd VALUES (2, 'b'); DROP TABLE dd`)
	rn2 := e.start(t)
	if rs := e.consume(t, []string{"test.public.dd"}, 30*time.Second, whileRunning(t, rn2, 2)); opsOf(rs) != "r1 c2" {
		t.Fatalf("dd's topic holds %s, want r1 c2", opsOf(rs))
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(e.logs.String(), "its binding ends") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	wantLog(t, e.logs, "its binding ends", "table=public.dd")
	rn2.stop(t)
	rn3 := e.start(t)
	wantLog(t, e.logs, "level=WARN", "the binding names a dropped table whose changes are all in its topic", "table=public.dd")
	rn3.stop(t)
}

// TestDroppedTableRecreatedWhileRunning: a captured table dropped and
// created again while the capture runs, seen when the stream, behind the
// catalog, brings a Relation message of the former table: its changes up
// to the drop reach the topic once, and the session restarts to backfill
// the new table, which the binding then streams.
func TestDroppedTableRecreatedWhileRunning(t *testing.T) {
	e := newEnv(t, "public.dd", "public.other")
	e.logs = &lockedBuffer{}
	e.db.Exec(t, `CREATE TABLE dd (id int PRIMARY KEY, v text); CREATE TABLE other (id int PRIMARY KEY, pad text); INSERT INTO dd VALUES (1, 'a')`)
	e.cfg.Kafka.MaxTransactionRecords = 1000
	rn := e.start(t)
	e.consume(t, []string{"test.public.dd"}, 30*time.Second, atLeast(1))
	open := e.stallBehind(t, "other")
	e.db.Exec(t, `ALTER TABLE dd ADD COLUMN w int`)
	e.db.Exec(t, `INSERT INTO dd VALUES (2, 'b', 2)`)
	e.db.Exec(t, `DROP TABLE dd; CREATE TABLE dd (id int PRIMARY KEY, v text); INSERT INTO dd VALUES (1, 'new'), (7, 'seven')`)
	open()

	rs := e.consume(t, []string{"test.public.dd"}, 90*time.Second, whileRunning(t, rn, 4))
	e.db.Exec(t, `INSERT INTO dd VALUES (8, 'eight')`)
	rs = e.consume(t, []string{"test.public.dd"}, 30*time.Second, settled(5, 2*time.Second))
	if got := opsOf(rs); got != "r1 c2 r1 r7 c8" {
		t.Fatalf("dd's topic holds %s, want r1 c2 (the former table's), then r1 r7 c8 (the new one's):\n%s", got, dump(rs))
	}
	wantLog(t, e.logs, "captured table was dropped", "table=public.dd", "topic=test.public.dd", "lsn=")
	wantLog(t, e.logs, "restarting from the checkpoint")
	rn.stop(t)
}

// TestDroppedTableNoticedWhileRunning: a captured table dropped while the
// capture runs, with no Relation message after it: the capture finds it
// out by itself within its check interval, ends the binding with a log
// line, and records it; the restart warns to remove the binding.
func TestDroppedTableNoticedWhileRunning(t *testing.T) {
	e := newEnv(t, "public.dd", "public.later")
	e.logs = &lockedBuffer{}
	e.db.Exec(t, `CREATE TABLE dd (id int PRIMARY KEY); CREATE TABLE later (id int PRIMARY KEY); INSERT INTO dd VALUES (1)`)
	rn := e.start(t)
	e.db.Exec(t, `INSERT INTO dd VALUES (2)`)
	e.consume(t, []string{"test.public.dd"}, 30*time.Second, atLeast(2))
	e.db.Exec(t, `INSERT INTO dd VALUES (3); DROP TABLE dd`)
	deadline := time.Now().Add(40 * time.Second)
	for !strings.Contains(e.logs.String(), "its binding ends") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	wantLog(t, e.logs, "its binding ends", "table=public.dd", "relation=", "topic=test.public.dd", "lsn=")
	e.db.Exec(t, `INSERT INTO later VALUES (1)`)
	e.consume(t, []string{"test.public.later"}, 30*time.Second, whileRunning(t, rn, 1))
	if rs := e.consume(t, []string{"test.public.dd"}, 30*time.Second, settled(3, 2*time.Second)); opsOf(rs) != "r1 c2 c3" {
		t.Fatalf("dd's topic holds %s, want r1 c2 c3:\n%s", opsOf(rs), dump(rs))
	}
	rn.stop(t)
	rn2 := e.start(t)
	wantLog(t, e.logs, "level=WARN", "the binding names a dropped table whose changes are all in its topic", "table=public.dd")
	rn2.stop(t)
}
