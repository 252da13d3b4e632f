package pgsrc_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
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

// TestScanChunkConsistentSeesDelivered is TestBeginConsistentSeesDelivered
// for the read in one round trip: while the delivered transaction is in
// progress for the snapshots, no row reaches fn; once it commits, the
// chunk holds its row and the rows before it, with binary columns in
// binary, and the scanner's transaction is over.
func TestScanChunkConsistentSeesDelivered(t *testing.T) {
	ctx := testContext(t)
	c := pgCluster(t)
	db := c.NewDatabase(t)
	db.Exec(t, `CREATE TABLE t (id int PRIMARY KEY, v int8); INSERT INTO t VALUES (1, 10)`)
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
	if err := other.QueryRow(ctx, `INSERT INTO t VALUES (2, 20) RETURNING txid_current()`).Scan(&xid); err != nil {
		t.Fatal(err)
	}
	sc, err := pgsrc.OpenScanner(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sc.Close(context.Background()) })
	o, err := sc.KeyOrder(ctx, &tables[0], tables[0].PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	read := make(chan error, 1)
	go func() {
		_, err := sc.ScanChunkConsistent(ctx, []uint32{uint32(xid)}, &tables[0], o, nil, nil, []bool{false, true}, func(row []pgsrc.Value) error {
			mu.Lock()
			defer mu.Unlock()
			if row[1].Kind != pgsrc.ValueBinary || len(row[1].Data) != 8 {
				return fmt.Errorf("v is %v %x, want 8 bytes in binary", row[1].Kind, row[1].Data)
			}
			got = append(got, fmt.Sprintf("%s:%d", row[0].Data, binary.BigEndian.Uint64(row[1].Data)))
			return nil
		})
		read <- err
	}()
	select {
	case err := <-read:
		t.Fatalf("ScanChunkConsistent returned (%v) while the delivered transaction %d was still in progress for its snapshots", err, xid)
	case <-time.After(300 * time.Millisecond):
	}
	mu.Lock()
	if len(got) > 0 {
		t.Errorf("fn saw rows %v of a snapshot racing a delivered commit", got)
	}
	mu.Unlock()
	if _, err := other.Exec(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if want := []string{"1:10", "2:20"}; !slices.Equal(got, want) {
		t.Errorf("the chunk holds %v, want %v", got, want)
	}
	// The transaction is over: a new one can begin.
	if err := sc.BeginConsistent(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := sc.End(ctx); err != nil {
		t.Fatal(err)
	}
	// An error of fn stops the read, and is returned as is.
	stop := errors.New("stop")
	if _, err := sc.ScanChunkConsistent(ctx, nil, &tables[0], o, nil, nil, nil, func([]pgsrc.Value) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("fn's error: got %v, want %v", err, stop)
	}
	if _, err := sc.ScanChunkConsistent(ctx, nil, &tables[0], o, nil, nil, nil, func([]pgsrc.Value) error { return nil }); err != nil {
		t.Errorf("a read after fn's error: %v", err)
	}
	// A read that fails leaves no transaction open.
	db.Exec(t, `DROP TABLE t`)
	if _, err := sc.ScanChunkConsistent(ctx, nil, &tables[0], o, nil, nil, nil, func([]pgsrc.Value) error { return nil }); !errors.Is(err, pgsrc.ErrTableNotFound) {
		t.Errorf("reading a dropped table: got %v, want ErrTableNotFound", err)
	}
	if err := sc.BeginConsistent(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := sc.End(ctx); err != nil {
		t.Fatal(err)
	}
}
