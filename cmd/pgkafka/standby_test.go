package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// committedLSN is the LSN of the capture's checkpoint (0 without one).
func committedLSN(t *testing.T, s *stack) uint64 {
	t.Helper()
	if cp := checkpoint(t, s.broker.ListenAddrs(), "it"); cp != nil {
		return uint64(cp.LSN)
	}
	return 0
}

// stillRunning fails the test if c has exited.
func stillRunning(t *testing.T, c *capture, who string) {
	t.Helper()
	select {
	case err := <-c.done:
		c.done <- err
		t.Fatalf("the %s instance exited (%v):\n%s", who, err, c.logs)
	default:
	}
}

// TestStandbyTakesOver runs two instances of one name, as a supervisor
// keeping two replicas does: the second stands by without fencing the
// first for a minute while the first captures; killed, the first is
// replaced by the second, which resumes from the checkpoint, losing and
// repeating nothing.
func TestStandbyTakesOver(t *testing.T) {
	s := newStack(t)
	ctr := newCounters(t, s.db, 10)
	path := tune(t, s.config(t, "postgres", cluster.SuperuserPassword(), countersBinding), "  transactionWindow: 20ms\n", "")
	first := startCapture(t, path)
	ctr.seed(t)
	stop := make(chan struct{})
	written := ctr.write(t, s.db.DSN(), stop)
	second := startCaptureNoWait(t, path)
	second.waitLog(t, `"msg":"standby: another pgkafka with this name is active`, time.Minute)

	// A minute of both: the first goes on committing, the second waits.
	from := committedLSN(t, s)
	for range 12 {
		time.Sleep(5 * time.Second)
		stillRunning(t, first, "active")
		stillRunning(t, second, "standby")
	}
	if code, out := pgkafka(t, "status", "-c", path); code != 0 || !strings.Contains(out, "instance    active: server process") || !strings.Contains(out, "; 1 standby") {
		t.Errorf("status does not show the active instance and its standby: exit %d\n%s", code, out)
	}
	if to := committedLSN(t, s); to <= from {
		t.Fatalf("the active instance committed nothing in a minute beside a standby (checkpoint at %d, then %d):\n%s", from, to, first.logs)
	}
	if logs := first.logs.String(); strings.Contains(logs, "fenced") || strings.Contains(logs, "capture failed") {
		t.Fatalf("the active instance was disturbed by the standby:\n%s", logs)
	}
	if logs := second.logs.String(); strings.Contains(logs, `"msg":"capturing"`) {
		t.Fatalf("the standby captured while the active instance ran:\n%s", logs)
	}

	// A standby stops cleanly on SIGTERM.
	third := startCaptureNoWait(t, path)
	third.waitLog(t, `"msg":"standby: another pgkafka with this name is active`, time.Minute)
	third.stop(t)

	killed := time.Now()
	first.kill(t)
	second.waitLog(t, `"msg":"capturing"`, time.Minute)
	t.Logf("takeover: the standby captured %s after the active instance was killed", time.Since(killed).Round(time.Millisecond))
	second.waitLog(t, `"msg":"the active instance is gone: this one takes over"`, time.Second)
	time.Sleep(500 * time.Millisecond)
	n := finishWrites(t, s, second, ctr, stop, written)
	t.Logf("%d writer transactions across a takeover", n)
}

// TestTakenOverStops cuts the active instance off from its lease (its
// session on the database terminated, as a network partition would end
// it): the standby takes over and fences it, and the first stops with
// exit 1 and a clear message, having confirmed nothing past its last
// commit; the handover loses and repeats nothing.
func TestTakenOverStops(t *testing.T) {
	s := newStack(t)
	ctr := newCounters(t, s.db, 10)
	path := tune(t, s.config(t, "postgres", cluster.SuperuserPassword(), countersBinding), "", "    heartbeatInterval: 1s\n")
	first := startCapture(t, path)
	ctr.seed(t)
	stop := make(chan struct{})
	written := ctr.write(t, s.db.DSN(), stop)
	second := startCaptureNoWait(t, path)
	second.waitLog(t, `"msg":"standby: another pgkafka with this name is active`, time.Minute)
	time.Sleep(500 * time.Millisecond)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var terminated int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND objsubid = 2 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&terminated); err != nil {
		t.Fatal(err)
	}
	if terminated != 1 {
		t.Fatalf("%d sessions held a lease, want 1", terminated)
	}
	if code := first.exit(t, time.Minute); code != 1 {
		t.Fatalf("the instance taken over exited %d, want 1:\n%s", code, first.logs)
	}
	if logs := first.logs.String(); !strings.Contains(logs, "fenced") || !strings.Contains(logs, `another pgkafka with name \"it\" took over`) {
		t.Errorf("the instance taken over does not say so:\n%s", logs)
	}
	second.waitLog(t, `"msg":"capturing"`, time.Minute)
	time.Sleep(500 * time.Millisecond)
	finishWrites(t, s, second, ctr, stop, written)
}

// TestBrokerAbortIsNotFencing restarts the broker under the capture and,
// after each restart, has it refuse the next commit as a broker does that
// aborted the transaction (INVALID_PRODUCER_EPOCH, PRODUCER_FENCED,
// INVALID_TXN_STATE): no other instance exists, so the capture retries
// from its checkpoint instead of stopping as fenced, and loses and repeats
// nothing.
func TestBrokerAbortIsNotFencing(t *testing.T) {
	s := newStack(t)
	dir := t.TempDir()
	s.broker.Close()
	var err error
	if s.broker, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir), kfake.SyncWrites()); err != nil {
		t.Fatal(err)
	}
	addr := s.broker.ListenAddrs()[0]
	var port int
	fmt.Sscan(addr[strings.LastIndexByte(addr, ':')+1:], &port)
	t.Cleanup(func() { s.broker.Close() })
	ctr := newCounters(t, s.db, 10)
	path := s.config(t, "postgres", cluster.SuperuserPassword(), countersBinding)
	c := startCapture(t, path)
	ctr.seed(t)
	stop := make(chan struct{})
	written := ctr.write(t, s.db.DSN(), stop)
	for i, refusal := range []*kerr.Error{kerr.InvalidProducerEpoch, kerr.ProducerFenced, kerr.InvalidTxnState} {
		time.Sleep(700 * time.Millisecond)
		s.broker.Close()
		time.Sleep(300 * time.Millisecond)
		if s.broker, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir), kfake.SyncWrites(), kfake.Ports(port)); err != nil {
			t.Fatal(err)
		}
		h := s.broker.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, TxnID: "it", Err: refusal})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := h.Wait(ctx, 1)
		cancel()
		if err != nil {
			t.Fatalf("restart %d: no commit refused with %v: %v\n%s", i+1, refusal, err, c.logs)
		}
		c.waitLog(t, refusal.Message, 30*time.Second)
		stillRunning(t, c, "only")
	}
	if logs := c.logs.String(); !strings.Contains(logs, "the broker aborted the Kafka transaction") {
		t.Errorf("the retries do not say the broker aborted the transaction:\n%s", logs)
	}
	time.Sleep(time.Second)
	n := finishWrites(t, s, c, ctr, stop, written)
	t.Logf("%d writer transactions across 3 broker restarts and refused commits", n)
}
