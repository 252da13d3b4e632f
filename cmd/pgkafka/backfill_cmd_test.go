package main

import (
	"context"
	"strings"
	"testing"

	"github.com/pgkafka/pgkafka/pipeline"
)

// TestBackfillWhereFlag: pgkafka backfill --where checks the condition
// on the table before it writes the request: a condition PostgreSQL
// refuses, or one that could leave its parentheses, is a usage error
// (exit 2) naming the table and the condition, and writes nothing; a
// good one writes the request with its condition.
func TestBackfillWhereFlag(t *testing.T) {
	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now());
		CREATE TABLE public.flow_watermarks (slot text PRIMARY KEY, watermark text)`) // as the capture creates it
	path := s.config(t, "postgres", cluster.SuperuserPassword(), ordersBinding)
	request := func() string {
		var v string
		err := s.db.Conn(t).QueryRow(context.Background(), `SELECT coalesce((SELECT watermark FROM public.flow_watermarks WHERE slot = 'flow_slot'), '')`).Scan(&v)
		if err != nil && !strings.Contains(err.Error(), "does not exist") {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct{ where, want string }{
		{"nope > 1", `column "nope" does not exist`},
		{"id > 1) OR (true", "closes a parenthesis the condition did not open"},
		{"id > 1; DROP TABLE orders", "';'"},
		{"(id > 1", "left open"},
		{"id > 1 -- x", "comment"},
	} {
		code, out := pgkafka(t, "backfill", "-c", path, "--where", tc.where, "public.orders")
		if code != 2 || !strings.Contains(out, tc.want) || !strings.Contains(out, tc.where) {
			t.Errorf("--where %q: exit %d, want 2 with %q and the condition:\n%s", tc.where, code, tc.want, out)
		}
		if strings.Contains(tc.want, "does not exist") && !strings.Contains(out, "public.orders") {
			t.Errorf("--where %q: the error does not name the table:\n%s", tc.where, out)
		}
		if v := request(); v != "" {
			t.Fatalf("--where %q: a request was written: %s", tc.where, v)
		}
	}
	if code, out := pgkafka(t, "run", "-c", path, "--where", "id > 1"); code != 2 || !strings.Contains(out, "--where") {
		t.Errorf("run --where: exit %d:\n%s", code, out)
	}

	where := `created_at > now() - interval '7 days' AND id > 0`
	code, out := pgkafka(t, "backfill", "-c", path, "--where", where, "public.orders")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	got := request()
	req, err := pipeline.ParseBackfillRequest(strings.TrimPrefix(got, pipeline.BackfillMark))
	if !strings.HasPrefix(got, pipeline.BackfillMark) || err != nil || req.Where != where || strings.Join(req.Tables, ",") != "public.orders" {
		t.Fatalf("request %q (%+v, %v), want public.orders where %s", got, req, err, where)
	}
	// Without --where, the request keeps the form older versions read.
	if code, out := pgkafka(t, "backfill", "-c", path, "public.orders"); code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if got := request(); got != pipeline.BackfillMark+"public.orders" {
		t.Fatalf("request %q", got)
	}
}
