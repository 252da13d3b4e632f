// Command pgkafka streams a PostgreSQL database into Apache Kafka.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/pgkafka/pgkafka/pipeline"
)

const usage = `pgkafka streams PostgreSQL changes into Apache Kafka as Avro records.

Usage:
  pgkafka run      -c FILE   backfill, then stream until stopped (SIGINT/SIGTERM)
  pgkafka discover -c FILE   print a bindings: list of every table that can be captured
  pgkafka check    -c FILE   check every prerequisite and print the fix of each failure
  pgkafka status   -c FILE   the checkpoint, the slot's lag and each table's state
  pgkafka backfill -c FILE [--where 'SQL CONDITION'] SCHEMA.TABLE...
                             read the tables again (new 'r' records) while the rest streams;
                             with --where, only the rows the condition passes
  pgkafka verify   -c FILE [--show N] [--catch-up DURATION] [SCHEMA.TABLE...]
                             compare each table with its topic's compacted state (never
                             writes); exit 0 equal, 1 different, 2 a table it refuses
  pgkafka verify   -c FILE --repair [--repair-wait DURATION] [--repair-keys N] [SCHEMA.TABLE...]
                             then have the running capture re-read the rows that differ and
                             remove the keys the table lacks; verify again (exit 0: equal)
  pgkafka demo               a throwaway PostgreSQL, Kafka broker and schema registry under load
  pgkafka version

Common flags:
  -c, --config FILE        the YAML configuration
  --set KEY=VALUE          override one key (repeatable), e.g. --set source.address=db:5432
  --log-format auto|text|json
  --log-level debug|info|warn|error
  --progress auto|always|never
                           backfill progress bars of run (auto: when stderr is a terminal)

Every key may also come from the environment: PGKAFKA_SOURCE__PASSWORD sets source.password.
Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.
`

func main() {
	if len(os.Args) > 1 && os.Args[1] == "run" {
		setMemoryLimit()
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// defaultMemoryLimit is the Go runtime's soft memory limit of `pgkafka run`
// unless GOMEMLIMIT sets one. The pipeline's live memory is bounded (about
// 50-70 MiB, pipeline/doc.go, plus toast.cacheBytes), but the collector
// lets the heap grow to twice the live memory (GOGC=100) before it
// collects: the limit makes it collect earlier, so that the process stays
// within DESIGN §9's 128 MB. It is soft: a live heap above it is not an
// error, the collector just runs more often.
const defaultMemoryLimit = 100 << 20

// setMemoryLimit applies defaultMemoryLimit when GOMEMLIMIT is not set.
// Only `run` gets it (demo holds a broker's records in the same process).
func setMemoryLimit() {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}

// commonFlags are the flags every subcommand takes.
type commonFlags struct {
	config    string
	sets      multiFlag
	logFormat string
	logLevel  string
	progress  string
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("pgkafka "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	var cf commonFlags
	fs.StringVar(&cf.config, "c", "", "configuration file")
	fs.StringVar(&cf.config, "config", "", "configuration file")
	fs.Var(&cf.sets, "set", "override a key: KEY=VALUE")
	fs.StringVar(&cf.logFormat, "log-format", "auto", "auto, text or json")
	fs.StringVar(&cf.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cf.progress, "progress", "auto", "backfill progress bars (run): auto (on a terminal), always or never")
	var where string
	var vf verifyFlags
	fs.IntVar(&vf.show, "show", 10, "verify: how many keys of each kind to list")
	fs.StringVar(&vf.catchUp, "catch-up", "1m", "verify: how long a re-check waits for the capture to catch up")
	fs.BoolVar(&vf.repair, "repair", false, "verify: have the running capture repair the topics found different")
	fs.StringVar(&vf.repairWait, "repair-wait", "10m", "verify --repair: how long to wait for the capture to finish the repairs")
	fs.IntVar(&vf.repairKeys, "repair-keys", 1000, "verify --repair: the most keys a table's repair names; more, and the whole table is read again")
	fs.StringVar(&where, "where", "", "backfill: read only the rows this SQL condition passes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if where != "" && cmd != "backfill" {
		fmt.Fprintf(stderr, "pgkafka %s: --where is a flag of pgkafka backfill\n", cmd)
		return 2
	}
	var misplaced string
	fs.Visit(func(f *flag.Flag) {
		switch {
		case f.Name == "repair" && cmd != "verify":
			misplaced = "--repair is a flag of pgkafka verify"
		case (f.Name == "repair-wait" || f.Name == "repair-keys") && (cmd != "verify" || !vf.repair):
			misplaced = "--" + f.Name + " is a flag of pgkafka verify --repair"
		}
	})
	if misplaced != "" {
		fmt.Fprintf(stderr, "pgkafka %s: %s\n", cmd, misplaced)
		return 2
	}
	var vopts pipeline.VerifyOptions
	if cmd == "verify" {
		var err error
		if vopts, err = vf.options(); err == nil {
			err = vf.parseRepair()
		}
		if err != nil {
			fmt.Fprintf(stderr, "pgkafka verify: %v\n", err)
			return 2
		}
	}
	if fs.NArg() > 0 && cmd != "backfill" && cmd != "verify" {
		fmt.Fprintf(stderr, "pgkafka %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return 2
	}
	if cmd == "backfill" && fs.NArg() == 0 {
		fmt.Fprintf(stderr, "pgkafka backfill: name the tables to read again, as SCHEMA.TABLE\n")
		return 2
	}
	bars, err := wantProgress(cf.progress, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "pgkafka: %v\n", err)
		return 2
	}
	var ui *progressUI
	logOut := stderr
	if bars && (cmd == "run" || cmd == "verify") {
		ui = newProgressUI(stderr)
		defer ui.close()
		logOut = ui
	}
	log, err := newLogger(logOut, isTerminal(stderr), cf.logFormat, cf.logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "pgkafka: %v\n", err)
		return 2
	}

	ctx := context.Background()

	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "pgkafka", pipeline.Version)
		return 0
	case "demo":
		return exit(log, runDemo(ctx, stdout, log))
	case "run", "discover", "check", "status", "backfill", "verify":
	default:
		fmt.Fprintf(stderr, "pgkafka: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if cf.config == "" && !hasEnvConfig() {
		fmt.Fprintf(stderr, "pgkafka %s: -c FILE is required\n", cmd)
		return 2
	}
	cfg, err := loadConfig(cf.config, osEnviron(), cf.sets)
	if err != nil {
		return exit(log, err)
	}
	log = redactSecrets(log, &cfg)
	switch cmd {
	case "run":
		return exit(log, runCapture(ctx, cfg, log, ui))
	case "discover":
		return exit(log, runDiscover(ctx, cfg, stdout))
	case "status":
		return exit(log, runStatus(ctx, cfg, stdout))
	case "backfill":
		return exit(log, runBackfill(ctx, cfg, fs.Args(), where, stdout))
	case "verify":
		return runVerify(ctx, cfg, fs.Args(), vf, vopts, ui, stdout, log)
	default:
		return exit(log, runCheck(ctx, cfg, stdout))
	}
}

func hasEnvConfig() bool {
	for _, kv := range osEnviron() {
		if strings.HasPrefix(kv, envPrefix+"SOURCE__ADDRESS=") {
			return true
		}
	}
	return false
}

// exit logs the final error, if any, and maps it to the exit code.
func exit(log *slog.Logger, err error) int {
	if err == nil {
		return 0
	}
	var ce *configError
	if errors.As(err, &ce) {
		log.Error("invalid configuration: " + strings.ReplaceAll(ce.Error(), "\n", "; "))
		return 2
	}
	log.Error(err.Error())
	return 1
}

// runCapture runs the capture until a signal: the first SIGINT/SIGTERM is a
// soft stop (finish the transaction in progress, write it, exit 0); a
// second one, or shutdownTimeout without the soft stop done, is a hard one
// (abort the open Kafka transaction, exit 1).
func runCapture(ctx context.Context, cfg pipeline.Config, log *slog.Logger, ui *progressUI) error {
	r, err := pipeline.NewRunner(cfg, log)
	if err != nil {
		return &configError{err}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if ui != nil {
		// The bars follow the Runner until it returns, then take its
		// last progress before they are drawn a last time (ui.close).
		fctx, stop := context.WithCancel(ctx)
		followed := make(chan struct{})
		go func() {
			defer close(followed)
			ui.follow(fctx, r)
		}()
		defer func() {
			stop()
			<-followed
		}()
	}
	if cfg.Metrics.Address != "" {
		stop, err := serveMetrics(cfg.Metrics, r, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		n := 0
		for sig := range sigs {
			n++
			if n == 1 {
				log.Info("stopping after the transaction in progress; signal again to abort", "signal", sig.String(), "timeout", cfg.ShutdownTimeout.String())
				r.Stop()
				time.AfterFunc(cfg.ShutdownTimeout, func() {
					cancel(fmt.Errorf("no clean stop within shutdownTimeout (%s): aborting", cfg.ShutdownTimeout))
				})
				continue
			}
			cancel(fmt.Errorf("second signal (%s): aborting the open transaction", sig))
			return
		}
	}()
	err = r.Run(ctx)
	var clash *pipeline.TopicClashError
	if errors.As(err, &clash) {
		// Tables found at run time (no bindings) whose topics clash: the
		// fix is in the configuration, and a restart would not mend it.
		return &configError{err}
	}
	return err
}

// serveMetrics serves the Runner's metrics on /metrics, a liveness answer
// on /healthz and, with metrics.pprof, Go's profiles on /debug/pprof/,
// until stop is called.
func serveMetrics(cfg pipeline.MetricsConfig, r *pipeline.Runner, log *slog.Logger) (stop func(), err error) {
	addr := cfg.Address
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.address: cannot listen on %s: %w (choose a free port, or leave the key empty to serve no metrics)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", r.Metrics().Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	if cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index) // and the named profiles: heap, goroutine, ...
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "address", ln.Addr().String(), "pprof", cfg.Pprof)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
