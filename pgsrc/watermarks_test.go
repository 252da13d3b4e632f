package pgsrc_test

import (
	"fmt"
	"testing"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

// TestWatermarksVisibleAtOnce: a watermark (or heartbeat, or re-backfill
// request) is in the logical decoding stream as soon as its write returns,
// on a server whose commits otherwise wait up to 10 s for the WAL writer
// (synchronous_commit = off, wal_writer_delay = 10s). Logical decoding,
// the WAL sender's and that of the SQL functions alike, reads only WAL the
// server has flushed: a backfill chunk waits on its low watermark, so a
// watermark left to the WAL writer would stall every chunk for the timer.
func TestWatermarksVisibleAtOnce(t *testing.T) {
	c := pgtest.Start(t, pgtest.WithSetting("synchronous_commit", "off"), pgtest.WithSetting("wal_writer_delay", "10s"))
	db := c.NewDatabase(t)
	ctx := testContext(t)
	cfg := db.SourceConfig(pgtest.Superuser, c.SuperuserPassword())
	db.Exec(t, `CREATE TABLE public.flow_watermarks (slot text PRIMARY KEY, watermark text)`)
	conn := db.Conn(t)
	if _, err := conn.Exec(ctx, `SELECT pg_create_logical_replication_slot('probe', 'test_decoding')`); err != nil {
		t.Fatal(err)
	}
	w, err := pgsrc.OpenWatermarks(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close(ctx) })
	for i := range 5 {
		value := fmt.Sprintf("pgkafka-lw:probe-%d", i)
		if err := w.Write(ctx, value); err != nil {
			t.Fatal(err)
		}
		var decoded int
		var flush, insert string
		if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_logical_slot_peek_changes('probe', NULL, NULL) WHERE data LIKE '%' || $1 || '%'),
			pg_current_wal_flush_lsn()::text, pg_current_wal_insert_lsn()::text`, value).Scan(&decoded, &flush, &insert); err != nil {
			t.Fatal(err)
		}
		if decoded != 1 {
			t.Fatalf("watermark %q is not in the decoded stream right after its write returned (WAL flushed to %s, inserted to %s): the stream waits for the WAL writer",
				value, flush, insert)
		}
	}
}
