package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/pipeline"
)

// BenchmarkVerify backfills a table of BENCH_VERIFY_ROWS rows (1M by
// default), stops the capture, and times pgkafka verify of it: the topic
// folded into its compacted state, the table read in key order and each
// row hashed and looked up. The figure is in README, "Verify".
func BenchmarkVerify(b *testing.B) {
	rows := benchEnvRows(b, "BENCH_VERIFY_ROWS", benchBackfillDefaultRows)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	b.StopTimer()
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
	r.Stop()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
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
