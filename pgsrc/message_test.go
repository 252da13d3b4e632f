package pgsrc_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/pgsrc"
)

// readChanges decodes the stream until n row changes or messages have
// arrived (begins, commits and relations are not counted), and returns
// them as op:payload strings, with the messages read.
func readChanges(t *testing.T, ctx context.Context, r *pgsrc.Reader, n int) (got []string, msgs []pgsrc.Change) {
	t.Helper()
	d := pgsrc.NewDecoder()
	for len(got) < n {
		msg, err := r.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatalf("after %v, want %d", got, n)
		}
		if msg.Kind != pgsrc.MessageWAL {
			continue
		}
		var ch pgsrc.Change
		if _, err := d.Decode(msg.WALStart, bytes.Clone(msg.Data), &ch, nil); err != nil {
			t.Fatal(err)
		}
		switch ch.Op {
		case pgsrc.OpInsert:
			got = append(got, "insert:"+first(ch.New))
		case pgsrc.OpMessage:
			kind := "m"
			if ch.Transactional {
				kind = "tm"
			}
			got = append(got, kind+":"+string(ch.Prefix)+"="+string(ch.Content))
			msgs = append(msgs, ch)
			if ch.LSN != msg.WALStart {
				t.Errorf("message LSN %s, WAL start %s", ch.LSN, msg.WALStart)
			}
		}
	}
	return got, msgs
}

// TestReaderStreamsMessages reads pg_logical_emit_message messages from a
// real slot: transactional ones inside their transaction (not at all when
// it rolls back), the others at once; and a stream started at a
// non-transactional message's LSN does not send it again, which is what
// the pipeline's checkpoint relies on.
func TestReaderStreamsMessages(t *testing.T) {
	db := pgCluster(t).NewDatabase(t)
	db.Exec(t, `CREATE TABLE t (id int PRIMARY KEY)`)
	cfg := db.SourceConfig("postgres", pgCluster(t).SuperuserPassword())
	ctx := testContext(t)
	if err := pgsrc.Setup(ctx, &cfg, []pgsrc.TableRef{{Schema: "public", Name: "t"}}, nil); err != nil {
		t.Fatal(err)
	}
	r, err := pgsrc.StartReader(ctx, &cfg, 0, pgsrc.ReaderOptions{Messages: true}, discard())
	if err != nil {
		t.Fatal(err)
	}
	if major := pgCluster(t).Major(); major < 14 {
		if r.Messages() {
			t.Fatalf("messages asked for on PostgreSQL %d, whose pgoutput has no messages option", major)
		}
		pgCluster(t).SkipBelow(t, 14, "pgoutput's messages option")
	}
	if !r.Messages() {
		t.Fatal("messages not asked for on PostgreSQL 14+")
	}
	conn := db.Conn(t)
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec(`BEGIN`)
	exec(`INSERT INTO t VALUES (1)`)
	exec(`SELECT pg_logical_emit_message(true, 'tx', 'in tx 1')`)
	exec(`SELECT pg_logical_emit_message(false, 'now', 'while tx 1 runs')`)
	exec(`COMMIT`)
	exec(`BEGIN`)
	exec(`INSERT INTO t VALUES (2)`)
	exec(`SELECT pg_logical_emit_message(true, 'tx', 'rolled back')`)
	exec(`SELECT pg_logical_emit_message(false, 'now', 'despite the rollback')`)
	exec(`ROLLBACK`)
	exec(`SELECT pg_logical_emit_message(false, 'bin', '\x00ff'::bytea)`)
	exec(`INSERT INTO t VALUES (3)`)
	got, msgs := readChanges(t, ctx, r, 6)
	want := []string{"m:now=while tx 1 runs", "insert:1", "tm:tx=in tx 1", "m:now=despite the rollback", "m:bin=\x00\xff", "insert:3"}
	if !slices.Equal(got, want) {
		t.Fatalf("stream %q, want %q", got, want)
	}
	if msgs[1].Xid == 0 || msgs[0].Xid != 0 {
		t.Fatalf("xids: transactional %d, non-transactional %d", msgs[1].Xid, msgs[0].Xid)
	}
	last := msgs[3].LSN // the binary message
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// Restarting at the last message's LSN: it is not sent again; what
	// follows it is. The closed stream's walsender releases the slot a
	// moment after the connection closes.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r, err = pgsrc.StartReader(ctx, &cfg, last, pgsrc.ReaderOptions{Messages: true}, discard())
		if !errors.Is(err, pgsrc.ErrSlotActive) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	exec(`SELECT pg_logical_emit_message(false, 'after', 'restart')`)
	if got, _ := readChanges(t, ctx, r, 2); !slices.Equal(got, []string{"insert:3", "m:after=restart"}) {
		t.Fatalf("after restarting at %s: %q", last, got)
	}
}

// TestReaderWithoutMessages: without ReaderOptions.Messages, pgoutput sends
// no message.
func TestReaderWithoutMessages(t *testing.T) {
	db := pgCluster(t).NewDatabase(t)
	db.Exec(t, `CREATE TABLE t (id int PRIMARY KEY)`)
	cfg := db.SourceConfig("postgres", pgCluster(t).SuperuserPassword())
	ctx := testContext(t)
	if err := pgsrc.Setup(ctx, &cfg, []pgsrc.TableRef{{Schema: "public", Name: "t"}}, nil); err != nil {
		t.Fatal(err)
	}
	r, err := pgsrc.StartReader(ctx, &cfg, 0, pgsrc.ReaderOptions{}, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	if r.Messages() {
		t.Fatal("Messages() without asking")
	}
	db.Exec(t, `SELECT pg_logical_emit_message(false, 'now', 'x'); INSERT INTO t VALUES (1)`)
	if got, _ := readChanges(t, ctx, r, 1); !slices.Equal(got, []string{"insert:1"}) {
		t.Fatalf("stream %q", got)
	}
}
