package pipeline_test

import (
	"fmt"
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/pipeline"
)

// TestHeaders: with kafka.headers, every record carries Debezium's
// __op, __table, __lsn, __txId and __source_ts_ms headers, equal to what
// its value says (backfilled rows without an LSN or a transaction, a
// delete's tombstone with its delete's, messages without a table); with
// the key absent, records carry none.
func TestHeaders(t *testing.T) {
	e := newEnv(t, "public.h")
	e.db.Exec(t, `CREATE TABLE h (id int PRIMARY KEY, v text); INSERT INTO h VALUES (1, 'backfilled')`)
	e.cfg.Kafka.Headers = []string{pipeline.HeaderOp, pipeline.HeaderTable, pipeline.HeaderLSN, pipeline.HeaderTxID, pipeline.HeaderCommitTime}
	e.start(t)
	e.db.Exec(t, `BEGIN; INSERT INTO h VALUES (2, 'new'); UPDATE h SET v = 'changed' WHERE id = 1; DELETE FROM h WHERE id = 2;
		SELECT pg_logical_emit_message(true, 'app', 'hello'); COMMIT`)
	want := 6 // pgoutput sends messages from PostgreSQL 14 on
	if cluster.Major() < 14 {
		want = 5
	}
	rs := e.consume(t, []string{"test.public.h", messageTopic}, 30*time.Second, atLeast(want))
	var got []string
	for i, r := range rs {
		if r.Tombstone {
			got = append(got, "tombstone")
		} else {
			got = append(got, r.Op)
		}
		h := r.Headers
		if r.Tombstone {
			prev := rs[i-1]
			for j := i - 1; j > 0 && prev.Topic != r.Topic; j-- {
				prev = rs[j-1]
			}
			if !maps.Equal(h, prev.Headers) {
				t.Errorf("tombstone headers %v, its delete's %v", h, prev.Headers)
			}
			continue
		}
		if h["__op"] != r.Op {
			t.Errorf("%s record: __op %q", r.Op, h["__op"])
		}
		wantTable := "public.h"
		if r.Op == "m" {
			wantTable = ""
		}
		if h["__table"] != wantTable {
			t.Errorf("%s record: __table %q, want %q", r.Op, h["__table"], wantTable)
		}
		src := r.Source
		if r.Op == "m" {
			src = r.Value["source"].(map[string]any)
		}
		if want := fmt.Sprint(src["ts_ms"]); h["__source_ts_ms"] != want {
			t.Errorf("%s record: __source_ts_ms %q, source.ts_ms %s", r.Op, h["__source_ts_ms"], want)
		}
		if r.Op == "r" {
			if _, ok := h["__lsn"]; ok {
				t.Errorf("backfilled record with __lsn %q", h["__lsn"])
			}
			if _, ok := h["__txId"]; ok {
				t.Errorf("backfilled record with __txId %q", h["__txId"])
			}
			continue
		}
		if want := fmt.Sprint(src["lsn"]); h["__lsn"] != want {
			t.Errorf("%s record: __lsn %q, source.lsn %s", r.Op, h["__lsn"], want)
		}
		if want := fmt.Sprint(src["txId"]); h["__txId"] != want {
			t.Errorf("%s record: __txId %q, source.txId %s", r.Op, h["__txId"], want)
		}
		if _, err := strconv.ParseInt(h["__lsn"], 10, 64); err != nil {
			t.Errorf("%s record: __lsn %q is not a number", r.Op, h["__lsn"])
		}
	}
	// The table's topic in order; the message's, anywhere.
	var table []string
	for _, g := range got {
		if g != "m" {
			table = append(table, g)
		}
	}
	if fmt.Sprint(table) != "[r c u d tombstone]" || len(got) != want {
		t.Fatalf("records %v", got)
	}

	// Off by default.
	e2 := newEnv(t, "public.h")
	e2.db.Exec(t, `CREATE TABLE h (id int PRIMARY KEY); INSERT INTO h VALUES (1)`)
	e2.cfg.Source.Advanced.SlotName = "flow_slot_plain"
	e2.start(t)
	e2.db.Exec(t, `INSERT INTO h VALUES (2)`)
	for _, r := range e2.consume(t, []string{"test.public.h"}, 30*time.Second, atLeast(2)) {
		if r.Headers != nil {
			t.Errorf("%s record with headers %v, none configured", r.Op, r.Headers)
		}
	}
}
