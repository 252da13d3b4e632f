package main

import (
	"strings"
	"testing"
)

// TestTopicClashAtRunTime: without bindings, the readable tables "t x" and
// t_x go to one default topic: run stops at once with exit 2 and says
// which tables, which topic, and what to set.
func TestTopicClashAtRunTime(t *testing.T) {
	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE "t x" (id int PRIMARY KEY); CREATE TABLE t_x (id int PRIMARY KEY)`)
	code, out := pgkafka(t, "run", "-c", s.config(t, "postgres", cluster.SuperuserPassword(), "  []"))
	if code != 2 {
		t.Fatalf("exit %d, want 2:\n%s", code, out)
	}
	for _, want := range []string{`tables "public.t x" and "public.t_x" both go to topic "it.public.t_x"`, "set bindings[].target of one of them"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
