package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
	"github.com/pgkafka/pgkafka/pipeline"
)

// benchRecvBinarySlot is pg_recvlogical's slot for binary pgoutput.
const benchRecvBinarySlot = "bench_recv_bin"

// BenchmarkStreamingBinary compares text and binary pgoutput
// (source.advanced.pgoutputBinary) on the same BENCH_ROWS rows of
// BenchmarkStreaming's table, in one run: pg_recvlogical to /dev/null in
// text and in binary mode, then the pipeline into Kafka in text and in
// binary mode, each phase from its own slot over the same WAL.
//
//	BENCH_ROWS=200000 go test -run '^$' -bench BenchmarkStreamingBinary -benchtime 1x ./pipeline/
func BenchmarkStreamingBinary(b *testing.B) {
	rows := benchRows(b)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	b.StopTimer()

	env := benchSetup(b)
	pg, db, log := env.pg, env.db, env.log
	textCfg, binCfg := env.cfg, env.cfg
	textCfg.Source.Advanced.PgoutputBinary = "off"
	binCfg.Source.Advanced.PgoutputBinary = "on"
	binCfg.Name, binCfg.Source.Advanced.SlotName = "bench_bin", "flow_slot_bin"
	for _, cfg := range []*pipeline.Config{&textCfg, &binCfg} {
		cfg.Source.Advanced.SkipBackfills = "public.bench"
		cfg.SetDefaults()
	}
	db.Exec(b, benchTable)
	for _, cfg := range []*pipeline.Config{&textCfg, &binCfg} {
		if err := pgsrc.Setup(ctx, &cfg.Source, []pgsrc.TableRef{{Schema: "public", Name: "bench"}}, log); err != nil {
			b.Fatal(err)
		}
	}
	for _, slot := range []string{benchRecvSlot, benchRecvBinarySlot} {
		db.Exec(b, fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", slot))
	}
	load := benchLoadRows(ctx, b, db, rows)
	pub := textCfg.Source.Advanced.PublicationName
	// The WAL sender's CPU time tells the modes apart better than wall
	// time on a shared machine.
	sample := func(slot string, phase func()) time.Duration {
		w := watchWALSender(ctx, b, db, slot)
		phase()
		return w.stop()
	}
	var recvText, recvBin, pipeText, pipeBin time.Duration
	recvTextCPU := sample(benchRecvSlot, func() { recvText, _ = benchRecvLogicalSlot(ctx, b, pg, db, benchRecvSlot, pub, load.walEnd) })
	recvBinCPU := sample(benchRecvBinarySlot, func() {
		recvBin, _ = benchRecvLogicalSlot(ctx, b, pg, db, benchRecvBinarySlot, pub, load.walEnd, "binary=true")
	})

	b.ResetTimer()
	pipeTextCPU := sample(textCfg.Source.Advanced.SlotName, func() { pipeText = benchPipelinePhase(ctx, b, textCfg, log, load, rows) })
	pipeBinCPU := sample(binCfg.Source.Advanced.SlotName, func() { pipeBin = benchPipelinePhase(ctx, b, binCfg, log, load, rows) })

	rate := func(d time.Duration) float64 { return float64(rows) / d.Seconds() }
	b.ReportMetric(rate(pipeText), "pgkafka-text-rows/s")
	b.ReportMetric(rate(pipeBin), "pgkafka-binary-rows/s")
	b.ReportMetric(rate(recvText), "recvlogical-text-rows/s")
	b.ReportMetric(rate(recvBin), "recvlogical-binary-rows/s")
	fmt.Printf("streaming text vs binary: %d rows  pgkafka text %.0f rows/s, binary %.0f rows/s (%.2fx)  pg_recvlogical text %.0f rows/s, binary %.0f rows/s (%.2fx)\n",
		rows, rate(pipeText), rate(pipeBin), pipeText.Seconds()/pipeBin.Seconds(),
		rate(recvText), rate(recvBin), recvText.Seconds()/recvBin.Seconds())
	fmt.Printf("streaming text vs binary: WAL sender CPU  under pgkafka text %s, binary %s  under pg_recvlogical text %s, binary %s\n",
		pipeTextCPU, pipeBinCPU, recvTextCPU, recvBinCPU)
}

// walSenderWatch samples the CPU time of the WAL sender of a slot.
type walSenderWatch struct {
	done chan struct{}
	cpu  chan time.Duration
}

// watchWALSender samples, every 10 ms until stop, the CPU time (user and
// system, from /proc) of the process that holds slot; stop returns the
// last sample. Zero when /proc cannot be read.
func watchWALSender(ctx context.Context, b *testing.B, db *pgtest.DB, slot string) *walSenderWatch {
	b.Helper()
	conn := db.Conn(b)
	w := &walSenderWatch{done: make(chan struct{}), cpu: make(chan time.Duration, 1)}
	go func() {
		var last time.Duration
		defer func() { w.cpu <- last }()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			var pid *int32
			if err := conn.QueryRow(ctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&pid); err == nil && pid != nil {
				if cpu, ok := procCPU(int(*pid)); ok {
					last = cpu
				}
			}
			select {
			case <-w.done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *walSenderWatch) stop() time.Duration {
	close(w.done)
	return <-w.cpu
}

// procCPU is a process's user and system CPU time from /proc/<pid>/stat
// (in clock ticks of 10 ms, Linux's USER_HZ).
func procCPU(pid int) (time.Duration, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// Fields after the command name, which is in parentheses.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, true
}

// benchPipelinePhase runs a pipeline of cfg until Kafka holds the rows of
// load, checks the topic, and returns how long it took.
func benchPipelinePhase(ctx context.Context, b *testing.B, cfg pipeline.Config, log *slog.Logger, load benchLoad, rows int) time.Duration {
	b.Helper()
	r, err := pipeline.NewRunner(cfg, log)
	if err != nil {
		b.Fatal(err)
	}
	runCtx, runCancel := context.WithCancel(ctx)
	defer runCancel()
	done := make(chan error, 1)
	b.StartTimer()
	start := time.Now()
	go func() { done <- r.Run(runCtx) }()
	if err := benchWaitCommitted(ctx, r, done, load.beforeLastCommit); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
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
	return took
}
