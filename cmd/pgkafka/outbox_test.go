package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
)

const outboxBinding = `  - resource: {namespace: public, stream: outbox, syncMode: incremental}
    outbox: {}`

// outboxWrite commits transactions of one to three outbox rows until stop
// is closed; each row's payload carries its key's next sequence number,
// from 1. It returns how many transactions committed.
func outboxWrite(t *testing.T, dsn string, keys int, stop <-chan struct{}) <-chan int {
	done := make(chan int, 1)
	go func() {
		n := 0
		defer func() { done <- n }()
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		seq := make([]int, keys+1)
		for {
			select {
			case <-stop:
				return
			default:
			}
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			next := slices.Clone(seq)
			for range 1 + rand.IntN(3) {
				k := 1 + rand.IntN(keys)
				next[k]++
				typ := "Order"
				if k%2 == 0 {
					typ = "Customer"
				}
				if _, err := tx.Exec(ctx, `INSERT INTO outbox (aggregatetype, aggregateid, type, payload) VALUES ($1, $2, 'Seq', $3)`,
					typ, fmt.Sprint(k), fmt.Sprintf(`{"k": %d, "seq": %d}`, k, next[k])); err != nil {
					t.Error(err)
					return
				}
			}
			if err := tx.Commit(ctx); err != nil {
				t.Error(err)
				return
			}
			seq, n = next, n+1
			time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
		}
	}()
	return done
}

// TestOutboxKilledExactlyOnce kills pgkafka with SIGKILL at random
// instants while transactions insert outbox rows: a read_committed
// consumer of the events' topics sees every event once, in order per key.
func TestOutboxKilledExactlyOnce(t *testing.T) {
	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE outbox (id bigserial PRIMARY KEY, aggregatetype text NOT NULL, aggregateid text NOT NULL, type text NOT NULL, payload jsonb)`)
	path := tune(t, s.config(t, "postgres", cluster.SuperuserPassword(), outboxBinding), "  transactionWindow: 20ms\n", "")
	c := startCapture(t, path)
	const keys = 10
	stop := make(chan struct{})
	written := outboxWrite(t, s.db.DSN(), keys, stop)
	for i := range 8 {
		time.Sleep(time.Duration(150+rand.IntN(600)) * time.Millisecond)
		c.kill(t)
		slotFollowsCheckpoint(t, s, fmt.Sprintf("after kill %d", i+1))
		c = startCapture(t, path)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	n := <-written
	var rows int
	if err := s.db.Conn(t).QueryRow(context.Background(), `SELECT count(*) FROM outbox`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	recs := readEvents(t, s.broker.ListenAddrs(), []string{"outbox.event.Order", "outbox.event.Customer"}, rows)
	c.stop(t)
	if len(recs) != rows {
		t.Fatalf("%d events in Kafka, %d rows inserted", len(recs), rows)
	}
	seen := map[string]int{}
	ids := map[string]bool{}
	for _, r := range recs {
		var p struct{ K, Seq int }
		if err := json.Unmarshal(r.Value, &p); err != nil {
			t.Fatalf("event value %q: %v", r.Value, err)
		}
		if string(r.Key) != fmt.Sprint(p.K) {
			t.Fatalf("event key %q, payload %s", r.Key, r.Value)
		}
		if want := seen[string(r.Key)] + 1; p.Seq != want {
			t.Fatalf("key %s: event seq %d after %d (a duplicate or a loss)", r.Key, p.Seq, want-1)
		}
		seen[string(r.Key)] = p.Seq
		var id string
		for _, h := range r.Headers {
			if h.Key == "id" {
				id = string(h.Value)
			}
		}
		if id == "" || ids[id] {
			t.Fatalf("event id header %q missing or seen twice", id)
		}
		ids[id] = true
	}
	t.Logf("%d writer transactions, %d events, 8 kills", n, rows)
}

// readEvents reads topics as a read_committed consumer until n records
// came and a second passed without more.
func readEvents(t *testing.T, brokers, topics []string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []*kgo.Record
	quiet := time.Time{}
	for quiet.IsZero() || time.Now().Before(quiet) {
		pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fs := cl.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			t.Fatalf("%d of %d events after a minute", len(out), n)
		}
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				t.Fatalf("fetch %s: %v", fe.Topic, fe.Err)
			}
		}
		out = append(out, fs.Records()...)
		if len(out) >= n && quiet.IsZero() {
			quiet = time.Now().Add(time.Second)
		}
	}
	return out
}
