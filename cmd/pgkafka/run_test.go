package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

// stack is one test's database, broker and registry, and a config for them.
type stack struct {
	db     *pgtest.DB
	broker *kfake.Cluster
	reg    *srfake.Registry
}

func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{db: cluster.NewDatabase(t)}
	var err error
	if s.broker, err = kfake.NewCluster(kfake.NumBrokers(1)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.broker.Close)
	s.reg = srfake.New()
	t.Cleanup(s.reg.Close)
	return s
}

// config is a configuration file for user/password on this stack.
func (s *stack) config(t *testing.T, user, password, bindings string) string {
	t.Helper()
	return writeConfig(t, fmt.Sprintf(`
name: it
source:
  address: %s
  database: %s
  user: %s
  password: %s
  advanced: {sslmode: disable}
bindings:
%s
kafka:
  brokers: [%s]
schemaRegistry:
  url: %s
`, cluster.Address(), s.db.Name, user, password, bindings, strings.Join(s.broker.ListenAddrs(), ", "), s.reg.URL()))
}

const ordersBinding = "  - resource: {namespace: public, stream: orders, syncMode: incremental}"

func TestRuntimeErrors(t *testing.T) {
	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY, v text)`)
	s.db.CreateRole(t, "norepl", "norepl-pw-123", "LOGIN")
	s.db.Exec(t, `GRANT SELECT ON orders TO norepl`)
	super := cluster.SuperuserPassword()

	t.Run("wrong password", func(t *testing.T) {
		code, out := pgkafka(t, "run", "-c", s.config(t, "postgres", "Wr0ng-Passw0rd", ordersBinding))
		if code != 1 || !strings.Contains(out, `"postgres"`) || !strings.Contains(out, "source.password") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		if strings.Contains(out, "Wr0ng-Passw0rd") {
			t.Fatalf("the password is printed:\n%s", out)
		}
	})
	t.Run("unreachable database", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		path := writeConfig(t, strings.Replace(readFile(t, s.config(t, "postgres", super, ordersBinding)), cluster.Address(), addr, 1))
		start := time.Now()
		code, out := pgkafka(t, "run", "-c", path)
		if code != 1 || !strings.Contains(out, addr) || !strings.Contains(out, "source.address") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		if d := time.Since(start); d > time.Minute {
			t.Fatalf("took %s to give up", d)
		}
	})
	t.Run("missing table", func(t *testing.T) {
		code, out := pgkafka(t, "run", "-c", s.config(t, "postgres", super, "  - resource: {namespace: public, stream: nope}"))
		if code != 1 || !strings.Contains(out, "public.nope") || !strings.Contains(out, "GRANT SELECT") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
	t.Run("missing replication permission", func(t *testing.T) {
		code, out := pgkafka(t, "run", "-c", s.config(t, "norepl", "norepl-pw-123", ordersBinding))
		if code != 1 || !strings.Contains(out, `ALTER ROLE "norepl" WITH REPLICATION`) {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		if strings.Contains(out, "norepl-pw-123") {
			t.Fatalf("the password is printed:\n%s", out)
		}
	})
	t.Run("check reports the failures with fixes", func(t *testing.T) {
		code, out := pgkafka(t, "check", "-c", s.config(t, "norepl", "norepl-pw-123", ordersBinding))
		if code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "fix: ALTER ROLE") || !strings.Contains(out, "passed") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
}

func TestDiscoverPrintsBindings(t *testing.T) {
	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY, amount numeric(10,2) NOT NULL);
		CREATE TABLE "Mixed Case" (a text, b int, PRIMARY KEY (b, a)); CREATE TABLE nokey (x int)`)
	code, out := pgkafka(t, "discover", "-c", s.config(t, "postgres", cluster.SuperuserPassword(), ordersBinding))
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{
		`- resource: {namespace: "public", stream: "orders", syncMode: incremental}`,
		`- resource: {namespace: "public", stream: "Mixed Case", syncMode: incremental}`,
		"# key: b, a", "#   amount: numeric(10,2) not null", "# no primary key",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("discover output lacks %q:\n%s", want, out)
		}
	}
	// The output is a configuration the loader accepts.
	cfgText := readFile(t, s.config(t, "postgres", cluster.SuperuserPassword(), "  []"))
	cfgText = strings.Replace(cfgText, "bindings:\n  []\n", out[strings.Index(out, "bindings:"):], 1)
	cfg, err := loadConfig(writeConfig(t, cfgText), nil, nil)
	if err != nil {
		t.Fatalf("discover's output does not load: %v\n%s", err, cfgText)
	}
	if len(cfg.Bindings) < 3 {
		t.Fatalf("%d bindings loaded from discover's output", len(cfg.Bindings))
	}
}

// TestDiscoverKeysAndWatermarks: discover says which key a table has (the
// primary key, else the replica identity index) and leaves out the
// watermarks table, only it.
func TestDiscoverKeysAndWatermarks(t *testing.T) {
	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE ident (id int NOT NULL, v text NOT NULL);
		CREATE UNIQUE INDEX ident_idx ON ident (v, id);
		ALTER TABLE ident REPLICA IDENTITY USING INDEX ident_idx;
		CREATE TABLE both_keys (id int PRIMARY KEY, u int NOT NULL);
		CREATE UNIQUE INDEX both_keys_u ON both_keys (u);
		ALTER TABLE both_keys REPLICA IDENTITY USING INDEX both_keys_u;
		CREATE TABLE flow_watermarks (slot text PRIMARY KEY, watermark text NOT NULL);
		CREATE SCHEMA other; CREATE TABLE other.flow_watermarks (slot text PRIMARY KEY)`)
	code, out := pgkafka(t, "discover", "-c", s.config(t, "postgres", cluster.SuperuserPassword(), ordersBinding))
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{
		`- resource: {namespace: "public", stream: "ident", syncMode: incremental}` + "\n    # key (replica identity index): v, id\n",
		`- resource: {namespace: "public", stream: "both_keys", syncMode: incremental}` + "\n    # key: id\n",
		`- resource: {namespace: "other", stream: "flow_watermarks", syncMode: incremental}`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("discover output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, `{namespace: "public", stream: "flow_watermarks"`) {
		t.Errorf("discover lists the watermarks table:\n%s", out)
	}
}

// TestRunStreamsAndStopsOnSIGTERM runs the binary: a change committed in
// PostgreSQL is readable from its topic within a second, and SIGTERM stops
// it cleanly with exit 0.
func TestRunStreamsAndStopsOnSIGTERM(t *testing.T) {
	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY, v text)`)
	s.db.CreateRole(t, "capture", "capture-pw-1", "LOGIN", "REPLICATION")
	s.db.Exec(t, `ALTER TABLE orders OWNER TO capture; GRANT CREATE ON DATABASE "`+s.db.Name+`" TO capture; GRANT CREATE ON SCHEMA public TO capture`)
	cmd := exec.Command(binary, "run", "-c", s.config(t, "capture", "capture-pw-1", ordersBinding), "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	logs := &logTail{}
	ready := make(chan struct{})
	go logs.scan(stderr, `"msg":"backfills finished"`, ready)
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatalf("not capturing after 60s; log:\n%s", logs)
	}

	consumer, err := kgo.NewClient(kgo.SeedBrokers(s.broker.ListenAddrs()...), kgo.ConsumeTopics("it.public.orders"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var latencies []time.Duration
	for i := range 5 {
		start := time.Now()
		s.db.Exec(t, fmt.Sprintf(`INSERT INTO orders VALUES (%d, 'x')`, i))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		fs := consumer.PollRecords(ctx, 1)
		cancel()
		if fs.NumRecords() != 1 {
			t.Fatalf("insert %d not in Kafka after 10s (errors %v); log:\n%s", i, fs.Errors(), logs)
		}
		latencies = append(latencies, time.Since(start))
	}
	t.Logf("commit-to-consumer latencies: %v", latencies)
	for _, l := range latencies[1:] {
		if l > time.Second {
			t.Errorf("a change took %s to be readable; the contract is within a second", l)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; log:\n%s", err, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30s after SIGTERM; log:\n%s", logs)
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("no clean stop logged:\n%s", logs)
	}

	// It made its prerequisites on the fresh database.
	conn := s.db.Conn(t)
	var plugin, confirmed string
	if err := conn.QueryRow(context.Background(), `SELECT plugin, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'flow_slot' AND database = current_database()`).Scan(&plugin, &confirmed); err != nil || plugin != "pgoutput" {
		t.Errorf("slot flow_slot: plugin %q, %v", plugin, err)
	}
	var viaRoot bool
	var tables string
	if err := conn.QueryRow(context.Background(), `SELECT p.pubviaroot, string_agg(t.schemaname || '.' || t.tablename, ',' ORDER BY t.tablename)
		FROM pg_publication p JOIN pg_publication_tables t USING (pubname) WHERE p.pubname = 'flow_publication' GROUP BY p.pubviaroot`).Scan(&viaRoot, &tables); err != nil {
		t.Errorf("publication flow_publication: %v", err)
	}
	if !viaRoot || tables != "public.flow_watermarks,public.orders" {
		t.Errorf("publication: publish_via_partition_root %v, tables %s", viaRoot, tables)
	}
	var owner string
	if err := conn.QueryRow(context.Background(), `SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = 'flow_watermarks'`).Scan(&owner); err != nil || owner != "capture" {
		t.Errorf("watermarks table owner %q: %v", owner, err)
	}
}

// logTail collects a child's log lines.
type logTail struct {
	mu    sync.Mutex
	lines []string
}

func (l *logTail) scan(r io.Reader, marker string, found chan<- struct{}) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	signalled := false
	for sc.Scan() {
		l.mu.Lock()
		l.lines = append(l.lines, sc.Text())
		l.mu.Unlock()
		if !signalled && strings.Contains(sc.Text(), marker) {
			signalled = true
			close(found)
		}
	}
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
