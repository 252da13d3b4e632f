package pipeline_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
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

	pg, err := pgtest.New()
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
	defer broker.Close()
	registry := srfake.New()
	defer registry.Close()

	cfg := pipeline.Config{
		Name:   "bench",
		Source: db.SourceConfig(pgtest.Superuser, pg.SuperuserPassword()),
		Bindings: []pipeline.Binding{
			{Resource: pipeline.Resource{Namespace: "public", Stream: "bench"}},
		},
	}
	// The rows are inserted before the capture starts: stream them, do
	// not backfill them.
	cfg.Source.Advanced.SkipBackfills = "public.bench"
	cfg.Kafka.Brokers = broker.ListenAddrs()
	cfg.SchemaRegistry.URL = registry.URL()
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

// benchRows is BENCH_ROWS, or benchDefaultRows.
func benchRows(b *testing.B) int {
	s := os.Getenv("BENCH_ROWS")
	if s == "" {
		return benchDefaultRows
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("BENCH_ROWS=%q: want a positive number of rows", s)
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
	ctx, cancel := context.WithTimeout(ctx, benchPhaseTimeout)
	defer cancel()
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", pg.Host(), pg.Port(), pgtest.Superuser, db.Name)
	cmd := exec.CommandContext(ctx, filepath.Join(pg.BinDir(), "pg_recvlogical"),
		"-d", dsn, "--slot", benchRecvSlot, "--start", "--endpos", endpos.String(),
		"-o", "proto_version=1", "-o", "publication_names="+publication,
		"-f", "/dev/null", "--no-loop")
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

// benchCountRecords reads topic as a read_committed consumer until it has read
// want records, or it reads nothing more for a few seconds; it returns
// the count.
func benchCountRecords(ctx context.Context, b *testing.B, brokers []string, topic string, want int) int {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
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
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				b.Fatalf("reading %s[%d]: %v", t, p, err)
			}
		})
		n += fs.NumRecords()
	}
	return n
}
