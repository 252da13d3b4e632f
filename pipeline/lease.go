package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// One instance of a capture name is active at a time: the one holding the
// name's lease, a session-level advisory lock on the source database
// (pgsrc.Lease). Another instance started with the same name is a
// standby: it waits for the lease, fencing nobody, and takes over from the
// checkpoint once the active instance's session on the source ends (the
// process stopped, killed or cut off; the server ends a dead client's
// session within about 25 s). Under a supervisor that restarts what exits,
// two instances never take turns fencing each other.
//
// The lease also tells fencing from a broker's abort. A transactional
// producer refused for its epoch (INVALID_PRODUCER_EPOCH, PRODUCER_FENCED,
// INVALID_TXN_STATE) was either fenced by another instance or had its
// transaction aborted by the broker (a broker restart, or the transaction
// timeout). Another instance fences only once it holds the lease, and only
// after this one lost it: while this one still holds it, the refusal was
// an abort, retried from the checkpoint like any fault.

// leaseCheckInterval is how often a running session checks that it still
// holds the lease, and leaseCheckTimeout bounds one check.
const (
	leaseCheckInterval = 5 * time.Second
	leaseCheckTimeout  = 10 * time.Second
)

// errTxnAborted reports a producer refused for its epoch while this
// instance holds the lease: the broker aborted the transaction.
var errTxnAborted = errors.New("the broker aborted the Kafka transaction")

// errStandbyStopped reports a soft stop while waiting for the lease.
var errStandbyStopped = errors.New("stopped while standing by")

// holdLease makes sure this instance holds the lease of its capture before
// a session starts: it keeps the one it holds, or takes it, waiting as a
// standby while another instance holds it. An instance that held the lease
// and finds it held by another was taken over: ErrFenced.
func (r *Runner) holdLease(ctx context.Context) error {
	lost, oldPID := false, int32(0)
	if r.lease != nil {
		err := r.lease.Check(ctx)
		if err == nil {
			return nil
		}
		r.log.Warn("this instance's session on the source ended: taking the lease again", "err", err)
		lost, oldPID = true, int32(r.lease.PID())
		r.closeLease()
	}
	src, name := &r.cfg.Source, r.cfg.Name
	lease, holder, err := pgsrc.TryLease(ctx, src, name)
	// A terminated session tells its client before it exits and releases
	// its locks: its own lost lease may still show as held for a moment.
	for deadline := time.Now().Add(leaseCheckTimeout); err == nil && lease == nil && holder.PID == oldPID && time.Now().Before(deadline); {
		if !r.sleep(ctx, 100*time.Millisecond) {
			return errStandbyStopped
		}
		lease, holder, err = pgsrc.TryLease(ctx, src, name)
	}
	if err != nil {
		return err
	}
	if lease == nil {
		if lost {
			return fmt.Errorf("%w: another pgkafka with name %q took over (it holds the capture's lease: %s); this one stops, having confirmed nothing past its last commit",
				ErrFenced, name, holder)
		}
		r.log.Info("standby: another pgkafka with this name is active; waiting for it to stop, then taking over from its checkpoint",
			"name", name, "active", holder.String())
		r.metrics.standby.Set(1)
		wctx, cancel := context.WithCancelCause(ctx)
		go func() {
			select {
			case <-r.stop:
				cancel(errStandbyStopped)
			case <-wctx.Done():
			}
		}()
		start := time.Now()
		lease, err = pgsrc.WaitLease(wctx, src, name)
		cancel(nil)
		r.metrics.standby.Set(0)
		if err != nil {
			if r.stopping() {
				return errStandbyStopped
			}
			return err
		}
		r.log.Info("the active instance is gone: this one takes over", "name", name, "waited", time.Since(start).Round(time.Millisecond).String())
	}
	r.lease = lease
	return nil
}

func (r *Runner) closeLease() {
	if r.lease == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = r.lease.Close(ctx) // its session ends either way, which releases the lease
	r.lease = nil
}

// refused classifies an error of the transactional producer: one refusing
// its epoch is an abort by the broker while this instance holds the lease
// (retried), and otherwise left to holdLease, which tells whether another
// instance took over.
func (r *Runner) refused(ctx context.Context, err error) error {
	if !isFenced(err) {
		return err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseCheckTimeout)
	defer cancel()
	if lerr := r.lease.Check(cctx); lerr != nil {
		return fmt.Errorf("Kafka refused the transactional producer %q (%v), and %w", r.cfg.Name, err, lerr)
	}
	return fmt.Errorf("%w (%v): this instance still holds the lease of capture %q, so no other pgkafka took over; "+
		"the broker ended the transaction (a broker restart, or kafka.transactionTimeout passed): retrying from the checkpoint", errTxnAborted, err, r.cfg.Name)
}

// watchLease checks every leaseCheckInterval that this instance still
// holds the lease, until ctx ends.
func watchLease(ctx context.Context, lease *pgsrc.Lease) error {
	t := time.NewTicker(leaseCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, leaseCheckTimeout)
		err := lease.Check(cctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
}
