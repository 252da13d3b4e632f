package pgsrc_test

import (
	"context"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

// TestBeginConsistentSeesDelivered: a transaction whose commit the stream
// has delivered, but that a new snapshot still counts as in progress (the
// moment between its commit's WAL flush and the commit log, which
// txid_status cannot tell from a running transaction), holds the backfill's
// snapshot back until the snapshot sees it. The moment is modelled by a
// transaction kept open while its xid is passed as delivered: the snapshot
// BeginConsistent finally keeps holds its row.
func TestBeginConsistentSeesDelivered(t *testing.T) {
	ctx := testContext(t)
	c := pgCluster(t)
	db := c.NewDatabase(t)
	db.Exec(t, `CREATE TABLE t (v int)`)
	cfg := db.SourceConfig(pgtest.Superuser, c.SuperuserPassword())
	tables, err := pgsrc.Discover(ctx, db.Conn(t), []pgsrc.TableRef{{Schema: "public", Name: "t"}})
	if err != nil {
		t.Fatal(err)
	}
	other := db.Conn(t)
	if _, err := other.Exec(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	var xid int64
	if err := other.QueryRow(ctx, `INSERT INTO t VALUES (1) RETURNING txid_current()`).Scan(&xid); err != nil {
		t.Fatal(err)
	}
	sc, err := pgsrc.OpenScanner(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sc.Close(context.Background()) })
	began := make(chan error, 1)
	go func() { began <- sc.BeginConsistent(ctx, []uint32{uint32(xid)}) }()
	select {
	case err := <-began:
		t.Fatalf("BeginConsistent returned (%v) while the delivered transaction %d was still in progress for its snapshots", err, xid)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := other.Exec(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	if err := <-began; err != nil {
		t.Fatal(err)
	}
	_, n, err := sc.ScanCTID(ctx, &tables[0], "", 10, nil, func(string, []pgsrc.Value) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("the snapshot holds %d rows, want the delivered transaction's 1", n)
	}
	if err := sc.End(ctx); err != nil {
		t.Fatal(err)
	}
}
