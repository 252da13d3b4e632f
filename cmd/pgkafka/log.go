package main

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/lmittmann/tint"

	"github.com/pgkafka/pgkafka/pipeline"
)

// newLogger picks the handler: tint when tty (w is, or writes to, a
// terminal) or with format "text", JSON otherwise or with format "json".
func newLogger(w io.Writer, tty bool, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	switch format {
	case "", "auto":
		if tty {
			format = "text"
		} else {
			format = "json"
		}
	case "text", "json":
	default:
		return nil, fmt.Errorf("--log-format %q: want auto, text or json", format)
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})), nil
	}
	return slog.New(tint.NewHandler(w, &tint.Options{Level: lv, TimeFormat: time.TimeOnly, NoColor: !tty})), nil
}

// redactSecrets returns log with every password of cfg (Config.Secrets)
// removed from each line, the final error's included. The packages that
// know a secret keep it out of their errors and logs already; this is the
// net under them, for whatever a library wrote that they did not foresee.
func redactSecrets(log *slog.Logger, cfg *pipeline.Config) *slog.Logger {
	return slog.New(cfg.Redactor().Handler(log.Handler()))
}
