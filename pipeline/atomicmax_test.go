package pipeline

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestStoreMax(t *testing.T) {
	tests := []struct {
		name    string
		from, v uint64
		want    uint64
	}{
		{"forward", 10, 20, 20},
		{"backward", 20, 10, 20},
		{"equal", 20, 20, 20},
		{"from zero", 0, 1, 1},
		{"zero", 5, 0, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a atomic.Uint64
			a.Store(tt.from)
			storeMax(&a, tt.v)
			if got := a.Load(); got != tt.want {
				t.Errorf("storeMax(%d, %d) = %d, want %d", tt.from, tt.v, got, tt.want)
			}
		})
	}
}

// TestStoreMaxConcurrent: stores racing from several goroutines, in any
// order, leave the largest.
func TestStoreMaxConcurrent(t *testing.T) {
	const goroutines, stores = 8, 1000
	var a atomic.Uint64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range stores {
				// Each goroutine stores its own values, rising and falling.
				v := uint64(i*goroutines + g)
				if i%2 == 1 {
					v = uint64((stores-i)*goroutines + g)
				}
				storeMax(&a, v)
			}
		})
	}
	wg.Wait()
	if got, want := a.Load(), uint64(stores*goroutines-1); got != want {
		t.Errorf("after concurrent stores: %d, want %d", got, want)
	}
}
