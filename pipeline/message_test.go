package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/offsets"
	"github.com/pgkafka/pgkafka/pipeline"
)

const messageTopic = "test.message"

// msgOf renders a record of the message topic as kind:prefix=content, kind
// "tm" for a transactional message (it has a txId), "m" otherwise.
func msgOf(t *testing.T, r rec) string {
	t.Helper()
	m, _ := r.Value["message"].(map[string]any)
	if r.Topic != messageTopic || r.Op != "m" || m == nil || r.Key == nil || r.Key["prefix"] != m["prefix"] {
		t.Fatalf("not a message record: %+v", r)
	}
	kind := "m"
	if r.Source["txId"] != nil {
		kind = "tm"
	}
	content, _ := m["content"].([]byte)
	return fmt.Sprintf("%s:%s=%s", kind, m["prefix"], content)
}

func lsnOf(r rec) int64 { v, _ := r.Source["lsn"].(int64); return v }

// TestMessages: transactional and non-transactional messages, text and
// binary, interleaved with row changes, land in the message topic in WAL
// order, each transactional one with its transaction's txId and between its
// transaction's changes; a rolled-back transaction's transactional message
// never appears, its non-transactional one does; prefixExcludeList filters.
func TestMessages(t *testing.T) {
	cluster.SkipBelow(t, 14, "pgoutput's messages option")
	e := newEnv(t, "public.t")
	e.db.Exec(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`)
	e.cfg.Messages.PrefixExcludeList = []string{"noise.*"}
	rn := e.start(t)
	conn := e.db.Conn(t)
	ctx := context.Background()
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`BEGIN`)
	exec(`INSERT INTO t VALUES (1, 'a')`)
	exec(`SELECT pg_logical_emit_message(true, 'tx', 'text one')`)
	exec(`SELECT pg_logical_emit_message(true, 'noise.tx', 'filtered')`)
	exec(`INSERT INTO t VALUES (2, 'b')`)
	exec(`COMMIT`)
	exec(`SELECT pg_logical_emit_message(false, 'now', 'outside')`)
	exec(`SELECT pg_logical_emit_message(false, 'noise', 'filtered')`)
	exec(`BEGIN`)
	exec(`INSERT INTO t VALUES (3, 'c')`)
	exec(`SELECT pg_logical_emit_message(true, 'tx', 'rolled back')`)
	exec(`SELECT pg_logical_emit_message(false, 'now', '\x01'::bytea)`)
	exec(`ROLLBACK`)
	exec(`BEGIN`)
	exec(`UPDATE t SET v = 'x' WHERE id = 1`)
	exec(`SELECT pg_logical_emit_message(true, 'bin', '\x00ff00'::bytea)`)
	exec(`COMMIT`)
	exec(`INSERT INTO t VALUES (4, 'd')`)

	rs := e.consume(t, []string{"test.public.t", messageTopic}, 30*time.Second, func(rs []rec) bool {
		return slices.ContainsFunc(rs, func(r rec) bool { return r.Op == "c" && fmt.Sprint(r.After["id"]) == "4" })
	})
	rn.stop(t)

	// The message topic, in offset order: WAL order.
	var msgs []string
	var msgRecs []rec
	for _, r := range rs {
		if r.Topic == messageTopic {
			msgs = append(msgs, msgOf(t, r))
			msgRecs = append(msgRecs, r)
		}
	}
	want := []string{"tm:tx=text one", "m:now=outside", "m:now=\x01", "tm:bin=\x00\xff\x00"}
	if !slices.Equal(msgs, want) {
		t.Fatalf("messages %q, want %q", msgs, want)
	}
	for _, r := range msgRecs {
		src := r.Source
		if src["connector"] != "postgresql" || src["name"] != "test" || src["schema"] != "" || src["table"] != "" || lsnOf(r) == 0 {
			t.Errorf("source %v", src)
		}
		if ts, _ := src["ts_ms"].(int64); time.Since(time.UnixMilli(ts)) > time.Minute {
			t.Errorf("source.ts_ms %v", src["ts_ms"])
		}
	}

	// Everything, in LSN order: each transactional message sits between
	// its transaction's changes and carries its txId.
	all := slices.Clone(rs)
	sort.SliceStable(all, func(i, j int) bool { return lsnOf(all[i]) < lsnOf(all[j]) })
	var seq []string
	txOf := map[string]any{}
	for _, r := range all {
		var s string
		if r.Topic == messageTopic {
			s = msgOf(t, r)
		} else {
			s = fmt.Sprintf("%s:%v", r.Op, r.After["id"])
		}
		seq = append(seq, s)
		txOf[s] = r.Source["txId"]
	}
	wantSeq := []string{"c:1", "tm:tx=text one", "c:2", "m:now=outside", "m:now=\x01", "u:1", "tm:bin=\x00\xff\x00", "c:4"}
	if !slices.Equal(seq, wantSeq) {
		t.Fatalf("by LSN %q, want %q", seq, wantSeq)
	}
	if txOf["tm:tx=text one"] != txOf["c:1"] || txOf["tm:tx=text one"] != txOf["c:2"] || txOf["tm:bin=\x00\xff\x00"] != txOf["u:1"] || txOf["c:1"] == txOf["u:1"] {
		t.Errorf("txIds %v", txOf)
	}
	if txOf["m:now=outside"] != nil {
		t.Errorf("a non-transactional message has txId %v", txOf["m:now=outside"])
	}
	sameRows(t, state(rs, "test.public.t"), pgRows(t, e.db, `SELECT id, v FROM t`, "id"))
}

// hardRun is a Runner a test can kill (a hard stop: ctx cancelled, the open
// Kafka transaction aborted, nothing more confirmed).
type hardRun struct {
	r      *pipeline.Runner
	cancel context.CancelFunc
	done   chan error
}

func (e *env) startHard(t *testing.T, cfg pipeline.Config) *hardRun {
	t.Helper()
	cfg.SetDefaults()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, err := pipeline.NewRunner(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &hardRun{r: r, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- r.Run(ctx) }()
	t.Cleanup(func() { h.kill(t) })
	select {
	case <-r.Backfilled():
	case err := <-h.done:
		t.Fatalf("runner ended before streaming: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("runner not streaming after 60s")
	}
	return h
}

func (h *hardRun) kill(t *testing.T) {
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of its context's end")
	}
	h.done <- nil // for another kill
}

// waitPartial waits until the offsets topic holds a checkpoint inside a
// PostgreSQL transaction split across Kafka transactions.
func waitPartial(t *testing.T, e *env, timeout time.Duration) *offsets.Checkpoint {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...), kgo.ConsumeTopics("pgkafka-offsets"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("no partial checkpoint")
		}
		for it := fs.RecordIter(); !it.Done(); {
			var cp offsets.Checkpoint
			if err := json.Unmarshal(it.Next().Value, &cp); err == nil && cp.Partial != nil {
				return &cp
			}
		}
	}
}

// TestMessagesExactlyOnceAcrossRestarts: messages are neither lost nor
// duplicated when pgkafka stops cleanly (the last thing read being a
// non-transactional message), nor when it is killed inside a PostgreSQL
// transaction split across Kafka transactions, whose transactional
// messages count among the changes the checkpoint says Kafka holds.
func TestMessagesExactlyOnceAcrossRestarts(t *testing.T) {
	cluster.SkipBelow(t, 14, "pgoutput's messages option")
	e := newEnv(t, "public.t")
	e.db.Exec(t, `CREATE TABLE t (id int PRIMARY KEY)`)
	e.cfg.Kafka.MaxTransactionRecords = 500
	topics := []string{"test.public.t", messageTopic}
	rn := e.start(t)
	e.db.Exec(t, `SELECT pg_logical_emit_message(false, 'n', '1')`)
	e.db.Exec(t, `BEGIN; INSERT INTO t VALUES (1); SELECT pg_logical_emit_message(true, 't', '1'); COMMIT`)
	e.db.Exec(t, `SELECT pg_logical_emit_message(false, 'n', '2')`)
	e.consume(t, topics, 30*time.Second, atLeast(4))
	rn.stop(t) // the checkpoint is at (or past) non-transactional message 2

	// Written while stopped; then a clean restart.
	e.db.Exec(t, `SELECT pg_logical_emit_message(false, 'n', '3')`)
	rn = e.start(t)
	e.db.Exec(t, `SELECT pg_logical_emit_message(false, 'n', '4')`)
	e.consume(t, topics, 30*time.Second, atLeast(6))

	// One large transaction, a transactional message before each row (so
	// that batches are cut next to messages); killed once part of it is
	// committed.
	rn.stop(t)
	h := e.startHard(t, e.cfg)
	const rows = 30000
	e.db.Exec(t, `INSERT INTO t SELECT g FROM generate_series(2, `+strconv.Itoa(rows+1)+`) g
		WHERE pg_logical_emit_message(true, 't', g::text) IS NOT NULL`)
	cp := waitPartial(t, e, 60*time.Second)
	h.kill(t)
	t.Logf("killed after the partial checkpoint %+v", cp.Partial)
	e.db.Exec(t, `SELECT pg_logical_emit_message(false, 'n', '5')`)
	rn = e.start(t)
	e.db.Exec(t, `SELECT pg_logical_emit_message(false, 'n', '6')`)
	const wantMsgs = 6 + 1 + rows
	// Until the last message and every row: what is lost or doubled shows
	// in the counts below, not as a timeout.
	rs := e.consume(t, topics, 90*time.Second, func(rs []rec) bool {
		last, n := false, 0
		for _, r := range rs {
			if r.Topic != messageTopic {
				n++
			} else if m, _ := r.Value["message"].(map[string]any); m["prefix"] == "n" && bytes.Equal(m["content"].([]byte), []byte("6")) {
				last = true
			}
		}
		return last && n >= rows+1
	})
	rn.stop(t)

	seen := map[string]int{}
	var tx []int
	for _, r := range rs {
		if r.Topic != messageTopic {
			seen[fmt.Sprint("row ", r.After["id"])]++
			continue
		}
		m := msgOf(t, r)
		seen[m]++
		if content := bytes.TrimPrefix([]byte(m), []byte("tm:t=")); len(content) != len(m) {
			n, _ := strconv.Atoi(string(content))
			tx = append(tx, n)
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times", k, n)
		}
	}
	for i := 1; i <= 6; i++ {
		if seen[fmt.Sprintf("m:n=%d", i)] != 1 {
			t.Errorf("non-transactional message %d delivered %d times", i, seen[fmt.Sprintf("m:n=%d", i)])
		}
	}
	if len(seen) != wantMsgs+rows+1 {
		t.Errorf("%d distinct records, want %d", len(seen), wantMsgs+rows+1)
	}
	if !slices.IsSorted(tx) || len(tx) != 1+rows {
		t.Errorf("%d transactional messages, sorted %v", len(tx), slices.IsSorted(tx))
	}
}

// TestMessagesDisabled: with messages.enabled false, pgoutput is not asked
// for messages and the message topic is not even created.
func TestMessagesDisabled(t *testing.T) {
	e := newEnv(t, "public.t")
	e.db.Exec(t, `CREATE TABLE t (id int PRIMARY KEY)`)
	off := false
	cfg := e.cfg
	cfg.Messages.Enabled = &off
	h := e.startHard(t, cfg)
	e.db.Exec(t, `SELECT pg_logical_emit_message(false, 'n', '1'); SELECT pg_logical_emit_message(true, 't', '1'); INSERT INTO t VALUES (1)`)
	e.consume(t, []string{"test.public.t"}, 30*time.Second, atLeast(1))
	h.kill(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topics, err := kadm.NewClient(cl).ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if topics.Has(messageTopic) {
		t.Fatalf("topic %s created with messages disabled", messageTopic)
	}
}
