package pipeline_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

// pgRows reads query (whose columns are all text, the key columns named in
// keys) into the same shape as state: key -> column -> value.
func pgRows(t *testing.T, db *pgtest.DB, query string, keys ...string) map[string]map[string]any {
	t.Helper()
	conn := db.Conn(t)
	rows, err := conn.Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	maps, err := pgx.CollectRows(rows, pgx.RowToMap)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, m := range maps {
		k := map[string]any{}
		for _, c := range keys {
			k[c] = m[c]
		}
		out[fmt.Sprint(sortedMap(k))] = m
	}
	return out
}

// stringify renders every value with fmt.Sprint, to compare decoded Avro
// with PostgreSQL's text.
func stringify(rows map[string]map[string]any) map[string]map[string]string {
	out := map[string]map[string]string{}
	for k, r := range rows {
		m := map[string]string{}
		for c, v := range r {
			if v == nil {
				m[c] = "<null>"
			} else {
				m[c] = fmt.Sprint(v)
			}
		}
		out[k] = m
	}
	return out
}

func sameRows(t *testing.T, got, want map[string]map[string]any) {
	t.Helper()
	g, w := stringify(got), stringify(want)
	if fmt.Sprint(g) != fmt.Sprint(w) {
		t.Fatalf("topic state differs from the table:\n got: %v\nwant: %v", g, w)
	}
}

func ops(rs []rec) []string {
	var out []string
	for _, r := range rs {
		if r.Tombstone {
			out = append(out, "tombstone")
		} else {
			out = append(out, r.Op)
		}
	}
	return out
}

func TestInsertUpdateDeleteTruncate(t *testing.T) {
	e := newEnv(t, "public.items")
	e.db.Exec(t, `CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int, price numeric(10,2))`)
	rn := e.start(t)
	e.db.Exec(t, `INSERT INTO items VALUES (1, 'apple', 3, 1.50), (2, 'pear', NULL, 2.25), (3, 'fig', 7, 10.00)`)
	e.db.Exec(t, `UPDATE items SET qty = 4, name = 'green apple' WHERE id = 1`)
	e.db.Exec(t, `DELETE FROM items WHERE id = 2`)
	topic := "test.public.items"
	rs := e.consume(t, []string{topic}, 20*time.Second, atLeast(6))
	if got, want := ops(rs), []string{"c", "c", "c", "u", "d", "tombstone"}; !slices.Equal(got, want) {
		t.Fatalf("ops %v, want %v\n%s", got, want, dump(rs))
	}
	sameRows(t, state(rs, topic), pgRows(t, e.db, `SELECT id, name, qty, trim_scale(price)::text AS price FROM items`, "id"))

	ins := rs[1]
	if ins.Before != nil || ins.After["name"] != "pear" || ins.After["qty"] != nil || ins.After["price"] != "2.25" {
		t.Errorf("insert of pear: before %v after %v", ins.Before, ins.After)
	}
	src := ins.Source
	for k, want := range map[string]any{"connector": "postgresql", "name": "test", "db": e.db.Name, "schema": "public", "table": "items", "snapshot": "false"} {
		if src[k] != want {
			t.Errorf("source.%s = %v, want %v", k, src[k], want)
		}
	}
	if lsn, ok := src["lsn"].(int64); !ok || lsn <= 0 {
		t.Errorf("source.lsn = %v", src["lsn"])
	}
	if tx, ok := src["txId"].(int64); !ok || tx <= 0 {
		t.Errorf("source.txId = %v", src["txId"])
	}
	if rs[0].Source["txId"] != rs[2].Source["txId"] || rs[0].Source["txId"] == rs[3].Source["txId"] {
		t.Errorf("txId: one insert transaction then an update: %v %v %v", rs[0].Source["txId"], rs[2].Source["txId"], rs[3].Source["txId"])
	}
	if d := rs[4]; d.Key["id"] != int32(2) && fmt.Sprint(d.Key["id"]) != "2" || d.After != nil || d.Before == nil || fmt.Sprint(d.Before["id"]) != "2" {
		t.Errorf("delete: key %v before %v after %v", d.Key, d.Before, d.After)
	}
	if !slices.Equal(rs[5].RawKey, rs[4].RawKey) {
		t.Errorf("tombstone key %x differs from the delete's %x", rs[5].RawKey, rs[4].RawKey)
	}

	for _, subject := range []string{topic + "-key", topic + "-value"} {
		if !e.reg.SubjectExists(subject) {
			t.Errorf("subject %s not registered", subject)
		}
	}

	e.db.Exec(t, `TRUNCATE items`)
	rs = e.consume(t, []string{topic}, 20*time.Second, atLeast(7))
	if tr := rs[6]; tr.Op != "t" || tr.Key != nil || tr.RawKey != nil || tr.Before != nil || tr.After != nil {
		t.Errorf("truncate record: %+v", tr)
	}
	rn.stop(t)
}

func TestCompositeKeysAndSeveralTables(t *testing.T) {
	e := newEnv(t, "public.a", "inventory.b")
	e.cfg.Kafka.Topics.Partitions = 3
	e.db.Exec(t, `CREATE SCHEMA inventory;
		CREATE TABLE a (id bigint PRIMARY KEY, v text);
		CREATE TABLE inventory.b (region text, n int, note text, PRIMARY KEY (region, n))`)
	e.start(t)
	for i := range 20 {
		e.db.Exec(t, fmt.Sprintf(`BEGIN; INSERT INTO a VALUES (%d, 'a%d'); INSERT INTO inventory.b VALUES ('r%d', %d, 'x'); COMMIT`, i, i, i%3, i))
	}
	e.db.Exec(t, `UPDATE inventory.b SET note = 'y' WHERE n % 2 = 0`)
	e.db.Exec(t, `DELETE FROM a WHERE id >= 15`)
	ta, tb := "test.public.a", "test.inventory.b"
	rs := e.consume(t, []string{ta, tb}, 30*time.Second, atLeast(20+20+10+5*2))
	sameRows(t, state(rs, ta), pgRows(t, e.db, `SELECT id, v FROM a`, "id"))
	sameRows(t, state(rs, tb), pgRows(t, e.db, `SELECT region, n, note FROM inventory.b`, "region", "n"))

	part := kgo.StickyKeyPartitioner(nil)
	parts := map[string]kgo.TopicPartitioner{ta: part.ForTopic(ta), tb: part.ForTopic(tb)}
	for _, r := range rs {
		if r.Key == nil {
			t.Fatalf("null key on a keyed table: %+v", r)
		}
		if want := int32(parts[r.Topic].Partition(&kgo.Record{Key: r.RawKey}, 3)); r.Partition != want {
			t.Errorf("%s key %v in partition %d, murmur2 says %d", r.Topic, r.Key, r.Partition, want)
		}
		if r.Topic == tb && (r.Key["region"] == nil || r.Key["n"] == nil || len(r.Key) != 2) {
			t.Errorf("composite key %v", r.Key)
		}
	}
}

func TestUpdateOfKeyIsDeleteAndCreate(t *testing.T) {
	e := newEnv(t, "public.k")
	e.db.Exec(t, `CREATE TABLE k (id int PRIMARY KEY, v text)`)
	e.start(t)
	e.db.Exec(t, `INSERT INTO k VALUES (1, 'one')`)
	e.db.Exec(t, `UPDATE k SET id = 2 WHERE id = 1`)
	rs := e.consume(t, []string{"test.public.k"}, 20*time.Second, atLeast(4))
	if got, want := ops(rs), []string{"c", "d", "tombstone", "c"}; !slices.Equal(got, want) {
		t.Fatalf("ops %v, want %v\n%s", got, want, dump(rs))
	}
	if fmt.Sprint(rs[1].Key["id"]) != "1" || fmt.Sprint(rs[3].Key["id"]) != "2" || rs[3].After["v"] != "one" {
		t.Fatalf("key change:\n%s", dump(rs))
	}
}

func TestReplicaIdentityFullGivesBefore(t *testing.T) {
	e := newEnv(t, "public.f")
	e.db.Exec(t, `CREATE TABLE f (id int PRIMARY KEY, v text, n int); ALTER TABLE f REPLICA IDENTITY FULL`)
	e.start(t)
	e.db.Exec(t, `INSERT INTO f VALUES (1, 'a', 10)`)
	e.db.Exec(t, `UPDATE f SET v = 'b' WHERE id = 1`)
	e.db.Exec(t, `DELETE FROM f`)
	rs := e.consume(t, []string{"test.public.f"}, 20*time.Second, atLeast(4))
	if u := rs[1]; u.Op != "u" || u.Before["v"] != "a" || fmt.Sprint(u.Before["n"]) != "10" || u.After["v"] != "b" {
		t.Errorf("update with full identity:\n%s", dump(rs))
	}
	if d := rs[2]; d.Op != "d" || d.Before["v"] != "b" || fmt.Sprint(d.Before["n"]) != "10" {
		t.Errorf("delete with full identity:\n%s", dump(rs))
	}
}

func TestTableWithoutPrimaryKey(t *testing.T) {
	e := newEnv(t, "public.logs")
	e.db.Exec(t, `CREATE TABLE logs (at timestamptz DEFAULT now(), msg text)`)
	e.start(t)
	e.db.Exec(t, `INSERT INTO logs (msg) VALUES ('one'), ('two')`)
	rs := e.consume(t, []string{"test.public.logs"}, 20*time.Second, atLeast(2))
	for i, want := range []string{"one", "two"} {
		if r := rs[i]; r.RawKey != nil || r.Op != "c" || r.After["msg"] != want {
			t.Errorf("record %d: %+v", i, r)
		}
	}
}

func TestRestartReusesSlotWithoutLoss(t *testing.T) {
	e := newEnv(t, "public.r")
	e.db.Exec(t, `CREATE TABLE r (id int PRIMARY KEY, v int)`)
	topic := "test.public.r"
	rn := e.start(t)
	e.db.Exec(t, `INSERT INTO r SELECT g, g FROM generate_series(1, 100) g`)
	e.consume(t, []string{topic}, 20*time.Second, atLeast(100))
	rn.stop(t)

	var confirmed string
	conn := e.db.Conn(t)
	if err := conn.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'flow_slot'`).Scan(&confirmed); err != nil {
		t.Fatal(err)
	}
	// Written while pgkafka is down: the slot keeps it.
	e.db.Exec(t, `INSERT INTO r SELECT g, g FROM generate_series(101, 200) g`)
	e.db.Exec(t, `UPDATE r SET v = -v WHERE id % 10 = 0`)
	rn = e.start(t)
	e.db.Exec(t, `INSERT INTO r VALUES (201, 201)`)
	rs := e.consume(t, []string{topic}, 30*time.Second, atLeast(221))
	rn.stop(t)
	sameRows(t, state(rs, topic), pgRows(t, e.db, `SELECT id, v FROM r`, "id"))
	seen := map[string]int{}
	for _, r := range rs {
		seen[fmt.Sprint(r.Op, r.Key, r.After)]++
	}
	for k, n := range seen {
		if n > 1 {
			t.Errorf("record %s delivered %d times across a clean restart", k, n)
		}
	}
	if len(rs) != 221 {
		t.Errorf("%d records, want 221", len(rs))
	}
	if confirmed == "" || confirmed == "0/0" {
		t.Errorf("slot confirmed_flush_lsn %q after a clean stop", confirmed)
	}
}

func TestFlatEnvelope(t *testing.T) {
	e := newEnv(t, "public.fl")
	e.cfg.Format.Envelope = "flat"
	e.db.Exec(t, `CREATE TABLE fl (id int PRIMARY KEY, v text)`)
	e.start(t)
	e.db.Exec(t, `INSERT INTO fl VALUES (1, 'x')`)
	e.db.Exec(t, `DELETE FROM fl`)
	rs := e.consume(t, []string{"test.public.fl"}, 20*time.Second, atLeast(3))
	if v := rs[0].Value; v["__op"] != "c" || v["v"] != "x" || v["__deleted"] != "false" {
		t.Errorf("flat insert: %v", v)
	}
	if v := rs[1].Value; v["__op"] != "d" || fmt.Sprint(v["id"]) != "1" || v["__deleted"] != "true" {
		t.Errorf("flat delete: %v", v)
	}
	if !rs[2].Tombstone {
		t.Errorf("no tombstone after the flat delete: %+v", rs[2])
	}
}

func TestTruncateNotSentToCompactedTopic(t *testing.T) {
	e := newEnv(t, "public.c")
	e.cfg.Kafka.Topics.Config = map[string]string{"cleanup.policy": "compact"}
	e.db.Exec(t, `CREATE TABLE c (id int PRIMARY KEY)`)
	e.start(t)
	e.db.Exec(t, `INSERT INTO c VALUES (1)`)
	e.db.Exec(t, `TRUNCATE c`)
	e.db.Exec(t, `INSERT INTO c VALUES (2)`)
	rs := e.consume(t, []string{"test.public.c"}, 20*time.Second, atLeast(2))
	if got := ops(rs); !slices.Equal(got, []string{"c", "c"}) {
		t.Fatalf("ops %v on a compacted topic: the truncate must be skipped", got)
	}
}

// TestUnchangedToastedValues: an update that leaves a 100 kB value alone
// carries it whole, from the old tuple under REPLICA IDENTITY FULL and from
// the TOAST reconciler's cache otherwise (toast_test.go tests each path).
func TestUnchangedToastedValues(t *testing.T) {
	e := newEnv(t, "public.wide_full", "public.dflt")
	e.db.Exec(t, `CREATE TABLE wide_full (id int PRIMARY KEY, big text, n int); ALTER TABLE wide_full REPLICA IDENTITY FULL;
		CREATE TABLE dflt (id int PRIMARY KEY, big text, n int)`)
	e.start(t)
	e.db.Exec(t, `INSERT INTO wide_full VALUES (1, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 3200) g), 0);
		INSERT INTO dflt SELECT * FROM wide_full`)
	e.db.Exec(t, `UPDATE wide_full SET n = 1; UPDATE dflt SET n = 1`)
	rs := e.consume(t, []string{"test.public.wide_full", "test.public.dflt"}, 20*time.Second, atLeast(4))
	var big string
	if err := e.db.Conn(t).QueryRow(context.Background(), `SELECT big FROM wide_full`).Scan(&big); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if got, _ := r.After["big"].(string); r.Op == "u" && got != big {
			t.Errorf("%s: the unchanged value arrived as %d bytes %.40q, want the %d bytes", r.Topic, len(got), got, len(big))
		}
	}
}

// TestUnchangedToastedArray: an unchanged TOASTed int[], which cannot carry
// the unavailable marker, arrives whole under both identities (the old
// tuple, the reconciler's cache); before the reconciler, the default
// identity stopped the capture.
func TestUnchangedToastedArray(t *testing.T) {
	e := newEnv(t, "public.arr", "public.arr2")
	e.db.Exec(t, `CREATE TABLE arr (id int PRIMARY KEY, xs int[], n int);
		ALTER TABLE arr ALTER COLUMN xs SET STORAGE EXTERNAL;
		CREATE TABLE arr2 (id int PRIMARY KEY, xs int[], n int);
		ALTER TABLE arr2 ALTER COLUMN xs SET STORAGE EXTERNAL; ALTER TABLE arr2 REPLICA IDENTITY FULL`)
	e.start(t)
	e.db.Exec(t, `INSERT INTO arr SELECT 1, array_agg(g), 0 FROM generate_series(1, 5000) g;
		INSERT INTO arr2 SELECT * FROM arr`)
	e.db.Exec(t, `UPDATE arr SET n = 1; UPDATE arr2 SET n = 1`)
	rs := e.consume(t, []string{"test.public.arr", "test.public.arr2"}, 20*time.Second, atLeast(4))
	for _, r := range rs {
		if r.Op != "u" {
			continue
		}
		xs, _ := r.After["xs"].([]any)
		if m, ok := r.After["xs"].(map[string]any); ok { // hamba/avro names the union branch "array"
			xs, _ = m["array"].([]any)
		}
		if len(xs) != 5000 || fmt.Sprint(xs[4999]) != "5000" {
			t.Errorf("%s: update with %d elements, want 5000", r.Topic, len(xs))
		}
	}
}

// TestTransactionCommitsWhenNothingWaits: a Kafka transaction commits as
// soon as no more PostgreSQL transactions wait for the producer, not at the
// end of kafka.transactionWindow, a bound only. With a window of a minute,
// each of three single-row transactions, written once the one before is
// read, reaches a read_committed consumer within half of it.
func TestTransactionCommitsWhenNothingWaits(t *testing.T) {
	e := newEnv(t, "public.events")
	e.cfg.Kafka.TransactionWindow = time.Minute
	e.db.Exec(t, `CREATE TABLE events (id int PRIMARY KEY)`)
	rn := e.start(t)
	topic := "test.public.events"
	for i := 1; i <= 3; i++ {
		e.db.Exec(t, fmt.Sprintf(`INSERT INTO events VALUES (%d)`, i))
		rs := e.consume(t, []string{topic}, 30*time.Second, atLeast(i))
		if len(rs) != i {
			t.Fatalf("after insert %d, %d records:\n%s", i, len(rs), dump(rs))
		}
	}
	rn.stop(t)
}
