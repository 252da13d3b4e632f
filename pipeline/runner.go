package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pgsrc/secret"
	"github.com/pgkafka/pgkafka/schema"
)

// Version is pgkafka's version, written in source.version.
const Version = "0.1.0"

// Runner runs one capture until stopped: a session (session.go) at a
// time, each started anew from the checkpoint after a failure it may
// recover from.
type Runner struct {
	cfg     Config
	log     *slog.Logger
	red     *secret.Redactor // cfg.Secrets
	metrics *Metrics
	// lease is this instance's right to run the capture (lease.go), held
	// across sessions; nil before it is taken and after it is lost.
	lease *pgsrc.Lease

	stopOnce sync.Once
	stop     chan struct{}

	committed      atomic.Uint64
	progress       *backfillProgress
	readyOnce      sync.Once
	ready          chan struct{}
	backfilledOnce sync.Once
	backfilled     chan struct{}
}

// NewRunner validates cfg (defaults already applied) and returns a Runner.
// Its log lines and errors never hold a password of cfg (Config.Secrets).
func NewRunner(cfg Config, log *slog.Logger) (*Runner, error) {
	red := cfg.Redactor()
	if err := cfg.Validate(); err != nil {
		return nil, red.Error(err)
	}
	m := newMetrics()
	// Every log line of the capture (the retry loop's, the stages', kgo's)
	// goes through red.
	log = slog.New(red.Handler(log.Handler()))
	return &Runner{cfg: cfg, log: log, red: red, metrics: m, progress: newBackfillProgress(m),
		stop: make(chan struct{}), ready: make(chan struct{}), backfilled: make(chan struct{})}, nil
}

// BackfillProgress returns the progress of every table this Runner has
// backfilled or is backfilling, by name.
func (r *Runner) BackfillProgress() []TableProgress { return r.progress.all() }

// Metrics are the Runner's Prometheus metrics.
func (r *Runner) Metrics() *Metrics { return r.metrics }

// Stop asks for a soft stop: the reader stops after the transaction in
// progress, the stages drain, the last batch is written and confirmed, and
// Run returns nil.
func (r *Runner) Stop() { r.stopOnce.Do(func() { close(r.stop) }) }

// Ready is closed once replication has first started (for tests and the demo).
func (r *Runner) Ready() <-chan struct{} { return r.ready }

// Backfilled is closed once every bound table has been backfilled (or
// needs none), for tests and the demo.
func (r *Runner) Backfilled() <-chan struct{} { return r.backfilled }

// CommittedLSN is the end LSN of the last transaction Kafka acknowledged.
func (r *Runner) CommittedLSN() pglogrepl.LSN { return pglogrepl.LSN(r.committed.Load()) }

// Retry pacing of failed sessions.
const (
	retryFirst = 500 * time.Millisecond
	retryMax   = 30 * time.Second
	// retryHealthy is how long a session must have run for the next failure
	// to be retried at once again.
	retryHealthy = time.Minute
)

// Run captures until Stop (nil) or until ctx ends or a failure that a
// retry cannot mend (the error). Once streaming has started, a session that
// fails on a lost connection, a restarting server or broker, or a timeout
// is started anew from the last checkpoint, after a capped exponential
// backoff. A failure before streaming ever started is returned at once (a
// misconfigured or unreachable source is for the operator, or the
// supervisor that restarts pgkafka, to see), but for a slot still held by
// a predecessor, which is waited for. It may be called once.
func (r *Runner) Run(ctx context.Context) error {
	return r.red.Error(r.cfg.Kafka.explainAuth(r.run(ctx)))
}

func (r *Runner) run(ctx context.Context) error {
	defer r.closeLease()
	wait := retryFirst
	for attempt := 1; ; attempt++ {
		if err := r.holdLease(ctx); err != nil {
			if errors.Is(err, errStandbyStopped) {
				return nil
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%w (%v)", err, context.Cause(ctx))
			}
			if !r.started() || !Retryable(err) {
				return err
			}
			r.log.Warn("taking the capture's lease failed; retrying", "err", err, "attempt", attempt, "in", wait.String())
			if !r.sleep(ctx, wait) {
				return nil
			}
			wait = min(2*wait, retryMax)
			continue
		}
		start := time.Now()
		r.metrics.sessions.Inc()
		err := newSession(r).run(ctx)
		if err != nil && !errors.Is(err, errRestart) {
			r.metrics.failures.Inc()
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errRestart) && ctx.Err() == nil:
			r.log.Info("restarting from the checkpoint to backfill the requested tables")
			attempt, wait = 0, retryFirst
			continue
		case ctx.Err() != nil:
			return fmt.Errorf("%w (%v)", err, context.Cause(ctx))
		case errors.Is(err, schema.ErrNoBinary) && r.cfg.Source.Advanced.PgoutputBinary == pgsrc.BinaryAuto && !r.stopping():
			// A column added while binary streamed has a type pgkafka does
			// not decode in binary: retried, the next session decides
			// again, and streams text.
		case r.stopping(), !Retryable(err):
			return err
		case !r.started() && !errors.Is(err, pgsrc.ErrSlotActive) && !errors.Is(err, errTxnAborted) && !errors.Is(err, pgsrc.ErrLeaseLost):
			// Before streaming ever started, only a slot still held by a
			// predecessor (about to go) is worth waiting for, or a
			// transaction the broker aborted, or a lease to look at again.
			return err
		}
		if time.Since(start) > retryHealthy {
			attempt, wait = 1, retryFirst
		}
		r.log.Warn("capture failed; retrying from the last checkpoint", "err", err, "attempt", attempt, "in", wait.String())
		if !r.sleep(ctx, wait) {
			if ctx.Err() != nil {
				return err
			}
			return nil
		}
		wait = min(2*wait, retryMax)
	}
}

// sleep waits d, and reports false if ctx ended or Stop was called first.
func (r *Runner) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-r.stop:
		return false
	}
}

func (r *Runner) started() bool {
	select {
	case <-r.ready:
		return true
	default:
		return false
	}
}

func (r *Runner) stopping() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}
