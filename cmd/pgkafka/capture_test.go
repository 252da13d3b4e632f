package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/offsets"
	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
	"github.com/pgkafka/pgkafka/schema"
)

// capture is a pgkafka child process.
type capture struct {
	cmd  *exec.Cmd
	logs *logTail
	done chan error
}

// startCapture runs `pgkafka run -c path` and waits until it streams with
// its backfills finished.
func startCapture(t *testing.T, path string) *capture {
	t.Helper()
	c := startCaptureNoWait(t, path)
	c.waitLog(t, `"msg":"backfills finished"`, time.Minute)
	return c
}

func startCaptureNoWait(t *testing.T, path string) *capture {
	t.Helper()
	cmd := exec.Command(binary, "run", "-c", path, "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &capture{cmd: cmd, logs: &logTail{}, done: make(chan error, 1)}
	scanned := make(chan struct{})
	go func() {
		c.logs.scan(stderr, "\x00never", make(chan struct{}))
		close(scanned)
	}()
	go func() {
		<-scanned
		c.done <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return c
}

func (c *capture) waitLog(t *testing.T, marker string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(c.logs.String(), marker) {
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("pgkafka exited (%v) before logging %s:\n%s", err, marker, c.logs)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s:\n%s", marker, timeout, c.logs)
		}
	}
}

func (c *capture) kill(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("pgkafka not dead 10s after SIGKILL")
	}
}

// stop sends SIGTERM and expects exit 0.
func (c *capture) stop(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, c.logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30s after SIGTERM:\n%s", c.logs)
	}
}

// exit waits for the process to end by itself and returns its exit code.
func (c *capture) exit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case err := <-c.done:
		if err == nil {
			return 0
		}
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		t.Fatalf("waiting for pgkafka: %v", err)
	case <-time.After(timeout):
		t.Fatalf("pgkafka still running after %s:\n%s", timeout, c.logs)
	}
	return -1
}

// counters is a table of counters under a writer that commits
// transactions each incrementing a few of them: per key, the values that
// reach Kafka must be 0, 1, 2, ... to the table's, each exactly once.
type counters struct {
	db   *pgtest.DB
	keys int
	// pause, when set, is the writer's pause between transactions (by
	// default 0-2 ms): a test that reads its topics whole several times
	// keeps them small with it.
	pause time.Duration
}

const countersBinding = "  - resource: {namespace: public, stream: counters, syncMode: incremental}"

func newCounters(t *testing.T, db *pgtest.DB, keys int) *counters {
	t.Helper()
	db.Exec(t, `CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL, pad text)`)
	return &counters{db: db, keys: keys}
}

// seed inserts the keys (after the capture started: there is no backfill).
func (c *counters) seed(t *testing.T) {
	t.Helper()
	c.db.Exec(t, fmt.Sprintf(`INSERT INTO counters SELECT g, 0, repeat('x', 100) FROM generate_series(1, %d) g`, c.keys))
}

// write commits transactions until stop is closed, reconnecting when the
// server goes away, and returns how many committed.
func (c *counters) write(t *testing.T, dsn string, stop <-chan struct{}) <-chan int {
	done := make(chan int, 1)
	go func() {
		n := 0
		var conn *pgx.Conn
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
			done <- n
		}()
		for {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if conn == nil || conn.IsClosed() {
				var err error
				if conn, err = pgx.Connect(ctx, dsn); err != nil {
					cancel()
					conn = nil
					time.Sleep(100 * time.Millisecond)
					continue
				}
			}
			ids := []int32{int32(1 + rand.IntN(c.keys)), int32(1 + rand.IntN(c.keys)), int32(1 + rand.IntN(c.keys))}
			_, err := conn.Exec(ctx, `UPDATE counters SET n = n + 1 WHERE id = ANY($1)`, ids)
			cancel()
			if err == nil {
				n++
			}
			if c.pause > 0 {
				time.Sleep(c.pause)
			} else {
				time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
			}
		}
	}()
	return done
}

// tableState is id -> n.
func (c *counters) tableState(t *testing.T) map[int64]int64 {
	t.Helper()
	rows, err := c.db.Conn(t).Query(context.Background(), `SELECT id, n FROM counters`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]int64{}
	for rows.Next() {
		var id, n int64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// valueRec is a decoded record of the counters topic.
type valueRec struct {
	id, n     int64
	op        string
	tombstone bool
}

// readTopic reads a topic as a read_committed consumer up to its last
// stable offset and decodes it with the registry's schemas.
func readTopic(t *testing.T, brokers []string, registryURL, topic string) []map[string]any {
	t.Helper()
	return readTopicWith(t, brokers, registryURL, topic, true)
}

// readKeys is readTopic decoding only the keys (values are left out): for
// topics of hundreds of thousands of records.
func readKeys(t *testing.T, brokers []string, registryURL, topic string) []map[string]any {
	t.Helper()
	return readTopicWith(t, brokers, registryURL, topic, false)
}

func readTopicWith(t *testing.T, brokers []string, registryURL, topic string, values bool) []map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(adm).ListCommittedOffsets(ctx, topic)
	adm.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	dec, err := schema.NewDecoder(schema.RegistryConfig{URL: registryURL})
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %v (left %v)", topic, ctx.Err(), want)
		}
		for _, fe := range fs.Errors() {
			t.Fatalf("reading %s: %v", topic, fe.Err)
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			end, ok := want[r.Partition]
			if !ok || r.Offset >= end {
				continue
			}
			if r.Offset == end-1 {
				delete(want, r.Partition)
			}
			if r.Attrs.IsControl() {
				continue
			}
			m := map[string]any{"_partition": r.Partition}
			k, err := dec.Decode(ctx, r.Key)
			if err != nil {
				t.Fatal(err)
			}
			m["_key"] = unionFree(k)
			if !values {
				out = append(out, m)
				continue
			}
			v, err := dec.Decode(ctx, r.Value)
			if err != nil {
				t.Fatal(err)
			}
			m["_value"] = unionFree(v)
			out = append(out, m)
		}
	}
	return out
}

// unionFree unwraps hamba/avro's {"type": value} unions, recursively.
func unionFree(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	if len(m) == 1 {
		for k, inner := range m {
			if k == "long" || k == "int" || k == "string" || k == "boolean" || k == "bytes" || k == "double" || strings.Contains(k, ".") {
				return unionFree(inner)
			}
		}
	}
	out := make(map[string]any, len(m))
	for k, x := range m {
		out[k] = unionFree(x)
	}
	return out
}

func counterRecs(t *testing.T, recs []map[string]any) []valueRec {
	t.Helper()
	var out []valueRec
	for _, m := range recs {
		key, _ := m["_key"].(map[string]any)
		var r valueRec
		r.id = toInt(key["id"])
		if m["_value"] == nil {
			r.tombstone = true
			out = append(out, r)
			continue
		}
		v := m["_value"].(map[string]any)
		r.op, _ = v["op"].(string)
		if after, ok := v["after"].(map[string]any); ok {
			r.n = toInt(after["n"])
		}
		out = append(out, r)
	}
	return out
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	}
	return -1
}

// checkExactlyOnce asserts that, per key, the values in Kafka are 0, 1,
// ..., the table's value: every change once, none missing, none repeated.
func checkExactlyOnce(t *testing.T, recs []valueRec, table map[int64]int64) {
	t.Helper()
	seq := map[int64][]int64{}
	for _, r := range recs {
		if r.op == "c" || r.op == "u" {
			seq[r.id] = append(seq[r.id], r.n)
		} else {
			t.Errorf("unexpected record %+v", r)
		}
	}
	ids := make([]int64, 0, len(table))
	for id := range table {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	bad := 0
	for _, id := range ids {
		s := seq[id]
		ok := int64(len(s)) == table[id]+1
		for i := 0; ok && i < len(s); i++ {
			ok = s[i] == int64(i)
		}
		if !ok && bad < 5 {
			bad++
			at := 0
			for at < len(s) && s[at] == int64(at) {
				at++
			}
			got := "nothing"
			if at < len(s) {
				got = fmt.Sprint(s[at])
			}
			t.Errorf("key %d: Kafka holds %d values, the table ends at %d (want 0..%d once each); position %d holds %s", id, len(s), table[id], table[id], at, got)
		}
	}
	if len(seq) != len(table) {
		t.Errorf("Kafka holds %d keys, the table %d", len(seq), len(table))
	}
}

// waitCaughtUp polls the topic until its last value per key equals the table's.
func waitCaughtUp(t *testing.T, brokers []string, registryURL, topic string, table map[int64]int64) []valueRec {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		recs := counterRecs(t, readTopic(t, brokers, registryURL, topic))
		last := map[int64]int64{}
		for _, r := range recs {
			if r.op == "c" || r.op == "u" {
				last[r.id] = r.n
			}
		}
		same := len(last) == len(table)
		for id, n := range table {
			same = same && last[id] == n
		}
		if same {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("Kafka did not catch up with the table in 90s: %d records", len(recs))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkpoint reads the capture's checkpoint.
func checkpoint(t *testing.T, brokers []string, name string) *offsets.Checkpoint {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cp, err := offsets.Load(ctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, "pgkafka-offsets", name)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// slotConfirmed reads the slot's confirmed_flush_lsn.
func slotConfirmed(t *testing.T, db *pgtest.DB) string {
	t.Helper()
	var lsn string
	if err := db.Conn(t).QueryRow(context.Background(), `SELECT COALESCE(confirmed_flush_lsn::text, '') FROM pg_replication_slots WHERE slot_name = 'flow_slot' AND database = current_database()`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}
