package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

// TestMetricsAndProgressBars runs a capture with metrics.address and
// --progress always: the backfill draws its bar to the end, and /metrics
// counts the rows backfilled, the records produced by op and the Kafka
// transactions, as the database says they should be.
func TestMetricsAndProgressBars(t *testing.T) {
	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY, v text);
		INSERT INTO orders SELECT g, 'v' || g FROM generate_series(1, 500) g; ANALYZE orders`)
	path := s.config(t, pgtest.Superuser, cluster.SuperuserPassword(), ordersBinding)
	cmd, addr, stderr := runWithMetrics(t, path, "--progress", "always", "--set", "source.advanced.backfill_chunk_size=50")
	waitFor(t, 60*time.Second, func() bool { return strings.Contains(stderr.String(), "backfills finished") }, stderr)

	s.db.Exec(t, `INSERT INTO orders VALUES (501, 'a'), (502, 'b'); UPDATE orders SET v = 'u' WHERE id = 1; DELETE FROM orders WHERE id = 2`)
	// The scrape is taken once Kafka holds the changes: their records are
	// counted when encoded, but the committed LSN only once their Kafka
	// transaction commits (the backfill's may not have committed yet).
	var written string
	if err := s.db.Conn(t).QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&written); err != nil {
		t.Fatal(err)
	}
	writtenLSN, err := pglogrepl.ParseLSN(written)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]*dto.MetricFamily
	waitFor(t, 30*time.Second, func() bool {
		m = scrape(t, "http://"+addr+"/metrics")
		return value(m, "pgkafka_records_total", "op", "d") == 1 && value(m, "pgkafka_committed_lsn", "", "") >= float64(writtenLSN)
	}, stderr)
	for _, c := range []struct {
		name, label, lv string
		want            float64
	}{
		{"pgkafka_backfill_rows_total", "table", "public.orders", 500},
		{"pgkafka_backfill_done", "table", "public.orders", 1},
		{"pgkafka_backfill_estimated_rows", "table", "public.orders", 500},
		{"pgkafka_backfill_chunks_total", "table", "public.orders", 12}, // 8 and 8 rows (the first two), 9 of 50, and the last of 34
		{"pgkafka_records_total", "op", "r", 500},
		{"pgkafka_records_total", "op", "c", 2},
		{"pgkafka_records_total", "op", "u", 1},
		{"pgkafka_sessions_total", "", "", 1},
		{"pgkafka_session_failures_total", "", "", 0},
	} {
		if got := value(m, c.name, c.label, c.lv); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.lv, got, c.want)
		}
	}
	if n := value(m, "pgkafka_kafka_transactions_total", "", ""); n < 1 {
		t.Errorf("pgkafka_kafka_transactions_total = %v, want at least one", n)
	}
	if lsn := value(m, "pgkafka_committed_lsn", "", ""); lsn <= 0 {
		t.Errorf("pgkafka_committed_lsn = %v", lsn)
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("/healthz: %d %q", resp.StatusCode, body)
	}
	if code := httpStatus(t, "http://"+addr+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without metrics.pprof: status %d, want 404", code)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit 30s after SIGTERM:\n%s", stderr.String())
	}
	// The bar: the table, its rows against the estimate, and completion.
	out := stderr.String()
	for _, want := range []string{"public.orders", "500/~500 rows", "100 %", "done in"} {
		if !strings.Contains(out, want) {
			t.Errorf("the progress bars lack %q:\n%s", want, out)
		}
	}
	// The log lines still come, above the bars.
	if !strings.Contains(out, "backfill finished") || !strings.Contains(out, "stopped") {
		t.Errorf("log lines missing:\n%s", out)
	}
}

// TestPprof: with metrics.pprof, a running capture serves Go's profiles
// on the metrics address: a CPU profile taken while it streams is a
// gzipped profile (what `go tool pprof` reads), and so is the heap's.
func TestPprof(t *testing.T) {
	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY, v text);
		INSERT INTO orders SELECT g, 'v' || g FROM generate_series(1, 2000) g`)
	path := s.config(t, pgtest.Superuser, cluster.SuperuserPassword(), ordersBinding)
	_, addr, stderr := runWithMetrics(t, path, "--set", "metrics.pprof=true")
	waitFor(t, 60*time.Second, func() bool { return strings.Contains(stderr.String(), "backfills finished") }, stderr)
	s.db.Exec(t, `INSERT INTO orders SELECT g, 'w' || g FROM generate_series(2001, 4000) g`)
	for _, p := range []string{"/debug/pprof/profile?seconds=1", "/debug/pprof/heap"} {
		resp, err := http.Get("http://" + addr + p)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: %s", p, resp.StatusCode, body)
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%s: not a gzipped profile: %v", p, err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil || len(raw) == 0 {
			t.Fatalf("%s: an empty or broken profile (%d bytes): %v", p, len(raw), err)
		}
	}
}

// TestSlotWatch: a running capture exports its slot's state
// (pgkafka_slot_retained_bytes, _lag_bytes, _wal_status) and warns, naming
// the slot and the bytes, while the WAL the server keeps for it is past
// source.advanced.maxSlotLagBytes (here 1 byte: always).
func TestSlotWatch(t *testing.T) {
	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY, v text);
		INSERT INTO orders SELECT g, repeat('v', 100) FROM generate_series(1, 1000) g`)
	path := s.config(t, pgtest.Superuser, cluster.SuperuserPassword(), ordersBinding)
	_, addr, stderr := runWithMetrics(t, path, "--set", "source.advanced.maxSlotLagBytes=1")
	waitFor(t, 60*time.Second, func() bool {
		return strings.Contains(stderr.String(), "holds back more WAL than source.advanced.maxSlotLagBytes allows")
	}, stderr)
	warning := ""
	for line := range strings.Lines(stderr.String()) {
		if strings.Contains(line, "maxSlotLagBytes allows") {
			warning = line
		}
	}
	for _, want := range []string{"slot=flow_slot", "retained_bytes=", "max_bytes=1 "} {
		if !strings.Contains(warning, want) {
			t.Errorf("the warning lacks %q: %s", want, warning)
		}
	}
	m := scrape(t, "http://"+addr+"/metrics")
	if v := value(m, "pgkafka_slot_retained_bytes", "", ""); v <= 1 {
		t.Errorf("pgkafka_slot_retained_bytes = %v, want the WAL the slot keeps (more than a byte)", v)
	}
	if v := value(m, "pgkafka_slot_lag_bytes", "", ""); v < 0 {
		t.Errorf("pgkafka_slot_lag_bytes = %v", v)
	}
	if v := value(m, "pgkafka_slot_wal_status", "status", "reserved"); v != 1 {
		t.Errorf("pgkafka_slot_wal_status{status=reserved} = %v, want 1", v)
	}
}

// runWithMetrics starts `pgkafka run -c path` with args, serving metrics
// on a free address, and kills it at the end of the test; it returns the
// process, the metrics address and the process's log.
func runWithMetrics(t *testing.T, path string, args ...string) (*exec.Cmd, string, *syncBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(binary, append([]string{"run", "-c", path, "--log-format", "text", "--set", "metrics.address=" + addr}, args...)...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, addr, stderr
}

// httpStatus is the status of a GET of url.
func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool, logs fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s; output:\n%s", timeout, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrape reads url's metrics in the Prometheus text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	m, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// value is the value of metric name whose label has value lv (any metric
// of the family when label is ""); -1 when there is none.
func value(m map[string]*dto.MetricFamily, name, label, lv string) float64 {
	f := m[name]
	if f == nil {
		return -1
	}
	for _, x := range f.GetMetric() {
		match := label == ""
		for _, l := range x.GetLabel() {
			if l.GetName() == label && l.GetValue() == lv {
				match = true
			}
		}
		if !match {
			continue
		}
		switch {
		case x.Counter != nil:
			return x.Counter.GetValue()
		case x.Gauge != nil:
			return x.Gauge.GetValue()
		}
	}
	return -1
}
