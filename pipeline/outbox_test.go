package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pipeline"
)

// rawRecs reads topics (read_committed) without decoding until n records
// came, and a second more for any beyond, failing the test after timeout.
func rawRecs(t *testing.T, e *env, topics []string, n int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	var settled time.Time
	for settled.IsZero() || time.Now().Before(settled) {
		pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fs := cl.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			t.Fatalf("after %s, %d of %d records read", timeout, len(out), n)
		}
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				t.Fatalf("fetch %s: %v", fe.Topic, fe.Err)
			}
		}
		out = append(out, fs.Records()...)
		if len(out) >= n && settled.IsZero() {
			settled = time.Now().Add(time.Second)
		}
	}
	return out
}

func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// TestOutbox: an outbox binding writes each insert as an event on the
// topic its aggregatetype routes it to, keyed by its aggregateid, its
// payload's JSON as the value (a null payload a null value), its id and
// the configured column as headers (an event deleted in its own
// transaction too); updates and deletes write nothing,
// the rows there before the start are not events, and the outbox table's
// own topic is neither created nor written.
func TestOutbox(t *testing.T) {
	e := newEnv(t, "public.outbox")
	e.db.Exec(t, `CREATE TABLE outbox (id uuid PRIMARY KEY, aggregatetype varchar(255) NOT NULL, aggregateid varchar(255) NOT NULL,
		type varchar(255) NOT NULL, payload jsonb);
		INSERT INTO outbox VALUES ('00000000-0000-0000-0000-000000000000', 'Order', 'old', 'Old', '{"before": true}')`)
	e.cfg.Bindings[0].Outbox = &pipeline.OutboxConfig{Headers: []string{"type:eventType"}}
	e.start(t)
	e.db.Exec(t, `BEGIN;
		INSERT INTO outbox VALUES ('11111111-1111-1111-1111-111111111111', 'Order', 'o-1', 'OrderCreated', '{"id": 1, "lines": [{"sku": "a"}]}');
		INSERT INTO outbox VALUES ('22222222-2222-2222-2222-222222222222', 'Customer', 'c-7', 'CustomerCreated', '{"name": "Ada"}');
		INSERT INTO outbox VALUES ('55555555-5555-5555-5555-555555555555', 'Customer', 'c-8', 'CustomerCreated', '"deleted at once"');
		DELETE FROM outbox WHERE aggregateid = 'c-8';
		COMMIT;
		UPDATE outbox SET payload = '{"id": 2}' WHERE aggregateid = 'o-1';
		DELETE FROM outbox WHERE aggregateid = 'c-7';
		INSERT INTO outbox VALUES ('33333333-3333-3333-3333-333333333333', 'Order', 'o-1', 'OrderDeleted', NULL);
		INSERT INTO outbox VALUES ('44444444-4444-4444-4444-444444444444', 'Order', 'o-2', 'OrderCreated', '{"id": 2}')`)
	orders, customers := "outbox.event.Order", "outbox.event.Customer"
	rs := rawRecs(t, e, []string{orders, customers}, 5, 30*time.Second)
	type event struct{ topic, key, value, id, typ string }
	var got []event
	for _, r := range rs {
		id, _ := header(r, "id")
		typ, _ := header(r, "eventType")
		v := string(r.Value)
		if r.Value == nil {
			v = "<null>"
		}
		got = append(got, event{r.Topic, string(r.Key), v, id, typ})
	}
	slices.SortStableFunc(got, func(a, b event) int { return strings.Compare(a.topic, b.topic) })
	want := []event{
		{customers, "c-7", `{"name": "Ada"}`, "22222222-2222-2222-2222-222222222222", "CustomerCreated"},
		{customers, "c-8", `"deleted at once"`, "55555555-5555-5555-5555-555555555555", "CustomerCreated"},
		{orders, "o-1", `{"id": 1, "lines": [{"sku": "a"}]}`, "11111111-1111-1111-1111-111111111111", "OrderCreated"},
		{orders, "o-1", "<null>", "33333333-3333-3333-3333-333333333333", "OrderDeleted"},
		{orders, "o-2", `{"id": 2}`, "44444444-4444-4444-4444-444444444444", "OrderCreated"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
	for _, r := range rs {
		if len(r.Headers) != 2 {
			t.Errorf("record %s headers %v, want id and eventType only", r.Key, r.Headers)
		}
	}
	// A JSON reader we did not write reads every payload.
	var payloads bytes.Buffer
	for _, r := range rs {
		if r.Value != nil {
			payloads.Write(r.Value)
			payloads.WriteByte('\n')
		}
	}
	py := exec.Command("/usr/bin/python3", "-c", "import sys, json\nfor line in sys.stdin: json.loads(line)\nprint('ok')")
	py.Stdin = &payloads
	if out, err := py.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("python3's json module on the event payloads: %v\n%s", err, out)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topics, err := kadm.NewClient(cl).ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if topics.Has("test.public.outbox") {
		t.Errorf("the outbox table's own topic exists: %v", topics.Names())
	}
}

// TestOutboxValidation: the outbox block's problems are configuration
// errors, each named with its key path.
func TestOutboxValidation(t *testing.T) {
	cfg := pipeline.Config{Name: "x"}
	cfg.Source.Address, cfg.Source.Password = "h:5432", "pw"
	cfg.Bindings = []pipeline.Binding{{Resource: pipeline.Resource{Namespace: "public", Stream: "outbox"},
		Outbox: &pipeline.OutboxConfig{}}}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if o := cfg.Bindings[0].Outbox; o.ID != "id" || o.Key != "aggregateid" || o.Payload != "payload" || o.RouteBy != "aggregatetype" ||
		o.Topic != "outbox.event.${routedByValue}" || o.OnUpdate != "warn" || o.TombstoneOnEmptyPayload {
		t.Errorf("defaults: %+v", o)
	}
	cfg.Bindings[0].Key = []string{"id"}
	cfg.Bindings[0].Target = "t"
	cfg.Bindings[0].Outbox = &pipeline.OutboxConfig{Topic: "bad topic/${routedByValue}", OnUpdate: "explode", Headers: []string{"type", ":x", "kind:type"}}
	err := cfg.Validate()
	for _, want := range []string{"bindings[0].key:", "bindings[0].target:", "bindings[0].outbox.topic:", "bindings[0].outbox.onUpdate:",
		"bindings[0].outbox.headers[1]:", "bindings[0].outbox.headers[2]:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %s", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "headers[0]") {
		t.Errorf("headers[0] (type) refused: %v", err)
	}
}

// TestOutboxUnknownColumn: a column the outbox block names that the table
// lacks stops the start, named with its key path.
func TestOutboxUnknownColumn(t *testing.T) {
	e := newEnv(t, "public.outbox")
	e.db.Exec(t, `CREATE TABLE outbox (id uuid PRIMARY KEY, aggregateid text, payload jsonb, kind text)`)
	e.cfg.Bindings[0].Outbox = &pipeline.OutboxConfig{Headers: []string{"nope:x"}}
	rn := e.launch(t)
	select {
	case err := <-rn.done:
		rn.done <- err // for the cleanup
		for _, want := range []string{`bindings[0].outbox.routeBy: table public.outbox has no column "aggregatetype"`, `bindings[0].outbox.headers[0]:`} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Run() = %v, want %s", err, want)
			}
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the capture started with an outbox column missing")
	}
}

// TestOutboxOptions: other column names, a topic template whose value is
// sanitized, a bytea payload written as its bytes, an empty payload as a
// tombstone (tombstoneOnEmptyPayload), and onUpdate: fail stopping the
// capture at an update.
func TestOutboxOptions(t *testing.T) {
	e := newEnv(t, "public.events")
	e.db.Exec(t, `CREATE TABLE events (event_id bigint PRIMARY KEY, kind text NOT NULL, agg text, body bytea, tenant text)`)
	e.cfg.Bindings[0].Outbox = &pipeline.OutboxConfig{ID: "event_id", Key: "agg", Payload: "body", RouteBy: "kind",
		Topic: "events-${routedByValue}", Headers: []string{"tenant"}, TombstoneOnEmptyPayload: true, OnUpdate: "fail"}
	rn := e.start(t)
	e.db.Exec(t, `INSERT INTO events VALUES (1, 'in voice', 'a', '\x00ff10', 't1'), (2, 'in voice', NULL, '', NULL)`)
	rs := rawRecs(t, e, []string{"events-in_voice"}, 2, 30*time.Second)
	if len(rs) != 2 {
		t.Fatalf("%d records, want 2", len(rs))
	}
	if r := rs[0]; string(r.Key) != "a" || string(r.Value) != "\x00\xff\x10" || len(r.Headers) != 2 ||
		r.Headers[0].Key != "id" || string(r.Headers[0].Value) != "1" || r.Headers[1].Key != "tenant" || string(r.Headers[1].Value) != "t1" {
		t.Errorf("first event: key %q value %x headers %v", r.Key, r.Value, r.Headers)
	}
	if r := rs[1]; r.Key != nil || r.Value != nil || r.Headers[1].Value != nil {
		t.Errorf("second event: key %q value %q headers %v, want null key, tombstone, null tenant", r.Key, r.Value, r.Headers)
	}
	e.db.Exec(t, `UPDATE events SET tenant = 't2' WHERE event_id = 1`)
	select {
	case err := <-rn.done:
		rn.done <- err // for the cleanup
		if err == nil || !strings.Contains(err.Error(), "update of outbox table public.events") {
			t.Fatalf("Run() = %v, want the update named", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("onUpdate: fail, and the capture goes on after an update")
	}
}
