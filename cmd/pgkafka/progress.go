package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/pgkafka/pgkafka/pipeline"
)

// progressEvery is how often the bars are updated from the Runner, and
// refreshRate how often they are drawn.
const (
	progressEvery = 250 * time.Millisecond
	refreshRate   = 150 * time.Millisecond
)

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// wantProgress tells whether `pgkafka run` draws backfill progress bars:
// --progress auto draws them on a terminal, always and never as they say.
func wantProgress(mode string, w io.Writer) (bool, error) {
	switch mode {
	case "", "auto":
		return isTerminal(w), nil
	case "always":
		return true, nil
	case "never":
		return false, nil
	}
	return false, fmt.Errorf("--progress %q: want auto, always or never", mode)
}

// progressUI draws a bar per table being backfilled, with the log lines
// printed above the bars.
type progressUI struct {
	p   *mpb.Progress
	out io.Writer
}

func newProgressUI(out io.Writer) *progressUI {
	opts := []mpb.ContainerOption{mpb.WithOutput(out), mpb.WithAutoRefresh(), mpb.WithRefreshRate(refreshRate)}
	if !isTerminal(out) {
		opts = append(opts, mpb.WithWidth(120)) // a terminal gives its own
	}
	return &progressUI{out: out, p: mpb.New(opts...)}
}

// Write prints a log line above the bars, or straight out once they are
// gone.
func (u *progressUI) Write(b []byte) (int, error) {
	if n, err := u.p.Write(b); err == nil {
		return n, nil
	}
	return u.out.Write(b)
}

// follow keeps a bar per table in step with r's backfills until ctx ends,
// then brings them up to date a last time: a table finished just before a
// stop shows as done.
func (u *progressUI) follow(ctx context.Context, r *pipeline.Runner) {
	bars := map[string]*mpb.Bar{}
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	for {
		u.update(r, bars)
		select {
		case <-ctx.Done():
			u.update(r, bars)
			return
		case <-t.C:
		}
	}
}

// update sets each table's bar from r's progress, adding the bars of
// tables new to bars.
func (u *progressUI) update(r *pipeline.Runner, bars map[string]*mpb.Bar) {
	for _, tp := range r.BackfillProgress() {
		b := bars[tp.Table]
		if b == nil {
			b = u.p.New(0, mpb.BarStyle(), mpb.PrependDecorators(decor.Name(tp.Table+" ", decor.WCSyncSpaceR),
				decor.Any(func(decor.Statistics) string { return rowsOf(r, tp.Table) }, decor.WCSyncSpace)),
				mpb.AppendDecorators(decor.Percentage(decor.WCSyncSpace),
					decor.Any(func(decor.Statistics) string { return etaOf(r, tp.Table) }, decor.WCSyncSpace)))
			bars[tp.Table] = b
		}
		read := tp.Before + tp.Rows
		switch {
		case tp.Done:
			b.SetTotal(max(read, 1), true)
			if read == 0 {
				b.SetCurrent(1)
			}
		default:
			b.SetTotal(max(tp.Estimated, read+1), false)
			b.SetCurrent(read)
		}
	}
}

// close draws the bars and the log lines written last, then lets later log
// lines go straight out.
func (u *progressUI) close() {
	time.Sleep(2 * refreshRate) // Shutdown draws only what a refresh has
	u.p.Shutdown()
}

func progressOf(r *pipeline.Runner, table string) (pipeline.TableProgress, bool) {
	for _, tp := range r.BackfillProgress() {
		if tp.Table == table {
			return tp, true
		}
	}
	return pipeline.TableProgress{}, false
}

func rowsOf(r *pipeline.Runner, table string) string {
	tp, _ := progressOf(r, table)
	if tp.Estimated > 0 {
		return fmt.Sprintf("%d/~%d rows", tp.Before+tp.Rows, tp.Estimated)
	}
	return fmt.Sprintf("%d rows", tp.Before+tp.Rows)
}

func etaOf(r *pipeline.Runner, table string) string {
	tp, _ := progressOf(r, table)
	switch d := tp.ETA(); {
	case tp.Done:
		return "done in " + tp.Elapsed.Round(time.Second).String()
	case d < 0:
		return "ETA unknown"
	default:
		return "ETA " + d.Round(time.Second).String()
	}
}
