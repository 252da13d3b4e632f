package pipeline

import "sync/atomic"

// storeMax stores v in a unless a already holds as much or more: a only
// moves forward, whoever else stores to it. The committed LSN is published
// this way (by the producer after each commit, and by a session from the
// checkpoint it resumes), so that no late store takes it back.
func storeMax(a *atomic.Uint64, v uint64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}
