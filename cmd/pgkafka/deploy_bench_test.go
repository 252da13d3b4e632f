package main

import (
	"bufio"
	"context"
	binenc "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

// BenchmarkDeployment's sizes, unless BENCH_BACKFILL_ROWS, BENCH_ROWS,
// BENCH_LATENCY_SECONDS and BENCH_LATENCY_RATES say otherwise.
const (
	deployBackfillRows   = 1_000_000
	deployRows           = 300_000
	deployLatencySeconds = 10
	// deployTxRows is the number of rows of each transaction of the
	// catch-up phase's writes.
	deployTxRows = 1000
	// deployLoadRows is the number of rows of each inserting statement
	// before the backfill.
	deployLoadRows = 100_000
	// deployRawTxRecords is the number of records of each transaction of
	// the raw producer: the default source.advanced.backfill_chunk_size.
	deployRawTxRecords = 4096
	// deployLatencyWriters share the latency phase's writes: one
	// connection cannot commit thousands of transactions a second.
	deployLatencyWriters = 8
	// deployPhaseTimeout bounds each phase.
	deployPhaseTimeout = 15 * time.Minute

	deployName        = "deploy"
	deployTopic       = "deploy.public.bench"
	deployRawTopic    = "deploy-raw"
	deployPublication = "flow_publication" // the default source.advanced.publicationName
	deployRecvSlot    = "deploy_recvlogical"
	// deployKafkaTx is pgkafka's count of the Kafka transactions it committed.
	deployKafkaTx    = "pgkafka_kafka_transactions_total"
	deployServerSlot = "deploy_server"
)

// deployTable is the table: rows of about 200 bytes (pg_column_size
// ~190), a ~100-byte payload among them. autovacuum is off so that nothing
// but the writes makes WAL; the backfilled rows are vacuumed once.
const deployTable = `
CREATE TABLE bench (
	id         bigint PRIMARY KEY,
	account_id bigint,
	name       text,
	email      text,
	amount     numeric(12,2),
	created_at timestamptz,
	active     boolean,
	payload    text
) WITH (autovacuum_enabled = false);
CREATE TABLE bench_pad (id bigserial PRIMARY KEY)`

// deployInsert inserts the rows $1..$2.
const deployInsert = `
INSERT INTO bench
SELECT g, g % 10007, 'customer ' || g, 'customer' || g || '@example.com',
       ((g % 1000000) + 0.25)::numeric(12,2), clock_timestamp(), g % 3 <> 0,
       md5(g::text) || md5((g + 1)::text) || md5((g + 2)::text) || left(md5((g + 3)::text), 4)
FROM generate_series($1::bigint, $2::bigint) AS g`

// BenchmarkDeployment measures DESIGN §9's targets in a deployment's
// shape: the pgkafka binary (`pgkafka run`, default settings) as a child
// process; the broker (kfake) and the registry (srfake) in another,
// cmd/pgkafka/internal/benchstack, over TCP and HTTP; a PostgreSQL cluster
// of its own with synchronous_commit = BENCH_SYNCHRONOUS_COMMIT (on by
// default; `make bench` runs on, then off). A phase ends when a
// read_committed consumer in this process, started before the phase and
// done with what the topic held before it, has read the phase's last
// record. The phases, in one run:
//
//   - backfill: BENCH_BACKFILL_ROWS rows (default 1,000,000), timed from
//     pgkafka's start; baseline: a raw franz-go transactional producer of
//     the very records pgkafka produced (read back by the consumer: same
//     keys, values and partitions) into another topic of the same broker,
//     in transactions of 4096 records, with pgkafka's producer settings
//     (lz4, 5 ms linger, 1 MB batches, acks=all), timed from its client's
//     creation until a read_committed consumer read the last one;
//   - catch-up: pgkafka stopped (SIGTERM, exit 0), BENCH_ROWS rows
//     (default 300,000) inserted in transactions of 1000 rows, then
//     pgkafka started and timed until the consumer read the last one;
//     baselines over the same WAL (two slots created before the writes):
//     pg_recvlogical (pgoutput, proto_version 1, the same publication) to
//     /dev/null up to the end LSN, and the server's own decoding,
//     SELECT count(*) FROM pg_logical_slot_get_binary_changes(...);
//   - latency: the same pgkafka process; single-row transactions at each
//     of BENCH_LATENCY_RATES (default 1000,5000) a second for
//     BENCH_LATENCY_SECONDS (default 10) each, from 8 connections. A
//     row's latency runs from the return of its COMMIT to the writer
//     (noted in memory under the row's id) to the return of the fetch
//     that brought its record to the consumer (the id decoded from the
//     record's key); a record fetched before its COMMIT returned counts 0.
//     p50, p99 and max, and the rate achieved (the machine may not sustain
//     the rate asked);
//   - peak RSS: VmHWM of each pgkafka process (the backfill's; the
//     catch-up's and latency's) just before its SIGTERM.
//
// It prints a table and reports every figure with b.ReportMetric; ns/op is
// pgkafka's backfill and catch-up. The CPU times it prints (pgkafka, the
// broker's process, this process: the consumers and the raw producer) tell
// where the time goes on a shared machine; BENCH_PPROF=<dir> also saves
// pgkafka's CPU and allocation profiles of the backfill and the catch-up
// (rssChild.profile). Run it with -benchtime 1x:
//
//	BENCH_SYNCHRONOUS_COMMIT=on go test -run '^$' -bench BenchmarkDeployment -benchtime 1x -timeout 60m ./cmd/pgkafka/
func BenchmarkDeployment(b *testing.B) {
	backfillRows := rssEnvRows(b, "BENCH_BACKFILL_ROWS", deployBackfillRows)
	rows := rssEnvRows(b, "BENCH_ROWS", deployRows)
	seconds := rssEnvRows(b, "BENCH_LATENCY_SECONDS", deployLatencySeconds)
	rates := deployRates(b)
	sc := orDefault(os.Getenv("BENCH_SYNCHRONOUS_COMMIT"), "on")
	ctx, cancel := context.WithTimeout(context.Background(), 4*deployPhaseTimeout)
	defer cancel()
	b.StopTimer()

	pg := pgtest.Start(b, pgtest.WithSetting("synchronous_commit", sc))
	db := pg.NewDatabase(b)
	stack := startBenchStack(b)
	cfg := benchConfig(b, db, stack.Brokers, stack.Registry, deployName, "public", "bench")
	rep := &deployReport{sc: sc, loadStart: loadAvg()}

	// (a) backfill.
	db.Exec(b, deployTable)
	conn := db.Conn(b)
	loadStart := time.Now()
	for first := 1; first <= backfillRows; first += deployLoadRows {
		deployExec(ctx, b, conn, deployInsert, first, min(first+deployLoadRows-1, backfillRows))
	}
	deployExec(ctx, b, conn, "VACUUM (ANALYZE) bench")
	var rowBytes float64
	if err := conn.QueryRow(ctx, "SELECT avg(pg_column_size(bench.*))::float8 FROM bench").Scan(&rowBytes); err != nil {
		b.Fatal(err)
	}
	b.Logf("server synchronous_commit = %s; %d rows of %.0f bytes on average inserted and vacuumed in %s",
		sc, backfillRows, rowBytes, time.Since(loadStart).Round(time.Millisecond))

	cons := newDeployConsumer(b, stack.Brokers, deployTopic)
	var slab recordSlab
	cpu := cpuProbe{stackPID: stack.pid, postmasterPID: deployPostmaster(ctx, b, conn)}
	cpu0 := cpu.read(0)
	b.StartTimer()
	child := startRSSChild(b, cfg)
	profiled := child.profile(b, "backfill")
	firstAt, last, err := cons.readUntil(backfillRows, deployPhaseTimeout, child, func(r *kgo.Record, _ time.Time) { slab.add(r) })
	b.StopTimer()
	profiled()
	if err != nil {
		b.Fatalf("backfill: %v", err)
	}
	rep.backfill, rep.backfillFirst = last.Sub(child.started), firstAt.Sub(child.started)
	rep.backfillCPU = cpu.read(child.cmd.Process.Pid).sub(cpu0)
	rep.backfillPeakMB = child.stop(b)
	if err := cons.noMore(time.Second); err != nil {
		b.Fatalf("backfill: %v", err)
	}
	cpu0 = cpu.read(0)
	rep.raw = deployRawProduce(ctx, b, stack.Brokers, slab.recs)
	rep.rawCPU = cpu.read(0).sub(cpu0)
	rep.rawRecords = len(slab.recs)
	rep.recordBytes = float64(slab.bytes) / float64(len(slab.recs))
	slab = recordSlab{} // for the collector

	// (b) streaming catch-up: both baselines' slots exist before the writes.
	deployExec(ctx, b, conn, fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", deployRecvSlot))
	deployExec(ctx, b, conn, fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", deployServerSlot))
	loadStart = time.Now()
	for first := backfillRows + 1; first <= backfillRows+rows; first += deployTxRows {
		deployExec(ctx, b, conn, deployInsert, first, min(first+deployTxRows-1, backfillRows+rows))
	}
	walEnd := deployLSN(ctx, b, conn)
	// WAL beyond walEnd, outside the publication, so that pg_recvlogical
	// sees a position past its --endpos even if walEnd is no record's end.
	deployExec(ctx, b, conn, "INSERT INTO bench_pad DEFAULT VALUES")
	deployExec(ctx, b, conn, "SELECT pg_switch_wal()")
	b.Logf("%d rows inserted in %d transactions in %s; WAL end %s", rows, (rows+deployTxRows-1)/deployTxRows,
		time.Since(loadStart).Round(time.Millisecond), walEnd)

	rep.recv, rep.recvCPU = deployRecvLogical(ctx, b, db, walEnd)
	start := time.Now()
	var messages int64
	if err := conn.QueryRow(ctx, fmt.Sprintf(
		"SELECT count(*) FROM pg_logical_slot_get_binary_changes('%s', NULL, NULL, 'proto_version', '1', 'publication_names', '%s')",
		deployServerSlot, deployPublication)).Scan(&messages); err != nil {
		b.Fatalf("decoding on the server: %v", err)
	}
	rep.server = time.Since(start)
	b.Logf("the server decoded %d pgoutput messages in %s", messages, rep.server.Round(time.Millisecond))

	cpu0 = cpu.read(0)
	b.StartTimer()
	child = startRSSChild(b, cfg)
	profiled = child.profile(b, "catchup")
	firstAt, last, err = cons.readUntil(backfillRows+rows, deployPhaseTimeout, child, nil)
	b.StopTimer()
	profiled()
	if err != nil {
		b.Fatalf("catch-up: %v", err)
	}
	rep.catchUp, rep.catchUpFirst = last.Sub(child.started), firstAt.Sub(child.started)
	rep.catchUpCPU = cpu.read(child.cmd.Process.Pid).sub(cpu0)
	rep.catchUpPeakMB = child.hwmMB()
	kafkaTx := child.scrape(b)[deployKafkaTx]
	rep.catchUpKafkaTx = int(kafkaTx)

	// (c) latency, into the same process.
	next := backfillRows + rows + 1
	for _, rate := range rates {
		lr := deployLatency(ctx, b, db, cons, child, next, rate*seconds, rate)
		n := child.scrape(b)[deployKafkaTx]
		lr.kafkaTx, kafkaTx = int(n-kafkaTx), n
		rep.latency = append(rep.latency, lr)
		next += rate * seconds
	}

	// (d) the second process's peak, then nothing more may come.
	rep.streamPeakMB = child.stop(b)
	if err := cons.noMore(time.Second); err != nil {
		b.Fatal(err)
	}
	rep.backfillRows, rep.rows, rep.rowBytes = backfillRows, rows, rowBytes
	rep.loadEnd = loadAvg()
	rep.print(b)
}

// benchStack is the benchstack child process's addresses.
type benchStack struct {
	Brokers  []string `json:"brokers"`
	Registry string   `json:"registry"`
	pid      int
}

// startBenchStack builds and starts cmd/pgkafka/internal/benchstack and
// returns its addresses. The process ends with the benchmark: its stdin
// is closed (and it is killed if it is still there 10 s later).
func startBenchStack(b *testing.B) *benchStack {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "benchstack")
	if out, err := exec.Command("go", "build", "-o", bin, "./internal/benchstack").CombinedOutput(); err != nil {
		b.Fatalf("building benchstack: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	line := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- l
		done <- cmd.Wait() // after the last read from stdout
	}()
	b.Cleanup(func() {
		_ = stdin.Close()
		select {
		case err := <-done:
			if err != nil {
				b.Errorf("benchstack: %v", err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			b.Error("benchstack still running 10s after its stdin closed: killed")
		}
	})
	var s benchStack
	select {
	case l := <-line:
		if err := json.Unmarshal([]byte(l), &s); err != nil || len(s.Brokers) == 0 || s.Registry == "" {
			b.Fatalf("benchstack printed %q: want its addresses in JSON (%v)", l, err)
		}
	case <-time.After(time.Minute):
		b.Fatal("benchstack printed no addresses within 1m")
	}
	s.pid = cmd.Process.Pid
	return &s
}

// deployRates is BENCH_LATENCY_RATES, or 1000 and 5000.
func deployRates(b *testing.B) []int {
	b.Helper()
	s := orDefault(os.Getenv("BENCH_LATENCY_RATES"), "1000,5000")
	var rates []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			b.Fatalf("BENCH_LATENCY_RATES=%q: want rates a second, comma-separated", s)
		}
		rates = append(rates, n)
	}
	return rates
}

// orDefault is s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func deployExec(ctx context.Context, b *testing.B, conn *pgx.Conn, sql string, args ...any) {
	b.Helper()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		b.Fatalf("%s: %v", strings.TrimSpace(sql), err)
	}
}

// deployPostmaster is the PID of the postmaster of conn's server (the
// parent of conn's backend).
func deployPostmaster(ctx context.Context, b *testing.B, conn *pgx.Conn) int {
	b.Helper()
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		b.Fatal(err)
	}
	f := procStat(backend)
	if len(f) < 2 {
		b.Fatalf("no /proc/%d/stat for the backend", backend)
	}
	pid, err := strconv.Atoi(f[1])
	if err != nil {
		b.Fatalf("/proc/%d/stat: ppid %q", backend, f[1])
	}
	return pid
}

// deployLSN is the server's WAL insert position.
func deployLSN(ctx context.Context, b *testing.B, conn *pgx.Conn) pglogrepl.LSN {
	b.Helper()
	var s string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		b.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		b.Fatal(err)
	}
	return lsn
}

// deployRecvLogical times pg_recvlogical reading deployRecvSlot to
// /dev/null up to endpos; cpu is its own (user and system).
func deployRecvLogical(ctx context.Context, b *testing.B, db *pgtest.DB, endpos pglogrepl.LSN) (took, cpu time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(ctx, deployPhaseTimeout)
	defer cancel()
	pg := db.Cluster()
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", pg.Host(), pg.Port(), pgtest.Superuser, db.Name)
	cmd := exec.CommandContext(ctx, filepath.Join(pg.BinDir(), "pg_recvlogical"), "-d", dsn,
		"--slot", deployRecvSlot, "--start", "--endpos", endpos.String(),
		"-o", "proto_version=1", "-o", "publication_names="+deployPublication,
		"-f", "/dev/null", "--no-loop")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pg.SuperuserPassword())
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took = time.Since(start)
	if err != nil {
		b.Fatalf("pg_recvlogical: %v\n%s", err, out)
	}
	return took, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// deployConsumer is a read_committed consumer of one topic, as a
// downstream service would run one (kgo's defaults otherwise), that counts
// the records it read and checks that no key comes twice (every record of
// the benchmark is a new row).
type deployConsumer struct {
	cl    *kgo.Client
	topic string
	read  int
	seen  []bool // by the id in the key
}

// newDeployConsumer starts a consumer of topic from its start; it is
// closed at the end of the benchmark.
func newDeployConsumer(b *testing.B, brokers []string, topic string) *deployConsumer {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// The topic is created by its producer: notice it soon.
		kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	return &deployConsumer{cl: cl, topic: topic}
}

// readUntil polls until the consumer has read total records in all,
// calling each (unless nil) with every record and the time its fetch
// returned, and returns the times the first and the last of them came. It
// fails when child (unless nil) exits, a key comes twice, or timeout
// passes.
func (c *deployConsumer) readUntil(total int, timeout time.Duration, child *rssChild, each func(*kgo.Record, time.Time)) (first, last time.Time, err error) {
	deadline := time.Now().Add(timeout)
	for c.read < total {
		if time.Now().After(deadline) {
			return first, last, fmt.Errorf("%s: %d of %d records read after %s", c.topic, c.read, total, timeout)
		}
		if child != nil {
			select {
			case err := <-child.done:
				child.done <- err
				return first, last, fmt.Errorf("pgkafka exited (%v) with %d of %d records read:\n%s", err, c.read, total, child.logs)
			default:
			}
		}
		pctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := c.cl.PollFetches(pctx)
		cancel()
		now := time.Now()
		var fetchErr error
		fs.EachError(func(topic string, p int32, err error) {
			if fetchErr == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) && !kerr.IsRetriable(err) {
				fetchErr = fmt.Errorf("fetching %s[%d]: %w", topic, p, err)
			}
		})
		if fetchErr != nil {
			return first, last, fetchErr
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			id, ok := deployKeyID(r.Key)
			if !ok || id < 0 {
				return first, last, fmt.Errorf("%s: a record at offset %d of partition %d has no bench key", c.topic, r.Offset, r.Partition)
			}
			if id >= int64(len(c.seen)) {
				c.seen = append(c.seen, make([]bool, int(id)-len(c.seen)+1+len(c.seen)/2)...)
			}
			if c.seen[id] {
				return first, last, fmt.Errorf("%s: the row of id %d came twice", c.topic, id)
			}
			c.seen[id] = true
			c.read++
			if first.IsZero() {
				first = now
			}
			last = now
			if each != nil {
				each(r, now)
			}
		}
	}
	return first, last, nil
}

// noMore fails if a record comes within wait.
func (c *deployConsumer) noMore(wait time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if n := c.cl.PollFetches(ctx).NumRecords(); n > 0 {
		return fmt.Errorf("%s: %d records more than the %d written", c.topic, n, c.read)
	}
	return nil
}

// deployKeyID decodes the id of a bench key: Confluent framing (a zero
// byte and a 4-byte schema id), then an Avro record of one long, a zigzag
// varint.
func deployKeyID(key []byte) (int64, bool) {
	if len(key) < 6 || key[0] != 0 {
		return 0, false
	}
	v, n := binenc.Varint(key[5:])
	return v, n > 0
}

// recordSlab keeps copies of records in few large allocations.
type recordSlab struct {
	buf   []byte
	recs  []slabRecord
	bytes int // keys and values
}

type slabRecord struct {
	key, value []byte
	partition  int32
}

func (s *recordSlab) add(r *kgo.Record) {
	s.recs = append(s.recs, slabRecord{key: s.clone(r.Key), value: s.clone(r.Value), partition: r.Partition})
	s.bytes += len(r.Key) + len(r.Value)
}

func (s *recordSlab) clone(p []byte) []byte {
	if p == nil {
		return nil
	}
	if cap(s.buf)-len(s.buf) < len(p) {
		s.buf = make([]byte, 0, max(4<<20, len(p)))
	}
	n := len(s.buf)
	s.buf = append(s.buf, p...)
	return s.buf[n:len(s.buf):len(s.buf)]
}

// deployRawProduce times a raw franz-go transactional producer writing
// recs, each to its partition, into deployRawTopic (created beforehand
// with as many partitions), in transactions of deployRawTxRecords, with
// pgkafka's producer settings (pipeline/kafka.go's producerOpts at the
// defaults), from its client's creation until a read_committed consumer
// has read the last record.
func deployRawProduce(ctx context.Context, b *testing.B, brokers []string, recs []slabRecord) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(ctx, deployPhaseTimeout)
	defer cancel()
	partitions := int32(1)
	for _, r := range recs {
		partitions = max(partitions, r.partition+1)
	}
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	_, err = kadm.NewClient(adm).CreateTopic(ctx, partitions, -1, nil, deployRawTopic)
	adm.Close()
	if err != nil {
		b.Fatalf("creating %s: %v", deployRawTopic, err)
	}
	cons := newDeployConsumer(b, brokers, deployRawTopic)
	type result struct {
		last time.Time
		err  error
	}
	read := make(chan result, 1)

	start := time.Now()
	go func() {
		_, last, err := cons.readUntil(len(recs), deployPhaseTimeout, nil, nil)
		read <- result{last, err}
	}()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.TransactionalID("deploy-raw"),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.DefaultProduceTopic(deployRawTopic))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	var produceErr atomic.Pointer[error]
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			produceErr.CompareAndSwap(nil, &err)
		}
	}
	for first := 0; first < len(recs); first += deployRawTxRecords {
		if err := cl.BeginTransaction(); err != nil {
			b.Fatal(err)
		}
		for _, r := range recs[first:min(first+deployRawTxRecords, len(recs))] {
			cl.Produce(ctx, &kgo.Record{Key: r.key, Value: r.value, Partition: r.partition}, promise)
		}
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		if p := produceErr.Load(); p != nil {
			b.Fatalf("raw producer: %v", *p)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			b.Fatalf("raw producer: committing: %v", err)
		}
	}
	res := <-read
	if res.err != nil {
		b.Fatalf("raw producer: %v", res.err)
	}
	return res.last.Sub(start)
}

// deployLatencyResult is one rate's latencies.
type deployLatencyResult struct {
	rate     int
	achieved float64
	rows     int
	p50, p99 time.Duration
	max      time.Duration
	kafkaTx  int // committed by pgkafka meanwhile
}

// deployLatency writes n single-row transactions from id first on, at rate
// a second over deployLatencyWriters connections, while cons reads their
// records; each row's latency runs from the return of its COMMIT to the
// return of the fetch that brought its record (see BenchmarkDeployment).
func deployLatency(ctx context.Context, b *testing.B, db *pgtest.DB, cons *deployConsumer, child *rssChild, first, n, rate int) deployLatencyResult {
	b.Helper()
	conns := make([]*pgx.Conn, deployLatencyWriters)
	for i := range conns {
		conns[i] = db.Conn(b)
	}
	committed := make([]atomic.Int64, n) // unix ns of each COMMIT's return
	received := make([]int64, n)         // unix ns of each record's fetch
	read := make(chan error, 1)
	total := cons.read + n
	go func() {
		_, _, err := cons.readUntil(total, 2*time.Minute+time.Duration(n/rate)*time.Second, child, func(r *kgo.Record, at time.Time) {
			if id, _ := deployKeyID(r.Key); id >= int64(first) && id < int64(first+n) {
				received[id-int64(first)] = at.UnixNano()
			}
		})
		read <- err
	}()

	var wg sync.WaitGroup
	errs := make(chan error, deployLatencyWriters)
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for w, conn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += deployLatencyWriters {
				// Row i is due at start + i/rate: the writers interleave.
				if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
					time.Sleep(d)
				}
				id := first + i
				if _, err := conn.Exec(ctx, deployInsert, id, id); err != nil {
					errs <- fmt.Errorf("inserting row %d: %w", id, err)
					return
				}
				committed[i].Store(time.Now().UnixNano())
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if err := <-read; err != nil {
		b.Fatalf("latency at %d/s: %v", rate, err)
	}
	lat := make([]time.Duration, n)
	for i := range lat {
		lat[i] = time.Duration(max(0, received[i]-committed[i].Load()))
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(n-1, int(p*float64(n)))] }
	return deployLatencyResult{rate: rate, achieved: float64(n) / took.Seconds(), rows: n,
		p50: pct(0.5), p99: pct(0.99), max: lat[n-1]}
}
