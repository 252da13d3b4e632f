package pipeline_test

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pipeline"
)

// rawTopic reads topic as it is, read_committed, up to its last stable
// offsets, undecoded.
func rawTopic(t *testing.T, e *env, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(adm).ListCommittedOffsets(ctx, topic)
	adm.Close()
	if err != nil {
		t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.KeepControlRecords(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %v", topic, ctx.Err())
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			if end, ok := left[r.Partition]; ok && r.Offset >= end-1 {
				delete(left, r.Partition)
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		}
	}
	return out
}

// TestRepairKeysOfEveryType: a table keyed by fourteen columns of every
// type a backfill can order (text with quotes, backslashes and accents,
// numeric with and without a scale, timestamps, an enum...). Its topic is damaged (a key removed, a stale value,
// a deleted row's record written again); Repair names the keys as SQL
// literals (each read back through PostgreSQL to the same key bytes), the
// running capture re-reads and removes them, and verify then reports
// equal. No key falls back to reading the whole table.
func TestRepairKeysOfEveryType(t *testing.T) {
	e := newEnv(t, "public.rk")
	e.cfg.Kafka.TransactionWindow = 20 * time.Millisecond
	e.db.Exec(t, `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
		CREATE TABLE rk (i int, b bigint, s smallint, t text, c char(6), vc varchar(20), u uuid, n numeric(12,3), nu numeric, ts timestamptz, tsn timestamp, d date, bo boolean, m mood,
			v text NOT NULL, PRIMARY KEY (i, b, s, t, c, vc, u, n, nu, ts, tsn, d, bo, m));
		INSERT INTO rk VALUES
			(1, -9000000000, -32768, 'O''Brien \ back', 'ab', 'x''y', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', -12.340, 1e-20, '2024-02-29 23:59:59.123456+02', '1999-12-31 00:00:00.5', '2024-02-29', true, 'happy', 'one'),
			(2, 0, 0, 'ünïcödé "q"', '', '', '00000000-0000-0000-0000-000000000000', 0, 'NaN', '1970-01-01 00:00:00+00', '2038-01-19 03:14:08', '0001-01-01', false, 'sad', 'two'),
			(3, 7, 32767, '', 'éé', '\\', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 999999999.999, 123456789012345678901234567890.5, '2262-04-11 23:47:16.854775+00', '1900-01-01 12:00:00', '9999-12-31', true, 'ok', 'three'),
			(4, 8, 1, 'plain', 'plain', 'plain', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', 1.5, -0.25, '2024-01-01 00:00:00+00', '2024-01-01 00:00:00', '2024-01-01', false, 'ok', 'four')`)
	topic := "test.public.rk"
	rn := e.start(t)
	defer rn.stop(t)

	e.db.Exec(t, `UPDATE rk SET v = 'two, changed' WHERE i = 2`)
	e.consume(t, []string{topic}, 30*time.Second, func(rs []rec) bool { return countOps(rs, topic, "u") >= 1 })
	e.db.Exec(t, `DELETE FROM rk WHERE i = 3`)
	rs := e.consume(t, []string{topic}, 30*time.Second, func(rs []rec) bool { return countOps(rs, topic, "d") >= 1 })
	var byI [5]*kgo.Record // each key's first record, by its column i
	for _, r := range rawTopic(t, e, topic) {
		for _, x := range rs {
			if string(x.RawKey) == string(r.Key) && x.Key != nil {
				if i, _ := strconv.Atoi(fmt.Sprint(x.Key["i"])); byI[i] == nil && r.Value != nil {
					byI[i] = r
				}
			}
		}
	}
	for i := 1; i <= 4; i++ {
		if byI[i] == nil {
			t.Fatalf("no record of key i=%d:\n%s", i, dump(rs))
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(),
		&kgo.Record{Topic: topic, Partition: byI[1].Partition, Key: byI[1].Key},                      // key 1 removed
		&kgo.Record{Topic: topic, Partition: byI[2].Partition, Key: byI[2].Key, Value: byI[2].Value}, // key 2 stale
		&kgo.Record{Topic: topic, Partition: byI[3].Partition, Key: byI[3].Key, Value: byI[3].Value}, // key 3 back
	).FirstErr(); err != nil {
		t.Fatal(err)
	}

	cfg := e.cfg
	cfg.SetDefaults()
	rep, err := pipeline.Repair(context.Background(), cfg, pipeline.RepairOptions{
		VerifyOptions: pipeline.VerifyOptions{CatchUp: 20 * time.Second},
		Wait:          time.Minute,
	}, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Before) != 1 || rep.Before[0].NMissing != 1 || rep.Before[0].NExtra != 1 || rep.Before[0].NDiffer != 1 {
		t.Fatalf("before the repair: %+v", rep.Before)
	}
	if len(rep.Requests) != 1 {
		t.Fatalf("requests: %+v", rep.Requests)
	}
	if rr := rep.Requests[0]; rr.Whole != "" || rr.Keys != 3 || rr.Purge != 1 || !rr.Done {
		t.Fatalf("request: %+v, want 3 keys named, 1 to purge, done", rr)
	}
	if len(rep.After) != 1 || !rep.After[0].Equal() || rep.After[0].Rows != 3 || rep.After[0].TopicKeys != 3 {
		t.Fatalf("after the repair: %+v (notes %v)", rep.After, rep.Notes)
	}
}

// TestVerifyColumnPolicies: a table with hashed, masked, truncated and
// excluded columns verifies equal (its rows are compared as the topic
// holds them); a stale value of a hashed column is found, named by its
// column, and repaired.
func TestVerifyColumnPolicies(t *testing.T) {
	e := newEnv(t, "public.pol")
	e.cfg.Kafka.TransactionWindow = 20 * time.Millisecond
	e.db.Exec(t, `CREATE TABLE pol (id int PRIMARY KEY, email text, notes text, bio text, secret text);
		INSERT INTO pol SELECT g, 'user' || g || '@example.com', 'notes ' || g, 'a long biography ' || g, 'secret' || g FROM generate_series(1, 50) g`)
	e.cfg.Format.HashSalt = columnsSalt
	e.cfg.Bindings[0].Columns = pipeline.ColumnPolicies{
		Exclude:  []string{"secret"},
		Hash:     map[string]string{"email": "sha256"},
		Mask:     map[string]int{"notes": 3},
		Truncate: map[string]int{"bio": 6},
	}
	topic := "test.public.pol"
	rn := e.start(t)
	defer rn.stop(t)
	cfg := e.cfg
	cfg.SetDefaults()
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	ctx := context.Background()
	reps, err := pipeline.Verify(ctx, cfg, pipeline.VerifyOptions{CatchUp: 20 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || !reps[0].Equal() || reps[0].Rows != 50 {
		t.Fatalf("clean: %+v", reps)
	}

	e.db.Exec(t, `UPDATE pol SET email = 'changed@example.com' WHERE id = 7`)
	e.consume(t, []string{topic}, 30*time.Second, func(rs []rec) bool { return countOps(rs, topic, "u") >= 1 })
	var stale *kgo.Record
	for _, r := range rawTopic(t, e, topic) {
		if string(r.Key[5:]) == "\x0e" && stale == nil { // id 7: Avro int zigzag
			stale = r
		}
	}
	if stale == nil {
		t.Fatal("no record of id 7")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: stale.Partition, Key: stale.Key, Value: stale.Value}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rep, err := pipeline.Repair(ctx, cfg, pipeline.RepairOptions{VerifyOptions: pipeline.VerifyOptions{CatchUp: 20 * time.Second}, Wait: time.Minute}, log)
	if err != nil {
		t.Fatal(err)
	}
	if b := rep.Before; len(b) != 1 || b[0].NDiffer != 1 || len(b[0].Differ) != 1 || b[0].Differ[0].Key != "id=7" || strings.Join(b[0].Differ[0].Columns, ",") != "email" {
		t.Fatalf("stale hashed column: %+v, want id=7 differing in email", b)
	}
	if a := rep.After; len(a) != 1 || !a[0].Equal() {
		t.Fatalf("after the repair: %+v (notes %v)", a, rep.Notes)
	}
}
