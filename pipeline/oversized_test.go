package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pipeline"
)

// bigRow is an INSERT of row id with a value of n bytes of text that
// does not compress (md5s), so that its record is about n bytes.
func bigRow(table string, id, n int) string {
	return fmt.Sprintf(`INSERT INTO %s SELECT %d, string_agg(md5(g::text), '') FROM generate_series(1, %d) g`, table, id, n/32)
}

// TestOversizedRecords: a record larger than kafka.maxRecordBytes, read by
// the backfill (row 2) or streamed (row 3), under each
// kafka.oversizedRecords policy: skip drops it and goes on; dlq writes in
// its place a record naming table, key, LSN and size to the dead-letter
// topic, in the same Kafka transactions, and goes on; the rows around it
// reach their topic either way.
func TestOversizedRecords(t *testing.T) {
	for _, policy := range []string{pipeline.OversizedSkip, pipeline.OversizedDLQ} {
		t.Run(policy, func(t *testing.T) {
			e := newEnv(t, "public.big")
			e.cfg.Kafka.MaxRecordBytes = 100_000
			e.cfg.Kafka.OversizedRecords = policy
			e.db.Exec(t, `CREATE TABLE big (id int PRIMARY KEY, v text); INSERT INTO big VALUES (1, 'small')`)
			e.db.Exec(t, bigRow("big", 2, 300_000))
			rn := e.start(t)
			e.db.Exec(t, bigRow("big", 3, 300_000))
			e.db.Exec(t, `INSERT INTO big VALUES (4, 'small')`)
			rs := e.consume(t, []string{"test.public.big"}, 30*time.Second, atLeast(2))
			if got := fmt.Sprint(ops(rs), keysOf(rs)); got != "[r c] [1 4]" {
				t.Fatalf("records %s, want the small rows only:\n%s", got, dump(rs))
			}
			if policy == pipeline.OversizedSkip {
				rn.stop(t)
				return
			}
			dead := readDeadLetters(t, e, "test.dlq", 2)
			for i, want := range []struct{ key, lsn string }{{"id=2", "backfill"}, {"id=3", ""}} {
				d := dead[i]
				if d["table"] != "public.big" || d["key"] != want.key || d["topic"] != "test.public.big" || d["bytes"].(float64) <= 100_000 || d["maxBytes"].(float64) != 100_000 {
					t.Errorf("dead letter %d: %v", i, d)
				}
				if lsn, _ := d["lsn"].(string); want.lsn != "" && lsn != want.lsn || want.lsn == "" && !strings.Contains(lsn, "/") {
					t.Errorf("dead letter %d: lsn %q", i, d["lsn"])
				}
			}
			rn.stop(t)
		})
	}
}

// TestOversizedRecordFails: under kafka.oversizedRecords: fail (the
// default), a record larger than kafka.maxRecordBytes stops the capture
// with an error naming its table, key and LSN (or the backfill), and what
// to do; nothing after it is confirmed.
func TestOversizedRecordFails(t *testing.T) {
	for _, tc := range []struct {
		name    string
		before  bool // the big row exists before the capture: the backfill reads it
		wantLSN bool
	}{{"streamed", false, true}, {"backfilled", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "public.big")
			e.cfg.Kafka.MaxRecordBytes = 100_000
			e.db.Exec(t, `CREATE TABLE big (id int PRIMARY KEY, v text); INSERT INTO big VALUES (1, 'small')`)
			if tc.before {
				e.db.Exec(t, bigRow("big", 7, 300_000))
			}
			cfg := e.cfg
			cfg.SetDefaults()
			r, err := pipeline.NewRunner(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			if !tc.before {
				<-r.Backfilled()
				e.db.Exec(t, bigRow("big", 7, 300_000))
			}
			err = <-done
			var tooLarge *pipeline.RecordTooLargeError
			if !errors.As(err, &tooLarge) {
				t.Fatalf("Run: %v, want a RecordTooLargeError", err)
			}
			if tooLarge.Table != "public.big" || tooLarge.Key != "id=7" || tooLarge.MaxBytes != 100_000 || tooLarge.Bytes <= 100_000 || (tooLarge.LSN != 0) != tc.wantLSN {
				t.Errorf("error fields: %+v", tooLarge)
			}
			for _, want := range []string{"public.big", "id=7", "kafka.maxRecordBytes", "kafka.oversizedRecords"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

// TestLargeRecordsWithinLimits: a record of several MB reaches its topic
// when kafka.maxRecordBytes and the topic's max.message.bytes allow it:
// the producer's batches follow kafka.maxRecordBytes (they were fixed at
// 1 MiB).
func TestLargeRecordsWithinLimits(t *testing.T) {
	e := newEnv(t, "public.big")
	e.cfg.Kafka.MaxRecordBytes = 8 << 20
	e.cfg.Kafka.Topics.Config = map[string]string{"max.message.bytes": fmt.Sprint(16 << 20)}
	e.db.Exec(t, `CREATE TABLE big (id int PRIMARY KEY, v text)`)
	e.db.Exec(t, bigRow("big", 1, 5<<20))
	rn := e.start(t)
	e.db.Exec(t, bigRow("big", 2, 5<<20))
	rs := e.consume(t, []string{"test.public.big"}, 60*time.Second, atLeast(2))
	for _, r := range rs {
		if v, _ := r.After["v"].(string); len(v) < 5<<20-64 {
			t.Errorf("record %s of key %v: value of %d bytes", r.Op, r.Key, len(v))
		}
	}
	rn.stop(t)
}

func keysOf(rs []rec) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprint(r.Key["id"]))
	}
	return out
}

// readDeadLetters reads n records of the dead-letter topic, read_committed.
func readDeadLetters(t *testing.T, e *env, topic string, n int) []map[string]any {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []map[string]any
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d dead letters of %d read", len(out), n)
		}
		for it := fs.RecordIter(); !it.Done(); {
			var m map[string]any
			if err := json.Unmarshal(it.Next().Value, &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
	}
	return out
}
