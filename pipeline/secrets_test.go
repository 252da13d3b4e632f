package pipeline_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/pipeline"
)

// registryPassword is the password of schemaRegistry.url in these tests,
// "p@ss" written p%40ss in the URL.
const registryPassword = "p@ss-Secret9"

// TestRegistryPasswordHidden: a capture whose schemaRegistry.url holds
// user:password, with the registry down from the start (a closed port) or
// closing every connection once streaming has begun (then the capture
// fails at a schema change and retries, logging "capture failed;
// retrying"): no log line and no returned error holds the password, in
// any spelling, while they still name the registry's host. franz-go's
// registry client quotes the URL it requested, userinfo included.
func TestRegistryPasswordHidden(t *testing.T) {
	t.Run("down", func(t *testing.T) {
		e := newEnv(t, "public.orders")
		e.db.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY, v text); INSERT INTO orders VALUES (1, 'a')`)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		host := l.Addr().String()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		e.cfg.SchemaRegistry.URL = "http://alice:" + url.QueryEscape(registryPassword) + "@" + host
		logs, err := runUntilRetried(t, e, nil)
		assertHidden(t, host, logs, err)
	})
	t.Run("closing connections", func(t *testing.T) {
		e := newEnv(t, "public.orders")
		e.db.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY, v text); INSERT INTO orders VALUES (1, 'a')`)
		var closing atomic.Bool
		e.reg.Intercept(func(w http.ResponseWriter, _ *http.Request) bool {
			if !closing.Load() {
				return false
			}
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return true
		})
		u, err := url.Parse(e.reg.URL())
		if err != nil {
			t.Fatal(err)
		}
		e.cfg.SchemaRegistry.URL = "http://alice:" + url.QueryEscape(registryPassword) + "@" + u.Host
		logs, err := runUntilRetried(t, e, func(r *pipeline.Runner) {
			<-r.Backfilled()
			closing.Store(true)
			// A new shape of the table: its schema must be registered.
			e.db.Exec(t, `ALTER TABLE orders ADD COLUMN w int; INSERT INTO orders VALUES (2, 'b', 2)`)
		})
		if !strings.Contains(logs, "capture failed; retrying") {
			t.Errorf("no retry logged:\n%s", logs)
		}
		assertHidden(t, u.Host, logs, err)
	})
}

// runUntilRetried runs a capture of e, calls then (if set) once it has
// started, and stops it once it has logged a retry or returned. It returns
// the log and Run's error.
func runUntilRetried(t *testing.T, e *env, then func(*pipeline.Runner)) (string, error) {
	t.Helper()
	cfg := e.cfg
	cfg.SetDefaults()
	var logs lockedBuffer
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(&logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := pipeline.NewRunner(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	if then != nil {
		then(r)
	}
	for deadline := time.Now().Add(45 * time.Second); ; {
		select {
		case err := <-done:
			return logs.String(), err
		case <-time.After(50 * time.Millisecond):
		}
		if strings.Contains(logs.String(), "capture failed; retrying") {
			r.Stop()
			return logs.String(), <-done
		}
		if time.Now().After(deadline) {
			t.Fatalf("neither failed nor retried:\n%s", logs.String())
		}
	}
}

func assertHidden(t *testing.T, host, logs string, err error) {
	t.Helper()
	if err != nil {
		t.Logf("Run: %v", err)
		logs += "\nreturned: " + err.Error()
	}
	for _, pw := range []string{registryPassword, url.QueryEscape(registryPassword), url.PathEscape(registryPassword)} {
		if strings.Contains(logs, pw) {
			t.Errorf("the registry password %q appears:\n%s", pw, logs)
		}
	}
	if !strings.Contains(logs, host) {
		t.Errorf("the registry's host %s appears nowhere:\n%s", host, logs)
	}
}
