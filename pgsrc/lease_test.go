package pgsrc_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// TestLease: one session holds the lease of a name at a time; another is
// told who holds it, waits, and takes it when the holder's session ends;
// a lease whose session was terminated reports itself lost; leases of
// other names are independent.
func TestLease(t *testing.T) {
	ctx := testContext(t)
	db := pgCluster(t).NewDatabase(t)
	cfg := db.SourceConfig("postgres", pgCluster(t).SuperuserPassword())

	first, holder, err := pgsrc.TryLease(ctx, &cfg, "cap")
	if err != nil || first == nil || holder != nil {
		t.Fatalf("TryLease on a free name: %v, %v, %v", first, holder, err)
	}
	if err := first.Check(ctx); err != nil {
		t.Fatalf("Check of a held lease: %v", err)
	}
	other, _, err := pgsrc.TryLease(ctx, &cfg, "other capture")
	if err != nil || other == nil {
		t.Fatalf("another name's lease: %v, %v", other, err)
	}
	defer other.Close(ctx)

	none, holder, err := pgsrc.TryLease(ctx, &cfg, "cap")
	if err != nil || none != nil || holder == nil {
		t.Fatalf("TryLease on a held name: %v, %v, %v", none, holder, err)
	}
	if holder.PID != int32(first.PID()) || holder.Application != "pgkafka" {
		t.Errorf("holder %+v, want server process %d of application pgkafka", holder, first.PID())
	}

	type result struct {
		l   *pgsrc.Lease
		err error
	}
	waited := make(chan result, 1)
	go func() {
		l, err := pgsrc.WaitLease(ctx, &cfg, "cap")
		waited <- result{l, err}
	}()
	catalog, err := pgsrc.OpenCatalog(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer catalog.Close(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := catalog.Lease(ctx, "cap")
		if err != nil {
			t.Fatal(err)
		}
		if st.Active == nil || st.Active.PID != int32(first.PID()) {
			t.Fatalf("lease state %+v, want held by server process %d", st, first.PID())
		}
		if st.Standbys == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the waiting session is not seen as a standby: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case r := <-waited:
		t.Fatalf("WaitLease returned while the lease was held: %v, %v", r.l, r.err)
	case <-time.After(200 * time.Millisecond):
	}

	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-waited
	if r.err != nil {
		t.Fatalf("WaitLease after the holder closed: %v", r.err)
	}
	second := r.l
	defer second.Close(ctx)
	if err := second.Check(ctx); err != nil {
		t.Fatalf("Check of the lease taken over: %v", err)
	}

	// Its session terminated (an operator, a partition): lost.
	// pg_terminate_backend signals; the session ends a moment later,
	// and releases its locks after telling its client.
	db.Exec(t, `SELECT pg_terminate_backend(`+strconv.FormatUint(uint64(second.PID()), 10)+`)`)
	for deadline := time.Now().Add(10 * time.Second); ; {
		err := second.Check(ctx)
		if errors.Is(err, pgsrc.ErrLeaseLost) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("Check after the session was terminated: %v, want ErrLeaseLost", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var held *pgsrc.Lease
	for deadline := time.Now().Add(10 * time.Second); held == nil; {
		if held, _, err = pgsrc.TryLease(ctx, &cfg, "cap"); err != nil || (held == nil && time.Now().After(deadline)) {
			t.Fatalf("TryLease after the holder's session ended: %v, %v", held, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer held.Close(ctx)

	// WaitLease ends with its context.
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if l, err := pgsrc.WaitLease(wctx, &cfg, "cap"); err == nil {
		l.Close(ctx)
		t.Fatal("WaitLease took a held lease")
	}
}
