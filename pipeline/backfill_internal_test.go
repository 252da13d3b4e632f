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
		if got := percent(tc.rows, tc.estimated); got != tc.pct {
			t.Errorf("percent(%d, %d) = %s, want %s", tc.rows, tc.estimated, got, tc.pct)
		}
		if got := eta(tc.rows, tc.estimated, tc.elapsed); got != tc.eta {
			t.Errorf("eta(%d, %d, %s) = %s, want %s", tc.rows, tc.estimated, tc.elapsed, got, tc.eta)
		}
	}
}
