package pipeline_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
	"github.com/pgkafka/pgkafka/pipeline"
)

const (
	// benchDefaultRows is the number of rows streamed unless BENCH_ROWS says otherwise.
	benchDefaultRows = 200_000
	// benchTxRows is the number of rows of each inserting transaction.
	benchTxRows = 1000
	// benchRecvSlot is pg_recvlogical's slot; the pipeline has its own
	// (source.advanced.slotName, flow_slot by default).
	benchRecvSlot = "bench_recv"
	// benchPhaseTimeout bounds each timed phase.
	benchPhaseTimeout = 10 * time.Minute
	// benchBackfillDefaultRows is the number of rows backfilled unless
	// BENCH_BACKFILL_ROWS says otherwise.
	benchBackfillDefaultRows = 1_000_000
	// benchBackfillLoadRows is the number of rows of each inserting statement
	// before a backfill.
	benchBackfillLoadRows = 100_000
	// benchRawTxRecords is the number of records of each transaction of
	// the raw producer: the default source.advanced.backfill_chunk_size.
	benchRawTxRecords = 4096
)

// benchTable holds rows of about 200 bytes: 8 + 2×72 + 4 + 8 + ~8 bytes of
// data and the tuple header. autovacuum is off so that nothing but the
// inserts writes WAL meanwhile.
const benchTable = `
CREATE TABLE bench (
	id bigint PRIMARY KEY,
	a  text,
	b  text,
	c  int,
	d  timestamptz,
	e  numeric(12,2)
) WITH (autovacuum_enabled = false);
CREATE TABLE bench_pad (id bigserial PRIMARY KEY);`

// benchInsert inserts the rows $1..$2.
const benchInsert = `
INSERT INTO bench
SELECT g,
       md5(g::text) || md5((g + 1)::text) || left(md5((g + 2)::text), 8),
       md5((g + 3)::text) || md5((g + 4)::text) || left(md5((g + 5)::text), 8),
       (g % 100000)::int,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       ((g % 1000000) + 0.25)::numeric(12,2)
FROM generate_series($1::bigint, $2::bigint) AS g`

// BenchmarkStreaming measures DESIGN §9's streaming target: the rate at
// which the pipeline gets BENCH_ROWS inserted rows (transactions of 1000
// rows, already in the WAL) into Kafka as Avro, in transactions, against
// the rate at which pg_recvlogical reads the same WAL (pgoutput) to
// /dev/null, in the same run. Target: ratio >= 0.9.
//
// Run it with `make bench` (BENCH_ROWS=50000 make bench for a short run).
// ns/op and allocs/op cover the pipeline phase only; the peak RSS is the
// whole test process's, kfake's copy of every record included.
func BenchmarkStreaming(b *testing.B) {
	rows := benchRows(b)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	b.StopTimer()

	env := benchSetup(b)
	pg, db, log, cfg := env.pg, env.db, env.log, env.cfg
	// The rows are inserted before the capture starts: stream them, do
	// not backfill them.
	cfg.Source.Advanced.SkipBackfills = "public.bench"
	cfg.SetDefaults()

	// Both slots exist before the first insert, so both read every row.
	db.Exec(b, benchTable)
	if err := pgsrc.Setup(ctx, &cfg.Source, []pgsrc.TableRef{{Schema: "public", Name: "bench"}}, log); err != nil {
		b.Fatal(err)
	}
	db.Exec(b, fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", benchRecvSlot))

	load := benchLoadRows(ctx, b, db, rows)
	b.Logf("%d rows in %d transactions, %.0f bytes a row on average, inserted in %s; last commit after %s, WAL end %s",
		rows, (rows+benchTxRows-1)/benchTxRows, load.rowBytes, load.took.Round(time.Millisecond), load.beforeLastCommit, load.walEnd)

	// (a) pg_recvlogical reads the same WAL to /dev/null.
	recvTook, recvCPU := benchRecvLogical(ctx, b, pg, db, cfg.Source.Advanced.PublicationName, load.walEnd)

	// (b) the pipeline, into kfake with the registry, until Kafka holds
	// the last transaction.
	r, err := pipeline.NewRunner(cfg, log)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(float64(rows) * load.rowBytes))
	b.ReportAllocs()
	runCtx, runCancel := context.WithCancel(ctx)
	defer runCancel()
	done := make(chan error, 1)
	b.ResetTimer()
	b.StartTimer()
	start := time.Now()
	go func() { done <- r.Run(runCtx) }()
	if err := benchWaitCommitted(ctx, r, done, load.beforeLastCommit); err != nil {
		b.Fatal(err)
	}
	pipeTook := time.Since(start)
	b.StopTimer()
	r.Stop()
	select {
	case err := <-done:
		if err != nil {
			b.Fatalf("pipeline Run after Stop: %v", err)
		}
	case <-time.After(time.Minute):
		runCancel()
		b.Fatalf("pipeline Run did not return within 1m of Stop (last error: %v)", <-done)
	}

	if n := benchCountRecords(ctx, b, cfg.Kafka.Brokers, cfg.TopicFor(pgsrc.TableRef{Schema: "public", Name: "bench"}), rows); n != rows {
		b.Fatalf("Kafka holds %d committed records, want %d", n, rows)
	}

	pipeRate := float64(rows) / pipeTook.Seconds()
	recvRate := float64(rows) / recvTook.Seconds()
	ratio := pipeRate / recvRate
	b.ReportMetric(pipeRate, "pgkafka-rows/s")
	b.ReportMetric(recvRate, "recvlogical-rows/s")
	b.ReportMetric(ratio, "ratio")
	rss := benchPeakRSSMB()
	if rss > 0 {
		b.ReportMetric(rss, "peak-RSS-MB")
	}
	fmt.Printf("streaming: %d rows  pgkafka %.0f rows/s  pg_recvlogical %.0f rows/s  ratio %.2f\n",
		rows, pipeRate, recvRate, ratio)
	fmt.Printf("streaming: pgkafka %s, pg_recvlogical %s (its own CPU %s), %.0f bytes a row, peak RSS of the test process %.0f MB (kfake's records included)\n",
		pipeTook.Round(time.Millisecond), recvTook.Round(time.Millisecond), recvCPU.Round(time.Millisecond), load.rowBytes, rss)
}

// BenchmarkBackfill measures a backfill (DESIGN §3) of BENCH_BACKFILL_ROWS
// rows of the streaming benchmark's shape, in the same run as two
// baselines:
//
//   - pgkafka: from Run until Backfilled, in chunks of the default
//     source.advanced.backfill_chunk_size, into kfake as Avro;
//   - COPY (SELECT * FROM bench) TO STDOUT of the same table to io.Discard;
//   - a raw franz-go transactional producer (lz4, like pgkafka's default)
//     of as many records, of the average key and value sizes pgkafka
//     wrote, into a fresh topic of the same kfake, in transactions of
//     benchRawTxRecords.
//
// Run it with `make bench` (BENCH_BACKFILL_ROWS=100000 make bench for a
// short run). ns/op and allocs/op cover the pgkafka phase only; the peak
// RSS is the test process's from the start of this benchmark, kfake's
// copy of every record included.
func BenchmarkBackfill(b *testing.B) {
	rows := benchEnvRows(b, "BENCH_BACKFILL_ROWS", benchBackfillDefaultRows)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	b.StopTimer()
	benchResetPeakRSS()

	env := benchSetup(b)
	db, log, cfg := env.db, env.log, env.cfg
	cfg.SetDefaults()
	topic := cfg.TopicFor(pgsrc.TableRef{Schema: "public", Name: "bench"})

	// The rows are there before the capture starts: they are backfilled.
	// VACUUM sets their hint bits and the visibility map, so that neither
	// reader pays for that, and ANALYZE gives the planner the table's size.
	db.Exec(b, benchTable)
	loadStart := time.Now()
	for first := 1; first <= rows; first += benchBackfillLoadRows {
		db.Exec(b, benchInsert, first, min(first+benchBackfillLoadRows-1, rows))
	}
	db.Exec(b, "VACUUM (ANALYZE) bench")
	var rowBytes float64
	if err := db.Conn(b).QueryRow(ctx, "SELECT avg(pg_column_size(bench.*))::float8 FROM bench").Scan(&rowBytes); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d rows, %.0f bytes a row on average, inserted and vacuumed in %s",
		rows, rowBytes, time.Since(loadStart).Round(time.Millisecond))

	// (a) pgkafka, until every row is backfilled.
	r, err := pipeline.NewRunner(cfg, log)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(float64(rows) * rowBytes))
	b.ReportAllocs()
	runCtx, runCancel := context.WithCancel(ctx)
	defer runCancel()
	done := make(chan error, 1)
	b.ResetTimer()
	b.StartTimer()
	start := time.Now()
	go func() { done <- r.Run(runCtx) }()
	select {
	case <-r.Backfilled():
	case err := <-done:
		b.Fatalf("pipeline ended before the backfill finished: %v", err)
	case <-time.After(benchPhaseTimeout):
		b.Fatalf("backfill of %d rows not finished within %s", rows, benchPhaseTimeout)
	}
	pipeTook := time.Since(start)
	b.StopTimer()
	r.Stop()
	select {
	case err := <-done:
		if err != nil {
			b.Fatalf("pipeline Run after Stop: %v", err)
		}
	case <-time.After(time.Minute):
		runCancel()
		b.Fatalf("pipeline Run did not return within 1m of Stop (last error: %v)", <-done)
	}
	written := benchReadTopic(ctx, b, cfg.Kafka.Brokers, topic, rows)
	if written.records != rows {
		b.Fatalf("Kafka holds %d committed records in %s, want %d", written.records, topic, rows)
	}
	keySize := max(1, int(math.Round(float64(written.keyBytes)/float64(rows))))
	valueSize := max(1, int(math.Round(float64(written.valueBytes)/float64(rows))))

	// (b) COPY of the same table.
	copyTook := benchCopyOut(ctx, b, db, rows)

	// (c) the raw producer, of values cut from pgkafka's (so that they
	// compress alike) to the average size.
	rawTook := benchRawProduce(ctx, b, cfg, written.samples, keySize, valueSize, rows)

	pipeRate := float64(rows) / pipeTook.Seconds()
	copyRate := float64(rows) / copyTook.Seconds()
	rawRate := float64(rows) / rawTook.Seconds()
	ratio := pipeRate / rawRate
	b.ReportMetric(pipeRate, "pgkafka-rows/s")
	b.ReportMetric(copyRate, "copy-rows/s")
	b.ReportMetric(rawRate, "raw-producer-rows/s")
	b.ReportMetric(ratio, "pgkafka/raw")
	rss := benchPeakRSSMB()
	if rss > 0 {
		b.ReportMetric(rss, "peak-RSS-MB")
	}
	fmt.Printf("backfill: %d rows  pgkafka %.0f rows/s  COPY %.0f rows/s  raw producer %.0f rows/s  pgkafka/raw %.2f\n",
		rows, pipeRate, copyRate, rawRate, ratio)
	fmt.Printf("backfill: pgkafka %s (chunks of %d), COPY %s, raw producer %s; %.0f bytes a row, records of a %d-byte key and a %d-byte value on average; peak RSS of the test process %.0f MB (kfake's records included)\n",
		pipeTook.Round(time.Millisecond), cfg.Source.Advanced.BackfillChunkSize, copyTook.Round(time.Millisecond),
		rawTook.Round(time.Millisecond), rowBytes, keySize, valueSize, rss)
}

// benchCopyOut times COPY (SELECT * FROM bench) TO STDOUT into io.Discard.
func benchCopyOut(ctx context.Context, b *testing.B, db *pgtest.DB, rows int) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(ctx, benchPhaseTimeout)
	defer cancel()
	conn := db.Conn(b)
	start := time.Now()
	tag, err := conn.PgConn().CopyTo(ctx, io.Discard, "COPY (SELECT * FROM bench) TO STDOUT")
	took := time.Since(start)
	if err != nil {
		b.Fatalf("COPY: %v", err)
	}
	if n := tag.RowsAffected(); n != int64(rows) {
		b.Fatalf("COPY copied %d rows, want %d", n, rows)
	}
	return took
}

// benchRawProduce times a transactional franz-go producer writing rows
// records into a new topic with as many partitions as pgkafka's, in
// transactions of benchRawTxRecords: keys of keySize bytes (the record's
// number, big endian), values of valueSize bytes taken in turn from
// samples. It checks the topic afterwards.
func benchRawProduce(ctx context.Context, b *testing.B, cfg pipeline.Config, samples [][]byte, keySize, valueSize, rows int) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(ctx, benchPhaseTimeout)
	defer cancel()
	const topic = "bench-raw"
	if len(samples) == 0 {
		b.Fatal("no sample values")
	}
	values := make([][]byte, len(samples))
	for i, s := range samples {
		// s cut, or repeated, to valueSize bytes.
		values[i] = bytes.Repeat(s, valueSize/len(s)+1)[:valueSize]
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka.Brokers...),
		kgo.TransactionalID("bench-raw"),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.DefaultProduceTopic(topic))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, cfg.Kafka.Topics.Partitions, -1, nil, topic); err != nil {
		b.Fatalf("creating %s: %v", topic, err)
	}
	if _, _, err := cl.ProducerID(ctx); err != nil {
		b.Fatalf("initializing the raw producer: %v", err)
	}

	var produceErr atomic.Pointer[error]
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			produceErr.CompareAndSwap(nil, &err)
		}
	}
	// One slab of keys for every transaction: after Flush, the client
	// has no record of the last one left.
	keys := make([]byte, keySize*benchRawTxRecords)
	var key [8]byte
	start := time.Now()
	for first := 0; first < rows; first += benchRawTxRecords {
		if err := cl.BeginTransaction(); err != nil {
			b.Fatal(err)
		}
		for i := first; i < min(first+benchRawTxRecords, rows); i++ {
			binary.BigEndian.PutUint64(key[:], uint64(i))
			k := keys[(i-first)*keySize : (i-first+1)*keySize]
			copy(k[max(0, keySize-8):], key[max(0, 8-keySize):])
			cl.Produce(ctx, &kgo.Record{Key: k, Value: values[i%len(values)]}, promise)
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
	took := time.Since(start)
	if n := benchCountRecords(ctx, b, cfg.Kafka.Brokers, topic, rows); n != rows {
		b.Fatalf("%s holds %d committed records, want %d", topic, n, rows)
	}
	return took
}

// benchEnv is a benchmark's PostgreSQL cluster and database, kfake cluster,
// srfake registry and a pipeline configuration binding public.bench,
// defaults not yet set. Everything is closed when the benchmark ends.
type benchEnv struct {
	pg     *pgtest.Cluster
	db     *pgtest.DB
	log    *slog.Logger
	broker *kfake.Cluster
	cfg    pipeline.Config
}

// benchSetup starts a benchEnv. BENCH_SYNCHRONOUS_COMMIT sets the
// server's synchronous_commit (on by default); `make bench` runs with on,
// then off.
func benchSetup(b *testing.B) *benchEnv {
	b.Helper()
	var opts []pgtest.Option
	if v := os.Getenv("BENCH_SYNCHRONOUS_COMMIT"); v != "" {
		opts = append(opts, pgtest.WithSetting("synchronous_commit", v))
		b.Logf("server synchronous_commit = %s", v)
	}
	pg, err := pgtest.New(opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := pg.Close(); err != nil {
			b.Error(err)
		}
	})
	db := pg.NewDatabase(b)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	broker, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(broker.Close)
	registry := srfake.New()
	b.Cleanup(registry.Close)

	cfg := pipeline.Config{
		Name:   "bench",
		Source: db.SourceConfig(pgtest.Superuser, pg.SuperuserPassword()),
		Bindings: []pipeline.Binding{
			{Resource: pipeline.Resource{Namespace: "public", Stream: "bench"}},
		},
	}
	cfg.Kafka.Brokers = broker.ListenAddrs()
	cfg.SchemaRegistry.URL = registry.URL()
	return &benchEnv{pg: pg, db: db, log: log, broker: broker, cfg: cfg}
}

// benchRows is BENCH_ROWS, or benchDefaultRows.
func benchRows(b *testing.B) int { return benchEnvRows(b, "BENCH_ROWS", benchDefaultRows) }

// benchEnvRows is the number of rows in the environment variable name, or
// def when it is empty.
func benchEnvRows(b *testing.B, name string, def int) int {
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

// benchLoad describes the inserted rows.
type benchLoad struct {
	// beforeLastCommit is a WAL position inside the last transaction,
	// before its commit record: the pipeline holds every row once its
	// committed LSN (a commit's end) passes it.
	beforeLastCommit pglogrepl.LSN
	// walEnd is the WAL insert position after the last commit, with more
	// WAL (an unpublished insert) behind it so that a reader reaches it.
	walEnd   pglogrepl.LSN
	rowBytes float64 // average pg_column_size of a row
	took     time.Duration
}

// benchLoadRows inserts rows into bench in transactions of benchTxRows.
func benchLoadRows(ctx context.Context, b *testing.B, db *pgtest.DB, rows int) benchLoad {
	b.Helper()
	src := db.SourceConfig(pgtest.Superuser, db.Cluster().SuperuserPassword())
	conn, err := pgsrc.Connect(ctx, &src)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := conn.Close(context.WithoutCancel(ctx)); err != nil {
			b.Error(err)
		}
	}()
	var load benchLoad
	start := time.Now()
	for first := 1; first <= rows; first += benchTxRows {
		last := min(first+benchTxRows-1, rows)
		if last < rows {
			if _, err := conn.Exec(ctx, benchInsert, first, last); err != nil {
				b.Fatalf("inserting rows %d..%d: %v", first, last, err)
			}
			continue
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tx.Exec(ctx, benchInsert, first, last); err != nil {
			b.Fatalf("inserting rows %d..%d: %v", first, last, err)
		}
		var lsn string
		if err := tx.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
			b.Fatal(err)
		}
		if load.beforeLastCommit, err = pglogrepl.ParseLSN(lsn); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	load.took = time.Since(start)
	var lsn string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		b.Fatal(err)
	}
	if load.walEnd, err = pglogrepl.ParseLSN(lsn); err != nil {
		b.Fatal(err)
	}
	// WAL beyond walEnd, outside the publication, so that pg_recvlogical
	// sees a position past its --endpos even if walEnd is no record's end.
	if _, err := conn.Exec(ctx, "INSERT INTO bench_pad DEFAULT VALUES; SELECT pg_switch_wal()"); err != nil {
		b.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT avg(pg_column_size(bench.*))::float8 FROM bench").Scan(&load.rowBytes); err != nil {
		b.Fatal(err)
	}
	return load
}

// benchRecvLogical times pg_recvlogical reading the benchRecvSlot slot to
// /dev/null up to endpos; cpu is the CPU time of the pg_recvlogical
// process itself (user and system), which tells whether the client rather
// than the WAL sender sets its pace.
func benchRecvLogical(ctx context.Context, b *testing.B, pg *pgtest.Cluster, db *pgtest.DB, publication string, endpos pglogrepl.LSN) (took, cpu time.Duration) {
	b.Helper()
	return benchRecvLogicalSlot(ctx, b, pg, db, benchRecvSlot, publication, endpos)
}

// benchRecvLogicalSlot is benchRecvLogical on slot, with more pgoutput
// options (name=value).
func benchRecvLogicalSlot(ctx context.Context, b *testing.B, pg *pgtest.Cluster, db *pgtest.DB, slot, publication string, endpos pglogrepl.LSN, options ...string) (took, cpu time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(ctx, benchPhaseTimeout)
	defer cancel()
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", pg.Host(), pg.Port(), pgtest.Superuser, db.Name)
	args := []string{"-d", dsn, "--slot", slot, "--start", "--endpos", endpos.String(),
		"-o", "proto_version=1", "-o", "publication_names=" + publication,
		"-f", "/dev/null", "--no-loop"}
	for _, o := range options {
		args = append(args, "-o", o)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(pg.BinDir(), "pg_recvlogical"), args...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pg.SuperuserPassword())
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	err := cmd.Run()
	took = time.Since(start)
	if err != nil {
		b.Fatalf("pg_recvlogical: %v\n%s", err, out.Bytes())
	}
	return took, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// benchWaitCommitted polls the runner every 10 ms until its committed LSN
// passes lsn, the runner fails or ctx ends.
func benchWaitCommitted(ctx context.Context, r *pipeline.Runner, done chan error, lsn pglogrepl.LSN) error {
	ctx, cancel := context.WithTimeout(ctx, benchPhaseTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for r.CommittedLSN() <= lsn {
		select {
		case err := <-done:
			done <- err // for the caller
			return fmt.Errorf("pipeline ended before committing LSN %s (committed %s): %v", lsn, r.CommittedLSN(), err)
		case <-ctx.Done():
			return fmt.Errorf("pipeline committed %s, not past %s: %w", r.CommittedLSN(), lsn, context.Cause(ctx))
		case <-tick.C:
		}
	}
	return nil
}

// benchPeakRSSMB is the process's peak resident set (VmHWM) in MB, or 0 when
// unknown.
func benchPeakRSSMB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return 0
			}
			return kb / 1024
		}
	}
	return 0
}

// benchResetPeakRSS resets the process's peak resident set (Linux 4.0+), so
// that a benchmark's peak is its own, not an earlier one's.
func benchResetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// benchCountRecords reads topic as a read_committed consumer until it has read
// want records, or it reads nothing more for a few seconds; it returns
// the count.
func benchCountRecords(ctx context.Context, b *testing.B, brokers []string, topic string, want int) int {
	b.Helper()
	return benchReadTopic(ctx, b, brokers, topic, want).records
}

// benchTopic sums up the committed records of a topic.
type benchTopic struct {
	records, keyBytes, valueBytes int
	// samples are copies of the first values, up to benchRawTxRecords.
	samples [][]byte
}

// benchReadTopic is benchCountRecords with the records' sizes and the
// first values.
func benchReadTopic(ctx context.Context, b *testing.B, brokers []string, topic string, want int) benchTopic {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	var t benchTopic
	for t.records < want {
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
		fs.EachRecord(func(r *kgo.Record) {
			t.records++
			t.keyBytes += len(r.Key)
			t.valueBytes += len(r.Value)
			if len(t.samples) < benchRawTxRecords && len(r.Value) > 0 {
				t.samples = append(t.samples, bytes.Clone(r.Value))
			}
		})
	}
	return t
}
