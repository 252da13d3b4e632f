package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/pgkafka/pgkafka/pipeline"
)

// verifyFlags are the flags of pgkafka verify.
type verifyFlags struct {
	show       int
	catchUp    string
	repair     bool
	repairWait string
	repairKeys int
	wait       time.Duration // repairWait parsed
}

// runVerify compares each table with its topic and prints a report per
// table; exit 0 when all are equal, 1 when any differs (or on a runtime
// failure), 2 for a table verify refuses.
func runVerify(ctx context.Context, cfg pipeline.Config, tables []string, f verifyFlags, opts pipeline.VerifyOptions, ui *progressUI, w io.Writer, log *slog.Logger) int {
	if ui != nil {
		var mu sync.Mutex
		bars := map[string]*mpb.Bar{}
		opts.Progress = func(table string, done, total int64) {
			mu.Lock()
			defer mu.Unlock()
			b := bars[table]
			if b == nil {
				b = ui.p.New(0, mpb.BarStyle(), mpb.PrependDecorators(decor.Name("verify "+table+" ", decor.WCSyncSpaceR),
					decor.CurrentNoUnit("%d rows", decor.WCSyncSpace)), mpb.AppendDecorators(decor.Percentage(decor.WCSyncSpace)))
				bars[table] = b
			}
			b.SetTotal(max(total, done+1), false)
			b.SetCurrent(done)
		}
		defer func() {
			for _, b := range bars {
				b.SetTotal(-1, true)
			}
		}()
	}
	opts.Tables = tables
	if f.repair {
		return runRepair(ctx, cfg, pipeline.RepairOptions{VerifyOptions: opts, MaxKeys: f.repairKeys, Wait: f.wait}, w, log)
	}
	reps, err := pipeline.Verify(ctx, cfg, opts, log)
	var ue *pipeline.VerifyUsageError
	if errors.As(err, &ue) {
		log.Error(err.Error())
		return 2
	}
	var b strings.Builder
	differ := writeReports(&b, reps)
	if _, werr := io.WriteString(w, b.String()); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		log.Error(err.Error())
		return 1
	}
	if differ {
		return 1
	}
	return 0
}

// runRepair verifies, has the running capture repair each table found
// different, and verifies those again: exit 0 when they are equal then.
func runRepair(ctx context.Context, cfg pipeline.Config, opts pipeline.RepairOptions, w io.Writer, log *slog.Logger) int {
	var mu sync.Mutex // the report and the steps go to w in turn
	opts.Report = func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, format, args...)
	}
	var b strings.Builder
	say := func() {
		mu.Lock()
		defer mu.Unlock()
		_, _ = io.WriteString(w, b.String())
		b.Reset()
	}
	var before []pipeline.VerifyReport
	opts.Verified = func(reps []pipeline.VerifyReport) {
		before = reps
		writeReports(&b, reps)
		say()
	}
	rep, err := pipeline.Repair(ctx, cfg, opts, log)
	var ue *pipeline.VerifyUsageError
	if errors.As(err, &ue) {
		log.Error(err.Error())
		return 2
	}
	if err != nil {
		log.Error(err.Error())
		return 1
	}
	if len(rep.Requests) == 0 {
		fmt.Fprintln(w, "nothing to repair")
		if anyDiffer(before) {
			return 1
		}
		return 0
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	differ := true
	if rep.After != nil {
		b.WriteString("after the repair:\n")
		differ = writeReports(&b, rep.After)
	}
	say()
	if differ {
		return 1
	}
	return 0
}

func anyDiffer(reps []pipeline.VerifyReport) bool {
	for i := range reps {
		if !reps[i].Equal() {
			return true
		}
	}
	return false
}

// writeReports writes each table's report, and reports whether any
// differs.
func writeReports(b *strings.Builder, reps []pipeline.VerifyReport) bool {
	differ := false
	for i := range reps {
		r := &reps[i]
		state := "equal"
		if !r.Equal() {
			state, differ = "DIFFERENT", true
		}
		fmt.Fprintf(b, "%s -> %s: %s: %d rows compared, %d keys in the topic; %d missing, %d extra, %d with other values",
			r.Table, r.Topic, state, r.Rows, r.TopicKeys, r.NMissing, r.NExtra, r.NDiffer)
		if r.Unsettled > 0 {
			fmt.Fprintf(b, "; %d changing in each of %d re-checks, not compared", r.Unsettled, r.Rounds)
		}
		b.WriteString("\n")
		writeKeys(b, "missing from the topic", r.Missing, r.NMissing)
		writeKeys(b, "extra in the topic", r.Extra, r.NExtra)
		if len(r.Differ) > 0 {
			fmt.Fprintf(b, "  other values (%d):\n", r.NDiffer)
			for _, d := range r.Differ {
				fmt.Fprintf(b, "    %s: columns %s\n", d.Key, strings.Join(d.Columns, ", "))
			}
			if r.NDiffer > len(r.Differ) {
				fmt.Fprintf(b, "    ... and %d more\n", r.NDiffer-len(r.Differ))
			}
		}
		for _, n := range r.Notes {
			fmt.Fprintf(b, "  note: %s\n", n)
		}
	}
	return differ
}

func writeKeys(b *strings.Builder, what string, keys []string, n int) {
	if n == 0 {
		return
	}
	fmt.Fprintf(b, "  %s (%d): %s", what, n, strings.Join(keys, "; "))
	if n > len(keys) {
		fmt.Fprintf(b, " ... and %d more", n-len(keys))
	}
	b.WriteString("\n")
}

func (f verifyFlags) options() (pipeline.VerifyOptions, error) {
	d, err := time.ParseDuration(f.catchUp)
	if err != nil || d <= 0 {
		return pipeline.VerifyOptions{}, fmt.Errorf("--catch-up %q: want a positive duration such as 30s", f.catchUp)
	}
	if f.show < 1 {
		return pipeline.VerifyOptions{}, fmt.Errorf("--show %d: want at least 1", f.show)
	}
	return pipeline.VerifyOptions{Show: f.show, CatchUp: d}, nil
}

// parseRepair checks the repair flags.
func (f *verifyFlags) parseRepair() error {
	d, err := time.ParseDuration(f.repairWait)
	if err != nil || d <= 0 {
		return fmt.Errorf("--repair-wait %q: want a positive duration such as 10m", f.repairWait)
	}
	if f.repairKeys < 1 {
		return fmt.Errorf("--repair-keys %d: want at least 1", f.repairKeys)
	}
	f.wait = d
	return nil
}
