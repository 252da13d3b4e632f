package pipeline_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/pipeline"
)

// TestRenamedTable: a captured table renamed while the capture runs stops
// it, naming both names and what to do, before any change under the new
// name is confirmed (they went to no topic, silently, before); once its
// binding names the table as it is now, with the old topic as target, the
// restart captures every change, under both names, exactly once.
func TestRenamedTable(t *testing.T) {
	e := newEnv(t, "public.dd")
	e.db.Exec(t, `CREATE TABLE dd (id int PRIMARY KEY); INSERT INTO dd VALUES (1), (2)`)
	rn := e.start(t)
	e.db.Exec(t, `INSERT INTO dd VALUES (3)`)
	e.consume(t, []string{"test.public.dd"}, 30*time.Second, atLeast(3))
	e.db.Exec(t, `INSERT INTO dd VALUES (4); ALTER TABLE dd RENAME TO dd2`)
	e.db.Exec(t, `INSERT INTO dd2 VALUES (5), (6)`)
	var err error
	select {
	case err = <-rn.done:
		rn.done <- err // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("the capture went on after its table was renamed")
	}
	var renamed *pipeline.TableRenamedError
	if !errors.As(err, &renamed) || renamed.From.String() != "public.dd" || renamed.To.String() != "public.dd2" {
		t.Fatalf("Run: %v, want a TableRenamedError from public.dd to public.dd2", err)
	}
	if pipeline.Retryable(err) {
		t.Errorf("a rename is retried: %v", err)
	}

	for _, want := range []string{"public.dd", "public.dd2", "stream: dd2", "target: test.public.dd", "skip_backfills"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
	// What the error says to do.
	e.cfg.Bindings = []pipeline.Binding{{Resource: pipeline.Resource{Namespace: "public", Stream: "dd2"}, Target: "test.public.dd"}}
	e.cfg.Source.Advanced.SkipBackfills = "public.dd2"
	rn2 := e.start(t)
	e.db.Exec(t, `INSERT INTO dd2 VALUES (7)`)
	rs := e.consume(t, []string{"test.public.dd"}, 30*time.Second, atLeast(7))
	ids := keysOf(rs)
	slices.SortFunc(ids, func(a, b string) int { return len(a) - len(b) + compare(a, b) })
	if got := fmt.Sprint(ids); got != "[1 2 3 4 5 6 7]" {
		t.Errorf("keys in the topic %s, want 1..7 once each:\n%s", got, dump(rs))
	}
	rn2.stop(t)
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
