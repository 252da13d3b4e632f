package pipeline_test

import (
	"testing"
	"time"
)

// TestJSONDroppedTableWhileStopped is TestDroppedTableWhileStopped in
// JSON, with no registry to read a dropped table's shape from: the changes
// between the checkpoint and the drop reach the topic exactly once, keyed
// as before (the replica identity's columns), and the binding ends.
func TestJSONDroppedTableWhileStopped(t *testing.T) {
	e := newEnv(t, "public.dd", "public.later")
	e.cfg.Format.Encoding = "json"
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
	if rs[5].After["v"] != "a2" || string(rs[5].RawKey) != string(rs[0].RawKey) {
		t.Errorf("update after the restart: %v, key %s (the backfill's: %s)", rs[5].After, rs[5].RawKey, rs[0].RawKey)
	}
	wantLog(t, e.logs, "its binding ends", "table=public.dd", "topic=test.public.dd", "lsn=")
	rn2.stop(t)
}
