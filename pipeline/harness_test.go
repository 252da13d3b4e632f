package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
	"github.com/pgkafka/pgkafka/pipeline"
	"github.com/pgkafka/pgkafka/schema"
)

// cluster is the package's PostgreSQL cluster; each test has its own database.
var cluster *pgtest.Cluster

func TestMain(m *testing.M) {
	c, err := pgtest.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting PostgreSQL:", err)
		os.Exit(1)
	}
	cluster = c
	code := m.Run()
	if err := c.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping PostgreSQL:", err)
	}
	os.Exit(code)
}

// env is one test's world: a database, a Kafka broker, a schema registry
// and a configuration pointing at them.
type env struct {
	db     *pgtest.DB
	broker *kfake.Cluster
	reg    *srfake.Registry
	cfg    pipeline.Config
	// logs, when set, gets a copy of the log of every Runner start starts.
	logs *lockedBuffer
}

func newEnv(t *testing.T, bindings ...string) *env {
	t.Helper()
	db := cluster.NewDatabase(t)
	broker, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	reg := srfake.New()
	t.Cleanup(reg.Close)
	e := &env{db: db, broker: broker, reg: reg}
	e.cfg.Name = "test"
	e.cfg.Source = db.SourceConfig(pgtest.Superuser, cluster.SuperuserPassword())
	e.cfg.Kafka.Brokers = broker.ListenAddrs()
	e.cfg.SchemaRegistry.URL = reg.URL()
	for _, b := range bindings {
		ns, name, _ := strings.Cut(b, ".")
		e.cfg.Bindings = append(e.cfg.Bindings, pipeline.Binding{Resource: pipeline.Resource{Namespace: ns, Stream: name}})
	}
	return e
}

// running is a Runner started by a test.
type running struct {
	r    *pipeline.Runner
	done chan error
}

func (e *env) start(t *testing.T) *running {
	t.Helper()
	rn := e.launch(t)
	select {
	case <-rn.r.Backfilled():
	case err := <-rn.done:
		t.Fatalf("runner ended before its backfills finished: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("backfills not finished after 60s")
	}
	return rn
}

// launch starts a Runner without waiting for anything.
func (e *env) launch(t *testing.T) *running {
	t.Helper()
	cfg := e.cfg
	cfg.SetDefaults()
	var w io.Writer = testWriter{t}
	if e.logs != nil {
		w = io.MultiWriter(w, e.logs)
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, err := pipeline.NewRunner(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	rn := &running{r: r, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { rn.done <- r.Run(ctx) }()
	t.Cleanup(func() {
		r.Stop()
		select {
		case <-rn.done:
		case <-time.After(20 * time.Second):
			cancel()
		}
		cancel()
	})
	return rn
}

// stop is a soft stop; it fails the test unless Run returns nil.
func (rn *running) stop(t *testing.T) {
	t.Helper()
	rn.r.Stop()
	select {
	case err := <-rn.done:
		if err != nil {
			t.Fatalf("Run after Stop: %v", err)
		}
		rn.done <- nil // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of Stop")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// rec is a record read back from Kafka and decoded by hamba/avro's generic
// decoder (not by our encoder).
type rec struct {
	Topic     string
	Partition int32
	RawKey    []byte
	Key       map[string]any // nil: null key
	Tombstone bool
	Op        string
	Before    map[string]any
	After     map[string]any
	Source    map[string]any
	Value     map[string]any    // the whole value (flat envelope)
	Headers   map[string]string // the record's Kafka headers
}

// consume reads topics (read_committed) until done reports true on what
// was read so far, or fails the test after timeout.
func (e *env) consume(t *testing.T, topics []string, timeout time.Duration, done func([]rec) bool) []rec {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	dec, err := schema.NewDecoder(schema.RegistryConfig{URL: e.reg.URL()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []rec
	for !done(out) {
		// Short polls, so done is asked again even when nothing comes.
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			t.Fatalf("after %s, %d records read and the condition is not met:\n%s", timeout, len(out), dump(out))
		}
		for _, fe := range fs.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) {
				continue
			}
			t.Fatalf("fetch %s: %v", fe.Topic, fe.Err)
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			out = append(out, decodeRec(t, dec, r))
		}
	}
	return out
}

func decodeRec(t *testing.T, dec *schema.Decoder, r *kgo.Record) rec {
	t.Helper()
	if isJSONRecord(r) { // format.encoding json (json_e2e_test.go)
		return decodeJSONRec(t, r)
	}
	ctx := context.Background()
	x := rec{Topic: r.Topic, Partition: r.Partition, RawKey: r.Key}
	for _, h := range r.Headers {
		if x.Headers == nil {
			x.Headers = map[string]string{}
		}
		x.Headers[h.Key] = string(h.Value)
	}
	k, err := dec.Decode(ctx, r.Key)
	if err != nil {
		t.Fatalf("decoding key at %s@%d: %v", r.Topic, r.Offset, err)
	}
	if k != nil {
		x.Key = plain(k).(map[string]any)
	}
	if r.Value == nil {
		x.Tombstone = true
		return x
	}
	v, err := dec.Decode(ctx, r.Value)
	if err != nil {
		t.Fatalf("decoding value at %s@%d: %v", r.Topic, r.Offset, err)
	}
	m := plain(v).(map[string]any)
	x.Value = m
	if op, ok := m["op"].(string); ok {
		x.Op = op
		x.Before, _ = m["before"].(map[string]any)
		x.After, _ = m["after"].(map[string]any)
		x.Source, _ = m["source"].(map[string]any)
	} else if op, ok := m["__op"].(string); ok {
		x.Op = op
	}
	return x
}

// plain unwraps hamba/avro's {"type": value} unions and renders decimals
// as strings, recursively.
func plain(v any) any {
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 1 {
			for k, inner := range t {
				if isUnionBranch(k) {
					return plain(inner)
				}
			}
		}
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = plain(x)
		}
		return out
	case *big.Rat:
		return ratString(t)
	case []any:
		for i := range t {
			t[i] = plain(t[i])
		}
	}
	return v
}

func isUnionBranch(k string) bool {
	switch k {
	case "string", "long", "int", "bytes", "double", "float", "boolean", "null":
		return true
	}
	return strings.Contains(k, ".")
}

// ratString renders r with as few decimals as represent it exactly.
func ratString(r *big.Rat) string {
	for n := 0; n < 30; n++ {
		s := r.FloatString(n)
		if x, ok := new(big.Rat).SetString(s); ok && x.Cmp(r) == 0 {
			return s
		}
	}
	return r.FloatString(30)
}

func dump(rs []rec) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "  %s key=%v op=%s tomb=%v before=%v after=%v\n", r.Topic, r.Key, r.Op, r.Tombstone, r.Before, r.After)
	}
	return b.String()
}

// countOps is a done function: at least n records (tombstones included).
func atLeast(n int) func([]rec) bool { return func(rs []rec) bool { return len(rs) >= n } }

// state folds a topic's records into the rows they describe, by key.
func state(rs []rec, topic string) map[string]map[string]any {
	rows := map[string]map[string]any{}
	for _, r := range rs {
		if r.Topic != topic || r.Key == nil {
			continue
		}
		k := fmt.Sprint(sortedMap(r.Key))
		switch {
		case r.Tombstone, r.Op == "d":
			delete(rows, k)
		case r.Op == "c", r.Op == "u", r.Op == "r":
			rows[k] = r.After
		}
	}
	return rows
}

func sortedMap(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%v;", k, m[k])
	}
	return b.String()
}

// withBindings returns cfg bound to the given <schema>.<table> names.
func withBindings(cfg pipeline.Config, tables ...string) pipeline.Config {
	cfg.Bindings = nil
	for _, b := range tables {
		ns, name, _ := strings.Cut(b, ".")
		cfg.Bindings = append(cfg.Bindings, pipeline.Binding{Resource: pipeline.Resource{Namespace: ns, Stream: name}})
	}
	return cfg
}
