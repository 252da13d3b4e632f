package pipeline_test

import (
	"fmt"
	"testing"
	"time"
)

// TestTombstonesOff: with format.tombstones false, a delete, and the
// delete of a key an update changed, are not followed by a tombstone.
func TestTombstonesOff(t *testing.T) {
	e := newEnv(t, "public.ts")
	e.db.Exec(t, `CREATE TABLE ts (id int PRIMARY KEY, v text)`)
	off := false
	e.cfg.Format.Tombstones = &off
	e.start(t)
	e.db.Exec(t, `INSERT INTO ts VALUES (1, 'a'), (2, 'b'); DELETE FROM ts WHERE id = 1; UPDATE ts SET id = 3 WHERE id = 2; INSERT INTO ts VALUES (9, 'last')`)
	rs := e.consume(t, []string{"test.public.ts"}, 30*time.Second, func(rs []rec) bool {
		return len(rs) > 0 && rs[len(rs)-1].Op == "c" && fmt.Sprint(rs[len(rs)-1].After["id"]) == "9"
	})
	if got := fmt.Sprint(ops(rs)); got != "[c c d d c c]" {
		t.Fatalf("records %s, want [c c d d c c] (no tombstones)", got)
	}
}
