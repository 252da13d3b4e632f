package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

// The scenarios' sizes, unless BENCH_RSS_ROWS, BENCH_RSS_TX_ROWS and
// BENCH_RSS_TOAST_ROWS say otherwise.
const (
	rssDefaultRows      = 1_000_000
	rssDefaultTxRows    = 300_000
	rssDefaultToastRows = 1000
	// rssLoadRows is the number of rows of each inserting statement before
	// the backfill.
	rssLoadRows = 100_000
	// rssToastValueBytes is the size of each TOASTed value (text).
	rssToastValueBytes = 1_000_000
	// rssPhaseTimeout bounds each scenario.
	rssPhaseTimeout = 15 * time.Minute
	// rssDesignMB is DESIGN §9's bound, printed beside each figure.
	rssDesignMB = 128
)

// rssTable is the pipeline benchmark's table: rows of about 200 bytes.
const rssTable = `
CREATE TABLE bench (
	id bigint PRIMARY KEY,
	a  text,
	b  text,
	c  int,
	d  timestamptz,
	e  numeric(12,2)
) WITH (autovacuum_enabled = false)`

// rssInsert inserts the rows $1..$2 of bench.
const rssInsert = `
INSERT INTO bench
SELECT g,
       md5(g::text) || md5((g + 1)::text) || left(md5((g + 2)::text), 8),
       md5((g + 3)::text) || md5((g + 4)::text) || left(md5((g + 5)::text), 8),
       (g % 100000)::int,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       ((g % 1000000) + 0.25)::numeric(12,2)
FROM generate_series($1::bigint, $2::bigint) AS g`

// rssToastTable holds one large text value a row, stored out of line
// without compression (EXTERNAL), so that every value is a TOAST pointer
// in the heap and an update that leaves it alone sends it as unchanged.
const rssToastTable = `
CREATE TABLE big (
	id int PRIMARY KEY,
	n  int NOT NULL,
	v  text
) WITH (autovacuum_enabled = false);
ALTER TABLE big ALTER COLUMN v SET STORAGE EXTERNAL`

// BenchmarkRSS measures DESIGN §9's "peak RSS at most 128 MB whatever the
// table or transaction size" on the real binary: each scenario runs
// `pgkafka run` as a child process against the package's PostgreSQL
// cluster and a kfake broker and srfake registry in this process (whose
// own memory, kfake's copy of every record included, is not counted), and
// reports the child's peak resident set (VmHWM, read before it is stopped)
// and its rate:
//
//   - backfill: BENCH_RSS_ROWS rows (default 1,000,000) of ~200 bytes,
//     default settings;
//   - transaction: a new process, resuming from the backfill's checkpoint,
//     streams one PostgreSQL transaction of BENCH_RSS_TX_ROWS rows
//     (default 300,000; one INSERT ... SELECT generate_series), which
//     kafka.maxTransactionRecords splits across Kafka transactions;
//   - toast: BENCH_RSS_TOAST_ROWS rows (default 1000) of a 1 MB text value
//     are backfilled, then one UPDATE leaving the values alone changes
//     every row: the unchanged values come from the TOAST cache or are
//     read from the database. Its line also gives the peak at the end of
//     the backfill (VmHWM) and the paths the values took.
//
// It only reports (a line per scenario and b.ReportMetric); it checks the
// record counts in Kafka, not the figures. Run it with `make bench`, or
// `go test -run '^$' -bench BenchmarkRSS -benchtime 1x ./cmd/pgkafka/`.
func BenchmarkRSS(b *testing.B) {
	rows := rssEnvRows(b, "BENCH_RSS_ROWS", rssDefaultRows)
	txRows := rssEnvRows(b, "BENCH_RSS_TX_ROWS", rssDefaultTxRows)
	toastRows := rssEnvRows(b, "BENCH_RSS_TOAST_ROWS", rssDefaultToastRows)
	ctx, cancel := context.WithTimeout(context.Background(), 3*rssPhaseTimeout)
	defer cancel()
	b.StopTimer()

	s := newRSSStack(b)
	db := s.db
	const topic = "rss.public.bench"

	// (a) backfill.
	db.Exec(b, rssTable)
	loadStart := time.Now()
	for first := 1; first <= rows; first += rssLoadRows {
		db.Exec(b, rssInsert, first, min(first+rssLoadRows-1, rows))
	}
	db.Exec(b, "VACUUM (ANALYZE) bench")
	b.Logf("%d rows inserted and vacuumed in %s", rows, time.Since(loadStart).Round(time.Millisecond))
	cfg := s.config(b, "rss", "public", "bench")
	child := startRSSChild(b, cfg)
	child.waitLog(b, `"msg":"backfills finished"`, rssPhaseTimeout)
	took := time.Since(child.started)
	peak := child.stop(b)
	if n := rssCountRecords(ctx, b, s.broker, topic, rows); n != rows {
		b.Fatalf("%s holds %d committed records after the backfill, want %d", topic, n, rows)
	}
	rssReport(b, "backfill", fmt.Sprintf("%d rows of ~200 bytes", rows), rows, took, peak, "")

	// (b) one large transaction, streamed by a new process.
	child = startRSSChild(b, cfg)
	child.waitLog(b, `"msg":"capturing"`, time.Minute)
	commitLSN := rssInsertTx(ctx, b, db, rows+1, rows+txRows)
	start := time.Now()
	child.waitCommitted(b, commitLSN, rssPhaseTimeout)
	took = time.Since(start)
	peak = child.stop(b)
	if n := rssCountRecords(ctx, b, s.broker, topic, rows+txRows); n != rows+txRows {
		b.Fatalf("%s holds %d committed records after the transaction, want %d", topic, n, rows+txRows)
	}
	rssReport(b, "transaction", fmt.Sprintf("one transaction of %d rows", txRows), txRows, took, peak, "")

	// (c) large TOASTed values: a backfill, then an update of every row
	// that leaves them alone, in the same process (the TOAST cache is
	// empty after a start).
	const toastTopic = "rss-toast.public.big"
	db.Exec(b, rssToastTable)
	db.Exec(b, fmt.Sprintf(`INSERT INTO big SELECT g, 0, repeat(md5(g::text), %d) FROM generate_series(1, %d) g`,
		rssToastValueBytes/32, toastRows))
	db.Exec(b, "VACUUM (ANALYZE) big")
	child = startRSSChild(b, s.config(b, "rss-toast", "public", "big"))
	child.waitLog(b, `"msg":"backfills finished"`, rssPhaseTimeout)
	backfillTook := time.Since(child.started)
	backfillHWM := child.hwmMB()
	commitLSN = rssExecTx(ctx, b, db, `UPDATE big SET n = n + 1`)
	start = time.Now()
	child.waitCommitted(b, commitLSN, rssPhaseTimeout)
	took = time.Since(start)
	paths := child.toastPaths(b)
	peak = child.stop(b)
	if n := rssCountRecords(ctx, b, s.broker, toastTopic, 2*toastRows); n != 2*toastRows {
		b.Fatalf("%s holds %d committed records, want %d", toastTopic, n, 2*toastRows)
	}
	rssReport(b, "toast", fmt.Sprintf("%d rows of a %d-byte value, backfilled (%.0f rows/s, peak %.0f MB by then) then updated",
		toastRows, rssToastValueBytes, float64(toastRows)/backfillTook.Seconds(), backfillHWM), toastRows, took, peak, paths)
}

// rssReport prints a scenario's line and reports its metrics.
func rssReport(b *testing.B, name, what string, rows int, took time.Duration, peakMB float64, extra string) {
	b.Helper()
	rate := float64(rows) / took.Seconds()
	b.ReportMetric(peakMB, name+"-peak-RSS-MB")
	b.ReportMetric(rate, name+"-rows/s")
	fmt.Printf("rss %-11s peak RSS %4.0f MB (DESIGN §9: %d)  %7.0f rows/s  %s in %s%s\n",
		name+":", peakMB, rssDesignMB, rate, what, took.Round(time.Millisecond), extra)
}

// rssStack is the benchmark's database, broker and registry.
type rssStack struct {
	db     *pgtest.DB
	broker *kfake.Cluster
	reg    *srfake.Registry
}

func newRSSStack(b *testing.B) *rssStack {
	b.Helper()
	s := &rssStack{db: cluster.NewDatabase(b)}
	var err error
	if s.broker, err = kfake.NewCluster(kfake.NumBrokers(1)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.broker.Close)
	s.reg = srfake.New()
	b.Cleanup(s.reg.Close)
	return s
}

// config writes a configuration file capturing one table under name,
// with every other key at its default, and metrics on a free port.
func (s *rssStack) config(b *testing.B, name, namespace, stream string) string {
	b.Helper()
	return benchConfig(b, s.db, s.broker.ListenAddrs(), s.reg.URL(), name, namespace, stream)
}

// benchConfig writes a configuration file capturing one table of db under
// name, as its cluster's superuser, into brokers with the registry at
// registryURL, with every other key at its default, and metrics on a free
// port.
func benchConfig(b *testing.B, db *pgtest.DB, brokers []string, registryURL, name, namespace, stream string) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "pgkafka.yaml")
	yaml := fmt.Sprintf(`name: %s
source:
  address: %s
  database: %s
  user: %s
  password: %s
  advanced: {sslmode: disable, slotName: %s}
bindings:
  - resource: {namespace: %s, stream: %s, syncMode: incremental}
kafka:
  brokers: [%s]
schemaRegistry:
  url: %s
metrics:
  address: 127.0.0.1:0
  pprof: %t
`, name, db.Cluster().Address(), db.Name, pgtest.Superuser, db.Cluster().SuperuserPassword(),
		strings.ReplaceAll(name, "-", "_")+"_slot", namespace, stream,
		strings.Join(brokers, ", "), registryURL, os.Getenv("BENCH_PPROF") != "")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	return p
}

// rssChild is a `pgkafka run` child process.
type rssChild struct {
	cmd     *exec.Cmd
	logs    *logTail
	done    chan error
	started time.Time
	metrics string // host:port, once logged
}

// startRSSChild starts `pgkafka run -c path` and waits until it serves
// its metrics.
func startRSSChild(b *testing.B, path string) *rssChild {
	b.Helper()
	cmd := exec.Command(binary, "run", "-c", path, "--log-format", "json")
	if v := os.Getenv("BENCH_RSS_GODEBUG"); v != "" {
		// e.g. gctrace=1, with BENCH_RSS_LOGS=<dir> to keep the child's
		// log (and the runtime's lines) in <dir>/pgkafka-<pid>.log.
		cmd.Env = append(os.Environ(), "GODEBUG="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	c := &rssChild{cmd: cmd, logs: &logTail{}, done: make(chan error, 1), started: time.Now()}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		c.logs.scan(stderr, "\x00never", make(chan struct{}))
		close(scanned)
	}()
	go func() {
		<-scanned
		c.done <- cmd.Wait()
	}()
	b.Cleanup(func() { _ = cmd.Process.Kill() })
	c.waitLog(b, `"msg":"serving metrics"`, time.Minute)
	for _, line := range strings.Split(c.logs.String(), "\n") {
		var l struct{ Msg, Address string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving metrics" {
			c.metrics = l.Address
		}
	}
	if c.metrics == "" {
		b.Fatalf("no metrics address in pgkafka's log:\n%s", c.logs)
	}
	return c
}

func (c *rssChild) waitLog(b *testing.B, marker string, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(c.logs.String(), marker) {
		select {
		case err := <-c.done:
			c.done <- err
			b.Fatalf("pgkafka exited (%v) before logging %s:\n%s", err, marker, c.logs)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatalf("no %s after %s:\n%s", marker, timeout, c.logs)
		}
	}
}

// profile, when BENCH_PPROF names a directory, starts taking a CPU profile
// of the child for BENCH_PPROF_SECONDS (default 3) into
// BENCH_PPROF/<name>.pprof (the child serves metrics.pprof then) and, with
// BENCH_PERF set too, a system-wide `perf record -g` over the same seconds
// into <name>.perf.data (PostgreSQL's and the kernel's share). The returned
// func waits for them, then saves the child's allocations so far into
// <name>.allocs.pprof.
func (c *rssChild) profile(b *testing.B, name string) (wait func()) {
	b.Helper()
	dir := os.Getenv("BENCH_PPROF")
	if dir == "" {
		return func() {}
	}
	seconds := orDefault(os.Getenv("BENCH_PPROF_SECONDS"), "3")
	var perf *exec.Cmd
	if os.Getenv("BENCH_PERF") != "" {
		perf = exec.Command("perf", "record", "-a", "-g", "-o", filepath.Join(dir, name+".perf.data"), "--", "sleep", seconds)
		if err := perf.Start(); err != nil {
			b.Fatalf("starting perf: %v", err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.savePprof(b, "profile?seconds="+seconds, filepath.Join(dir, name+".pprof"))
		if perf != nil {
			if err := perf.Wait(); err != nil {
				b.Errorf("perf: %v", err)
			}
		}
	}()
	return func() {
		<-done
		c.savePprof(b, "allocs", filepath.Join(dir, name+".allocs.pprof"))
	}
}

// savePprof saves the child's /debug/pprof/<what> into path.
func (c *rssChild) savePprof(b *testing.B, what, path string) {
	resp, err := http.Get("http://" + c.metrics + "/debug/pprof/" + what)
	if err != nil {
		b.Errorf("profiling pgkafka: %v", err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(path, body, 0o644)
	}
	if err != nil {
		b.Errorf("profiling pgkafka: %v", err)
	}
}

// scrape returns the child's metrics: each sample's name with its labels,
// as printed, and its value.
func (c *rssChild) scrape(b *testing.B) map[string]float64 {
	b.Helper()
	resp, err := http.Get("http://" + c.metrics + "/metrics")
	if err != nil {
		b.Fatalf("scraping pgkafka's metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if strings.HasPrefix(line, "#") || i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatalf("reading pgkafka's metrics: %v", err)
	}
	return out
}

// waitCommitted polls the child's committed LSN every 10 ms until it
// passes lsn.
func (c *rssChild) waitCommitted(b *testing.B, lsn pglogrepl.LSN, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if got := pglogrepl.LSN(c.scrape(b)["pgkafka_committed_lsn"]); got > lsn {
			return
		}
		select {
		case err := <-c.done:
			c.done <- err
			b.Fatalf("pgkafka exited (%v) before committing past %s:\n%s", err, lsn, c.logs)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatalf("pgkafka has not committed past %s after %s:\n%s", lsn, timeout, c.logs)
		}
	}
}

// toastPaths is ", TOAST values: <path> <n>, ..." from the child's metrics.
func (c *rssChild) toastPaths(b *testing.B) string {
	b.Helper()
	m := c.scrape(b)
	var sb strings.Builder
	sb.WriteString("; unchanged TOAST values by path:")
	for _, p := range []string{"old_tuple", "cache", "database", "unavailable"} {
		fmt.Fprintf(&sb, " %s %.0f", p, m[`pgkafka_toast_values_total{path="`+p+`"}`])
	}
	return sb.String()
}

// hwmMB is the child's peak resident set so far (VmHWM), in MB.
func (c *rssChild) hwmMB() float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// stop returns the child's peak resident set (VmHWM) read just before it
// sends SIGTERM, in MB, and expects exit 0. Not wait4's ru_maxrss: Go
// starts children with vfork semantics (CLONE_VM), and exec folds the
// parent's peak (this process, kfake's records and all) into the child's
// ru_maxrss.
func (c *rssChild) stop(b *testing.B) float64 {
	b.Helper()
	hwm := c.hwmMB()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		if err != nil {
			b.Fatalf("exit after SIGTERM: %v\n%s", err, c.logs)
		}
	case <-time.After(time.Minute):
		b.Fatalf("still running 1m after SIGTERM:\n%s", c.logs)
	}
	if dir := os.Getenv("BENCH_RSS_LOGS"); dir != "" {
		defer func() {
			p := filepath.Join(dir, fmt.Sprintf("pgkafka-%d.log", c.cmd.Process.Pid))
			if err := os.WriteFile(p, []byte(c.logs.String()), 0o644); err != nil {
				b.Error(err)
			}
		}()
	}
	return hwm
}

// rssInsertTx inserts bench's rows first..last in one transaction and
// returns a WAL position inside it, before its commit record.
func rssInsertTx(ctx context.Context, b *testing.B, db *pgtest.DB, first, last int) pglogrepl.LSN {
	b.Helper()
	return rssTx(ctx, b, db, rssInsert, first, last)
}

// rssExecTx runs sql in one transaction and returns a WAL position inside
// it, before its commit record.
func rssExecTx(ctx context.Context, b *testing.B, db *pgtest.DB, sql string) pglogrepl.LSN {
	b.Helper()
	return rssTx(ctx, b, db, sql)
}

func rssTx(ctx context.Context, b *testing.B, db *pgtest.DB, sql string, args ...any) pglogrepl.LSN {
	b.Helper()
	tx, err := db.Conn(b).Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		b.Fatalf("%s: %v", strings.TrimSpace(sql), err)
	}
	var s string
	if err := tx.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		b.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		b.Fatal(err)
	}
	return lsn
}

// rssCountRecords reads topic as a read_committed consumer until it has
// read want records, or nothing more comes for a few seconds; it returns
// the count (tombstones included).
func rssCountRecords(ctx context.Context, b *testing.B, broker *kfake.Cluster, topic string, want int) int {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	n := 0
	for n < want {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if pctx.Err() != nil && fs.NumRecords() == 0 {
			break
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				b.Fatalf("reading %s[%d]: %v", topic, p, err)
			}
		})
		n += fs.NumRecords()
	}
	return n
}

// rssEnvRows is the number of rows in the environment variable name, or
// def when it is empty.
func rssEnvRows(b *testing.B, name string, def int) int {
	b.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number of rows", name, s)
	}
	return n
}
