package pipeline_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pipeline"
)

// benchBackfilled loads the benchmark table with rows rows and backfills
// it with a capture that runs until stop.
func benchBackfilled(ctx context.Context, b *testing.B, rows int) (pipeline.Config, *slog.Logger, func()) {
	b.Helper()
	env := benchSetup(b)
	db, log, cfg := env.db, env.log, env.cfg
	cfg.SetDefaults()
	db.Exec(b, benchTable)
	for first := 1; first <= rows; first += benchBackfillLoadRows {
		db.Exec(b, benchInsert, first, min(first+benchBackfillLoadRows-1, rows))
	}
	db.Exec(b, "VACUUM (ANALYZE) bench")
	r, err := pipeline.NewRunner(cfg, log)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-r.Backfilled():
	case err := <-done:
		b.Fatalf("pipeline ended before the backfill finished: %v", err)
	case <-time.After(benchPhaseTimeout):
		b.Fatalf("backfill of %d rows not finished within %s", rows, benchPhaseTimeout)
	}
	return cfg, log, func() {
		r.Stop()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify backfills a table of BENCH_VERIFY_ROWS rows (1M by
// default), stops the capture, and times pgkafka verify of it: the topic
// folded into its compacted state, the table read in key order and each
// row hashed and looked up. The figure is in README, "Verify".
func BenchmarkVerify(b *testing.B) {
	rows := benchEnvRows(b, "BENCH_VERIFY_ROWS", benchBackfillDefaultRows)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	b.StopTimer()
	cfg, log, stop := benchBackfilled(ctx, b, rows)
	stop()
	b.ResetTimer()
	for range b.N {
		b.StartTimer()
		start := time.Now()
		reps, err := pipeline.Verify(ctx, cfg, pipeline.VerifyOptions{Tables: []string{"public.bench"}}, log)
		took := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if rep := reps[0]; !rep.Equal() || rep.Rows != int64(rows) || rep.TopicKeys != int64(rows) {
			b.Fatalf("verify of a clean table: %+v", rep)
		}
		b.ReportMetric(float64(rows)/took.Seconds(), "rows/s")
		b.Logf("verify of %d rows: %s (%.0f rows/s)", rows, took.Round(time.Millisecond), float64(rows)/took.Seconds())
	}
}

// benchRepairKeys is how many keys BenchmarkRepair removes from the topic.
const benchRepairKeys = 1000

// BenchmarkRepair backfills a table of BENCH_VERIFY_ROWS rows (1M by
// default) and keeps the capture running; then removes 1000 of its keys
// from the topic (tombstones written outside pgkafka) and times pgkafka
// verify --repair: verify, the capture's filtered backfill of those keys,
// verify of the table again. The figure is in README, "Repair".
func BenchmarkRepair(b *testing.B) {
	rows := benchEnvRows(b, "BENCH_VERIFY_ROWS", benchBackfillDefaultRows)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	b.StopTimer()
	cfg, log, stop := benchBackfilled(ctx, b, rows)
	defer stop()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka.Brokers...), kgo.ConsumeTopics(cfg.TopicFor(pgsrc.TableRef{Schema: "public", Name: "bench"})),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	b.ResetTimer()
	for range b.N {
		var tombstones []*kgo.Record
		seen := map[string]bool{}
		for len(tombstones) < benchRepairKeys {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				b.Fatal(err)
			}
			for it := fs.RecordIter(); !it.Done() && len(tombstones) < benchRepairKeys; {
				rec := it.Next()
				if rec.Value != nil && !seen[string(rec.Key)] {
					seen[string(rec.Key)] = true
					tombstones = append(tombstones, &kgo.Record{Topic: rec.Topic, Partition: rec.Partition, Key: rec.Key})
				}
			}
		}
		if err := cl.ProduceSync(ctx, tombstones...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		rep, err := pipeline.Repair(ctx, cfg, pipeline.RepairOptions{VerifyOptions: pipeline.VerifyOptions{Tables: []string{"public.bench"}}}, log)
		took := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if len(rep.Before) != 1 || rep.Before[0].NMissing != benchRepairKeys {
			b.Fatalf("before the repair: %+v", rep.Before)
		}
		if len(rep.Requests) != 1 || !rep.Requests[0].Done || len(rep.After) != 1 || !rep.After[0].Equal() {
			b.Fatalf("repair: %+v, after: %+v, notes %v", rep.Requests, rep.After, rep.Notes)
		}
		b.ReportMetric(took.Seconds(), "s")
		b.Logf("repair of %d keys in a table of %d rows: %s (the capture's part: %s)", benchRepairKeys, rows, took.Round(time.Millisecond), rep.Requests[0].Took.Round(time.Millisecond))
	}
}
