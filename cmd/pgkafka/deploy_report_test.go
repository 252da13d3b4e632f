package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuProbe reads the CPU time (user and system) of the benchmark's
// processes, from /proc.
type cpuProbe struct{ stackPID, postmasterPID int }

// deployCPUTimes is CPU time of pgkafka, of PostgreSQL (the postmaster and
// its children, ended ones included), of the benchstack process (broker and
// registry) and of this process (the consumers and the raw producer).
type deployCPUTimes struct{ pgkafka, pg, stack, bench time.Duration }

// read reads the CPU times, pgkafka's too when pgkafkaPID is not 0.
func (p cpuProbe) read(pgkafkaPID int) deployCPUTimes {
	var t deployCPUTimes
	if pgkafkaPID != 0 {
		t.pgkafka = procCPU(procStat(pgkafkaPID), false)
	}
	t.stack = procCPU(procStat(p.stackPID), false)
	t.pg = procCPU(procStat(p.postmasterPID), true)
	if dirs, err := os.ReadDir("/proc"); err == nil {
		for _, d := range dirs {
			pid, err := strconv.Atoi(d.Name())
			if err != nil {
				continue
			}
			if f := procStat(pid); len(f) > 1 && f[1] == strconv.Itoa(p.postmasterPID) {
				t.pg += procCPU(f, false)
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		t.bench = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return t
}

func (t deployCPUTimes) sub(u deployCPUTimes) deployCPUTimes {
	return deployCPUTimes{pgkafka: t.pgkafka - u.pgkafka, pg: t.pg - u.pg, stack: t.stack - u.stack, bench: t.bench - u.bench}
}

func (t deployCPUTimes) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
	s := fmt.Sprintf("PostgreSQL %s, broker+registry %s, bench process %s", r(t.pg), r(t.stack), r(t.bench))
	if t.pgkafka > 0 {
		s = fmt.Sprintf("pgkafka %s, ", r(t.pgkafka)) + s
	}
	return s
}

// procStat is /proc/PID/stat's fields from the third (state) on, or nil.
func procStat(pid int) []string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(raw)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}

// procCPU is the user and system CPU time in procStat's fields (clock
// ticks of 10 ms), with that of the ended children it waited for when
// children is set; 0 without them.
func procCPU(f []string, children bool) time.Duration {
	if len(f) < 15 {
		return 0
	}
	fields := f[11:13] // utime, stime
	if children {
		fields = f[11:15] // and cutime, cstime
	}
	var ticks int64
	for _, v := range fields {
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// deployReport is BenchmarkDeployment's figures.
type deployReport struct {
	sc                 string
	loadStart, loadEnd string
	backfillRows, rows int
	rowBytes           float64

	backfill, raw       time.Duration
	backfillFirst       time.Duration // from pgkafka's start to the first record read
	backfillCPU, rawCPU deployCPUTimes
	rawRecords          int
	recordBytes         float64 // key and value, on average

	catchUp, recv, server time.Duration
	catchUpFirst          time.Duration // from pgkafka's start to the first record read
	catchUpKafkaTx        int
	catchUpCPU            deployCPUTimes
	recvCPU               time.Duration

	latency []deployLatencyResult

	// The peaks of the backfill's process, of the second process after
	// the catch-up and at its end.
	backfillPeakMB, catchUpPeakMB, streamPeakMB float64
}

// print reports the metrics and prints the table.
func (r *deployReport) print(b *testing.B) {
	rate := func(rows int, d time.Duration) float64 { return float64(rows) / d.Seconds() }
	backfill, raw := rate(r.backfillRows, r.backfill), rate(r.rawRecords, r.raw)
	catchUp, recv, server := rate(r.rows, r.catchUp), rate(r.rows, r.recv), rate(r.rows, r.server)
	peak := max(r.backfillPeakMB, r.streamPeakMB)
	b.ReportMetric(backfill, "backfill-rows/s")
	b.ReportMetric(raw, "raw-producer-rows/s")
	b.ReportMetric(backfill/raw, "backfill/raw")
	b.ReportMetric(catchUp, "catchup-rows/s")
	b.ReportMetric(recv, "recvlogical-rows/s")
	b.ReportMetric(server, "server-decoding-rows/s")
	b.ReportMetric(catchUp/recv, "catchup/recvlogical")
	b.ReportMetric(catchUp/server, "catchup/server-decoding")
	for _, l := range r.latency {
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		b.ReportMetric(l.achieved, fmt.Sprintf("achieved-tx/s@%d/s", l.rate))
		b.ReportMetric(ms(l.p50), fmt.Sprintf("p50-ms@%d/s", l.rate))
		b.ReportMetric(ms(l.p99), fmt.Sprintf("p99-ms@%d/s", l.rate))
		b.ReportMetric(ms(l.max), fmt.Sprintf("max-ms@%d/s", l.rate))
	}
	b.ReportMetric(peak, "peak-RSS-MB")

	w := os.Stdout
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) }
	fmt.Fprintf(w, "deployment: server synchronous_commit = %s; load average %s at the start, %s at the end\n", r.sc, r.loadStart, r.loadEnd)
	fmt.Fprintf(w, "  %-9s %-44s %-10s %s\n", "phase", "figure", "goal", "detail")
	row := func(phase, figure, goal, detail string) {
		fmt.Fprintf(w, "  %-9s %-44s %-10s %s\n", phase, figure, goal, detail)
	}
	row("backfill", fmt.Sprintf("%.2fx raw producer", backfill/raw), ">= 0.6x",
		fmt.Sprintf("pgkafka %.0f rows/s (%d rows of %.0f bytes in %s, the first read after %s; CPU %s), raw producer %.0f records/s (%d records of %.0f bytes in %s; CPU %s)",
			backfill, r.backfillRows, r.rowBytes, r.backfill.Round(time.Millisecond), r.backfillFirst.Round(time.Millisecond), r.backfillCPU,
			raw, r.rawRecords, r.recordBytes, r.raw.Round(time.Millisecond), r.rawCPU))
	row("catch-up", fmt.Sprintf("%.2fx pg_recvlogical", catchUp/recv), ">= 0.9x",
		fmt.Sprintf("pgkafka %.0f rows/s (%d rows in %s, the first read after %s, %d Kafka transactions; CPU %s), pg_recvlogical %.0f rows/s (%s; its CPU %s)",
			catchUp, r.rows, r.catchUp.Round(time.Millisecond), r.catchUpFirst.Round(time.Millisecond), r.catchUpKafkaTx, r.catchUpCPU, recv, r.recv.Round(time.Millisecond), r.recvCPU.Round(10*time.Millisecond)))
	row("", fmt.Sprintf("%.2fx server decoding", catchUp/server), ">= 0.5x",
		fmt.Sprintf("server decoding %.0f rows/s (%s)", server, r.server.Round(time.Millisecond)))
	for _, l := range r.latency {
		goal := ""
		switch l.rate {
		case 1000:
			goal = "p50 <= 15"
		case 5000:
			goal = "p99 <= 50"
		}
		row("latency", fmt.Sprintf("p50 %s  p99 %s  max %s ms", ms(l.p50), ms(l.p99), ms(l.max)), goal,
			fmt.Sprintf("%d tx/s asked, %.0f achieved, %d rows, %d Kafka transactions", l.rate, l.achieved, l.rows, l.kafkaTx))
	}
	row("peak RSS", fmt.Sprintf("%.0f MB", peak), "<= 128", fmt.Sprintf("backfill process %.0f MB, catch-up and latency process %.0f MB (%.0f MB after the catch-up)",
		r.backfillPeakMB, r.streamPeakMB, r.catchUpPeakMB))
}
