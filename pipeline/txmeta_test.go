package pipeline_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const txTopic = "test.transaction"

// txRecs splits what was read into the transaction topic's BEGIN and END
// records, by id, and the change records of each transaction id.
type txRecs struct {
	begins, ends map[string][]rec
	changes      map[string][]rec
}

func splitTx(t *testing.T, rs []rec) txRecs {
	t.Helper()
	out := txRecs{begins: map[string][]rec{}, ends: map[string][]rec{}, changes: map[string][]rec{}}
	for _, r := range rs {
		if r.Topic == txTopic {
			id, _ := r.Value["id"].(string)
			if r.Key["id"] != id {
				t.Fatalf("transaction record keyed %v, id %q", r.Key, id)
			}
			switch r.Value["status"] {
			case "BEGIN":
				out.begins[id] = append(out.begins[id], r)
			case "END":
				out.ends[id] = append(out.ends[id], r)
			default:
				t.Fatalf("transaction record %v", r.Value)
			}
			continue
		}
		if r.Tombstone {
			continue
		}
		blk, _ := r.Value["transaction"].(map[string]any)
		if blk == nil {
			out.changes[""] = append(out.changes[""], r)
			continue
		}
		id := blk["id"].(string)
		out.changes[id] = append(out.changes[id], r)
	}
	return out
}

// endCounts is an END record's event_count and data_collections.
func endCounts(t *testing.T, end rec) (int64, map[string]int64) {
	t.Helper()
	n, _ := end.Value["event_count"].(int64)
	per := map[string]int64{}
	cols, _ := end.Value["data_collections"].([]any)
	if u, ok := end.Value["data_collections"].(map[string]any); ok {
		cols, _ = u["array"].([]any) // the union's array branch
	}
	for _, c := range cols {
		m := c.(map[string]any)
		per[m["data_collection"].(string)] = m["event_count"].(int64)
	}
	return n, per
}

// checkOrders: the transaction's change records carry total_order 1..n,
// each once, and, in each table's topic (read in order), increasing
// total_orders and data_collection_order 1..k. It sorts changes by
// total_order.
func checkOrders(t *testing.T, id string, changes []rec) (per map[string]int64) {
	t.Helper()
	per = map[string]int64{}
	last := map[string]int64{}
	for _, r := range changes {
		blk := r.Value["transaction"].(map[string]any)
		table := fmt.Sprint(r.Source["schema"], ".", r.Source["table"])
		per[table]++
		total := blk["total_order"].(int64)
		if got := blk["data_collection_order"].(int64); got != per[table] || total <= last[table] {
			t.Fatalf("transaction %s: %s record %d has data_collection_order %d, total_order %d after %d", id, table, per[table], got, total, last[table])
		}
		last[table] = total
	}
	slices.SortStableFunc(changes, func(a, b rec) int {
		return cmp.Compare(a.Value["transaction"].(map[string]any)["total_order"].(int64), b.Value["transaction"].(map[string]any)["total_order"].(int64))
	})
	for i, r := range changes {
		if got := r.Value["transaction"].(map[string]any)["total_order"].(int64); got != int64(i+1) {
			t.Fatalf("transaction %s: total_orders sorted, the %dth is %d", id, i+1, got)
		}
	}
	return per
}

func hasTopic(t *testing.T, e *env, topic string) bool {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topics, err := kadm.NewClient(cl).ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return topics.Has(topic)
}

// TestTransactionMetadata: off by default (no topic, transaction null);
// on, a transaction over two tables gets a BEGIN, its change records
// their orders (a key change's d and c count as two, tombstones not), and
// an END with the counts, all in one read_committed view; backfilled rows
// carry no block; transactions without change records (watermarks, a
// transactional message alone) get no BEGIN or END.
func TestTransactionMetadata(t *testing.T) {
	e := newEnv(t, "public.a", "s2.b")
	e.db.Exec(t, `CREATE TABLE a (id int PRIMARY KEY, v text); CREATE SCHEMA s2; CREATE TABLE s2.b (id int PRIMARY KEY, v text);
		INSERT INTO a VALUES (100, 'old')`)
	topics := []string{"test.public.a", "test.s2.b"}

	rn := e.start(t)
	e.db.Exec(t, `INSERT INTO a VALUES (1, 'x')`)
	rs := e.consume(t, topics, 30*time.Second, atLeast(2))
	rn.stop(t)
	for _, r := range rs {
		if r.Value["transaction"] != nil {
			t.Errorf("transaction metadata off by default, yet %s op %s carries %v", r.Topic, r.Op, r.Value["transaction"])
		}
	}
	if hasTopic(t, e, txTopic) {
		t.Fatalf("topic %s created with transaction metadata off", txTopic)
	}

	e.cfg.Format.TransactionMetadata = true
	rn = e.start(t)
	e.db.Exec(t, `BEGIN;
		INSERT INTO a VALUES (2, 'x');
		INSERT INTO s2.b VALUES (1, 'y'), (2, 'y');
		UPDATE a SET v = 'z' WHERE id = 2;
		DELETE FROM s2.b WHERE id = 1;
		UPDATE a SET id = 3 WHERE id = 2;
		INSERT INTO s2.b VALUES (3, 'y');
		COMMIT`)
	e.db.Exec(t, `SELECT pg_logical_emit_message(true, 'p', 'alone')`)
	e.db.Exec(t, `INSERT INTO a VALUES (4, 'w')`)
	all := append(topics, txTopic)
	var tx txRecs
	rs = e.consume(t, all, 60*time.Second, func(rs []rec) bool {
		// Both ENDs and the 9 change records carrying a block: the topics'
		// records of one Kafka transaction may come in separate fetches.
		ends, blocks := 0, 0
		for _, r := range rs {
			switch {
			case r.Topic == txTopic && r.Value["status"] == "END":
				ends++
			case r.Topic != txTopic && r.Value["transaction"] != nil:
				blocks++
			}
		}
		return ends >= 2 && blocks >= 9
	})
	rn.stop(t)
	tx = splitTx(t, rs)
	if len(tx.begins) != 2 || len(tx.ends) != 2 {
		t.Fatalf("%d BEGIN and %d END ids, want 2 each (the message alone and the earlier run get none):\n%s", len(tx.begins), len(tx.ends), dump(rs))
	}
	for _, r := range tx.changes[""] {
		if r.Op != "r" && fmt.Sprint(r.After["id"]) != "1" {
			t.Errorf("%s op %s %v without a transaction block", r.Topic, r.Op, r.After)
		}
	}
	var big string
	for id, ch := range tx.changes {
		if id != "" && len(ch) > 1 {
			big = id
		}
	}
	ch := tx.changes[big]
	if len(tx.begins[big]) != 1 || len(tx.ends[big]) != 1 {
		t.Fatalf("transaction %s: %d BEGIN, %d END", big, len(tx.begins[big]), len(tx.ends[big]))
	}
	per := checkOrders(t, big, ch)
	var ops string
	for _, r := range ch {
		ops += r.Op
	}
	if ops != "cccuddcc" {
		t.Errorf("the transaction's change records by total_order %q, want cccuddcc", ops)
	}
	n, cols := endCounts(t, tx.ends[big][0])
	if n != 8 || len(cols) != 2 || cols["public.a"] != per["public.a"] || cols["s2.b"] != per["s2.b"] || per["public.a"] != 4 {
		t.Errorf("END event_count %d data_collections %v; records per table %v", n, cols, per)
	}
	// Debezium's PostgreSQL id, <txId>:<LSN>: the source block's txId.
	if want := strconv.FormatInt(ch[0].Source["txId"].(int64), 10) + ":"; len(big) <= len(want) || big[:len(want)] != want {
		t.Errorf("transaction id %q, want %s<LSN>", big, want)
	}
	if ts := tx.ends[big][0].Value["ts_ms"]; ts != ch[0].Source["ts_ms"] || tx.begins[big][0].Value["ts_ms"] != ts {
		t.Errorf("BEGIN/END ts_ms %v/%v, commit time %v", tx.begins[big][0].Value["ts_ms"], ts, ch[0].Source["ts_ms"])
	}
	if tx.begins[big][0].Value["event_count"] != nil || tx.begins[big][0].Value["data_collections"] != nil {
		t.Errorf("BEGIN %v", tx.begins[big][0].Value)
	}
}

// TestTransactionMetadataSplitRestart: a transaction over two tables
// larger than kafka.maxTransactionRecords is split across Kafka
// transactions; killed after part of it is committed and restarted, its
// records keep their orders (none twice, none missing), it has one BEGIN,
// and its END counts every record, from the checkpoint's partial mark on.
func TestTransactionMetadataSplitRestart(t *testing.T) {
	e := newEnv(t, "public.a", "public.b")
	e.db.Exec(t, `CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)`)
	e.cfg.Kafka.MaxTransactionRecords = 500
	e.cfg.Format.TransactionMetadata = true
	h := e.startHard(t, e.cfg)
	const rows = 12000 // per table
	e.db.Exec(t, `BEGIN;
		INSERT INTO a SELECT g FROM generate_series(1, `+strconv.Itoa(rows)+`) g;
		INSERT INTO b SELECT g FROM generate_series(1, `+strconv.Itoa(rows)+`) g;
		COMMIT`)
	cp := waitPartial(t, e, 60*time.Second)
	h.kill(t)
	t.Logf("killed after the partial checkpoint %+v", cp.Partial)
	var sum int64
	for _, n := range cp.Partial.Events {
		sum += n
	}
	if sum == 0 || sum > cp.Partial.Changes {
		t.Errorf("partial mark's events %v for %d changes", cp.Partial.Events, cp.Partial.Changes)
	}
	rn := e.start(t)
	topics := []string{"test.public.a", "test.public.b", txTopic}
	rs := e.consume(t, topics, 90*time.Second, func(rs []rec) bool {
		// The END and every change record: the topics' records of one
		// Kafka transaction may come in separate fetches.
		end, blocks := false, 0
		for _, r := range rs {
			switch {
			case r.Topic == txTopic && r.Value["status"] == "END":
				end = true
			case r.Topic != txTopic && r.Value["transaction"] != nil:
				blocks++
			}
		}
		return end && blocks >= 24000
	})
	rn.stop(t)
	tx := splitTx(t, rs)
	if len(tx.begins) != 1 || len(tx.ends) != 1 || len(tx.changes) != 1 {
		t.Fatalf("%d BEGIN ids, %d END ids, %d transaction ids in change records", len(tx.begins), len(tx.ends), len(tx.changes))
	}
	for id, ch := range tx.changes {
		if len(tx.begins[id]) != 1 || len(tx.ends[id]) != 1 {
			t.Fatalf("transaction %s: %d BEGIN, %d END", id, len(tx.begins[id]), len(tx.ends[id]))
		}
		if len(ch) != 2*rows {
			t.Fatalf("%d change records, want %d", len(ch), 2*rows)
		}
		per := checkOrders(t, id, ch)
		n, cols := endCounts(t, tx.ends[id][0])
		if n != 2*rows || cols["public.a"] != rows || cols["public.b"] != rows || per["public.a"] != rows {
			t.Errorf("END event_count %d data_collections %v, want %d and %d each", n, cols, 2*rows, rows)
		}
	}
}

// TestTransactionMetadataReadByApacheAvro: the transaction topic and the
// change records' blocks, read by kcat and decoded by the Apache Avro
// reference implementation (python3-avro) with the registry's schemas,
// which carry Debezium's record names.
func TestTransactionMetadataReadByApacheAvro(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is needed (make deps installs it):", err)
	}
	python := "/usr/bin/python3"
	e := newEnv(t, "public.a")
	e.db.Exec(t, `CREATE TABLE a (id int PRIMARY KEY)`)
	e.cfg.Format.TransactionMetadata = true
	e.start(t)
	e.db.Exec(t, `INSERT INTO a VALUES (1), (2)`)
	e.consume(t, []string{txTopic}, 30*time.Second, atLeast(2))

	read := func(topic string) []map[string]any {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		raw, err := exec.CommandContext(ctx, kcat, "-C", "-b", strings.Join(e.broker.ListenAddrs(), ","), "-t", topic,
			"-X", "isolation.level=read_committed", "-o", "beginning", "-e", "-q", "-f", "%K %S\n%k%s").Output()
		if err != nil {
			t.Fatalf("kcat: %v", err)
		}
		py := exec.CommandContext(ctx, python, "testdata/avro_decode.py", e.reg.URL())
		py.Stdin = bytes.NewReader(raw)
		var stderr bytes.Buffer
		py.Stderr = &stderr
		out, err := py.Output()
		if err != nil {
			t.Fatalf("python3-avro: %v\n%s", err, stderr.String())
		}
		var recs []map[string]any
		dec := json.NewDecoder(bytes.NewReader(out))
		for dec.More() {
			var r map[string]any
			if err := dec.Decode(&r); err != nil {
				t.Fatalf("%v in %s", err, out)
			}
			recs = append(recs, r)
		}
		return recs
	}
	txs := read(txTopic)
	if len(txs) != 2 {
		t.Fatalf("%d transaction records: %v", len(txs), txs)
	}
	begin, end := txs[0]["value"].(map[string]any), txs[1]["value"].(map[string]any)
	id, _ := begin["id"].(string)
	if begin["status"] != "BEGIN" || end["status"] != "END" || end["id"] != id || txs[1]["key"].(map[string]any)["id"] != id {
		t.Fatalf("BEGIN %v END %v", txs[0], txs[1])
	}
	cols, _ := end["data_collections"].([]any)
	if end["event_count"] != float64(2) || len(cols) != 1 || fmt.Sprint(cols[0]) != "map[data_collection:public.a event_count:2]" {
		t.Errorf("END decoded by Apache Avro: %v", end)
	}
	changes := read("test.public.a")
	if len(changes) != 2 {
		t.Fatalf("%d change records", len(changes))
	}
	for i, c := range changes {
		blk, _ := c["value"].(map[string]any)["transaction"].(map[string]any)
		if blk["id"] != id || blk["total_order"] != float64(i+1) || blk["data_collection_order"] != float64(i+1) {
			t.Errorf("change %d's block decoded by Apache Avro: %v", i+1, blk)
		}
	}
	// Debezium's record names, in the registry.
	for subject, name := range map[string]string{txTopic + "-key": "io.debezium.connector.common.TransactionMetadataKey", txTopic + "-value": "io.debezium.connector.common.TransactionMetadataValue"} {
		resp, err := http.Get(e.reg.URL() + "/subjects/" + subject + "/versions/latest")
		if err != nil {
			t.Fatal(err)
		}
		var v struct{ Schema string }
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		var s struct{ Name, Namespace string }
		if err := json.Unmarshal([]byte(v.Schema), &s); err != nil || s.Namespace+"."+s.Name != name {
			t.Errorf("subject %s holds %s.%s (%v), want %s", subject, s.Namespace, s.Name, err, name)
		}
	}
}
