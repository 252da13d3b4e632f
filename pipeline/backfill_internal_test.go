package pipeline

import (
	"testing"
	"time"
)

func TestProgressFigures(t *testing.T) {
	for _, tc := range []struct {
		rows      int
		estimated int64
		elapsed   time.Duration
		pct, eta  string
	}{
		{0, 1000, time.Second, "0.0", "unknown"},
		{250, 1000, 10 * time.Second, "25.0", "30s"},
		{1200, 1000, time.Second, "100.0", "unknown"},
		{10, -1, time.Second, "unknown", "unknown"},
	} {
		p := TableProgress{Rows: int64(tc.rows), Estimated: tc.estimated, Elapsed: tc.elapsed}
		if got := percent(p); got != tc.pct {
			t.Errorf("percent(%d, %d) = %s, want %s", tc.rows, tc.estimated, got, tc.pct)
		}
		if got := eta(p); got != tc.eta {
			t.Errorf("eta(%d, %d, %s) = %s, want %s", tc.rows, tc.estimated, tc.elapsed, got, tc.eta)
		}
	}
	done := TableProgress{Rows: 990, Estimated: 1000, Elapsed: time.Second, Done: true}
	if done.Percent() != 100 || done.ETA() != 0 {
		t.Errorf("a finished backfill: percent %v, ETA %v; want 100 and 0", done.Percent(), done.ETA())
	}
}

// TestWindowGate: windows open without a break for longer than a
// transaction window close the gate, so that new chunks wait; it opens
// again when the last open window closes, and the batch ends there (a
// commit point) for the producer to commit.
func TestWindowGate(t *testing.T) {
	s := &dblog{txWindow: 10 * time.Millisecond, gate: newWindowGate()}
	s.openWindows, s.busySince = 2, time.Now()
	s.checkBusy()
	ctx := t.Context()
	if err := s.gate.wait(ctx); err != nil {
		t.Fatalf("gate closed before a transaction window passed: %v", err)
	}
	s.busySince = time.Now().Add(-time.Second)
	s.checkBusy()
	waited := make(chan error, 1)
	go func() { waited <- s.gate.wait(ctx) }()
	select {
	case err := <-waited:
		t.Fatalf("gate open while windows stayed open for a second: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	s.gate.open() // what emit does when no window is left open
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a chunk still held at the gate after it opened")
	}
}
