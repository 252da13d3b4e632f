package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkafka/pgkafka/pipeline"
)

// lockedBuffer is a log destination the Runner's goroutines share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestHeartbeats: source.advanced.heartbeatInterval 0s disables heartbeats
// in a running capture (no heartbeat reaches the watermarks table) though
// SetDefaults ran after it was set, as it does for any Config built in
// code; unset, it is the default of a minute; set, heartbeats are written
// that often.
func TestHeartbeats(t *testing.T) {
	every := func(d time.Duration) *time.Duration { return &d }
	for _, tc := range []struct {
		name     string
		interval *time.Duration // nil: unset
		log      string
		writes   bool // a heartbeat reaches the watermarks table within the test
	}{
		{"unset", nil, `msg="heartbeats on" every=1m0s`, false},
		{"100ms", every(100 * time.Millisecond), `msg="heartbeats on" every=100ms`, true},
		{"0s", every(0), `msg="heartbeats off (source.advanced.heartbeatInterval: 0s)"`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "public.t")
			e.db.Exec(t, `CREATE TABLE t (id int PRIMARY KEY)`)
			e.cfg.Source.Advanced.HeartbeatInterval = tc.interval
			cfg := e.cfg
			cfg.SetDefaults()
			var logs lockedBuffer
			r, err := pipeline.NewRunner(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			select {
			case <-r.Backfilled():
			case err := <-done:
				t.Fatalf("Run ended: %v\n%s", err, logs.String())
			case <-time.After(60 * time.Second):
				t.Fatalf("not capturing after 60s:\n%s", logs.String())
			}

			conn := e.db.Conn(t)
			heartbeat := func() bool {
				var mark string
				err := conn.QueryRow(ctx, `SELECT watermark FROM public.flow_watermarks WHERE slot = 'flow_slot'`).Scan(&mark)
				if err != nil && !errors.Is(err, pgx.ErrNoRows) {
					t.Fatal(err)
				}
				return strings.HasPrefix(mark, "heartbeat ")
			}
			deadline := time.Now().Add(2 * time.Second)
			if tc.writes {
				deadline = time.Now().Add(20 * time.Second)
			}
			wrote := false
			for !wrote && time.Now().Before(deadline) {
				wrote = heartbeat()
				time.Sleep(50 * time.Millisecond)
			}
			if wrote != tc.writes {
				t.Errorf("a heartbeat in the watermarks table: %v, want %v", wrote, tc.writes)
			}
			r.Stop()
			if err := <-done; err != nil {
				t.Fatalf("Run after Stop: %v", err)
			}
			if !strings.Contains(logs.String(), tc.log) {
				t.Errorf("the log lacks %s:\n%s", tc.log, logs.String())
			}
		})
	}
}
