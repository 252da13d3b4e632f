package pipeline_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pgkafka/pgkafka/pipeline"
	"github.com/pgkafka/pgkafka/schema"
)

// idRec is a record read back with the schema ids of its framing.
type idRec struct {
	rec
	keyID, valueID int
	rawValue       []byte
}

// consumeIDs reads topic (read_committed) until it holds n records
// (tombstones included), decoding each with the schema its id names, which
// the decoder fetches from the registry by id.
func (e *env) consumeIDs(t *testing.T, topic string, n int) []idRec {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	dec, err := schema.NewDecoder(schema.RegistryConfig{URL: e.reg.URL()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []idRec
	for len(out) < n {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			var rs []rec
			for _, r := range out {
				rs = append(rs, r.rec)
			}
			t.Fatalf("%d records of %d read from %s:\n%s", len(out), n, topic, dump(rs))
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			x := idRec{rec: decodeRec(t, dec, r), keyID: frameID(r.Key), valueID: frameID(r.Value), rawValue: r.Value}
			out = append(out, x)
		}
	}
	return out
}

func frameID(b []byte) int {
	if len(b) < 5 {
		return 0
	}
	return int(binary.BigEndian.Uint32(b[1:5]))
}

// versions returns a subject's registered versions, in order.
func (e *env) versions(subject string) []sr.SubjectSchema {
	var out []sr.SubjectSchema
	for v := 1; ; v++ {
		ss, ok := e.reg.GetSchema(subject, v)
		if !ok {
			return out
		}
		out = append(out, ss)
	}
}

// versionOf returns the version of subject whose id is id (0: none).
func versionOf(vs []sr.SubjectSchema, id int) int {
	for _, v := range vs {
		if v.ID == id {
			return v.Version
		}
	}
	return 0
}

// checkChain fails unless each version of subject can read the data of the
// one before (BACKWARD), as a real registry would demand.
func checkChain(t *testing.T, subject string, vs []sr.SubjectSchema) {
	t.Helper()
	for i := 1; i < len(vs); i++ {
		if err := schema.CheckBackward(vs[i-1].Schema.Schema, vs[i].Schema.Schema); err != nil {
			t.Errorf("%s version %d cannot read version %d: %v", subject, vs[i].Version, vs[i-1].Version, err)
		}
	}
}

// TestSchemaChangesMidStream runs each compatible change while streaming,
// rows before and after: every record decodes with the schema its id names,
// each change registers one BACKWARD-compatible version (none for a new
// enum label or SET NOT NULL), and the topic ends equal to the table.
func TestSchemaChangesMidStream(t *testing.T) {
	e := newEnv(t, "public.t")
	e.db.Exec(t, `CREATE TYPE mood AS ENUM ('sad', 'ok')`)
	e.db.Exec(t, `CREATE TABLE t (id int PRIMARY KEY, a int, b text NOT NULL, m mood)`)
	e.db.Exec(t, `INSERT INTO t VALUES (1, 10, 'one', 'sad'), (2, NULL, 'two', 'ok')`)
	e.start(t)
	topic := "test.public.t"
	subject := topic + "-value"

	// Each step: DDL (none for the first), then rows, then the value version
	// the rows must carry.
	steps := []struct {
		name    string
		ddl     string
		rows    string
		version int
	}{
		{"start", ``, `INSERT INTO t VALUES (3, 30, 'three', 'ok')`, 1},
		{"add nullable column", `ALTER TABLE t ADD COLUMN c text`, `INSERT INTO t VALUES (4, 40, 'four', 'sad', 'cee')`, 2},
		{"add NOT NULL column with a default", `ALTER TABLE t ADD COLUMN d int NOT NULL DEFAULT 7`, `INSERT INTO t (id, a, b, d) VALUES (5, 50, 'five', 8), (6, 60, 'six', DEFAULT)`, 3},
		{"add nullable column with a default", `ALTER TABLE t ADD COLUMN e text DEFAULT 'x'`, `INSERT INTO t (id, b) VALUES (7, 'seven')`, 4},
		{"drop column", `ALTER TABLE t DROP COLUMN c`, `INSERT INTO t (id, b, e) VALUES (8, 'eight', 'y')`, 5},
		{"widen int to bigint", `ALTER TABLE t ALTER COLUMN a TYPE bigint`, `INSERT INTO t (id, a, b) VALUES (9, 5000000000, 'nine')`, 6},
		{"rename column", `ALTER TABLE t RENAME COLUMN b TO bee`, `INSERT INTO t (id, bee) VALUES (10, 'ten')`, 7},
		{"new enum label", `ALTER TYPE mood ADD VALUE 'great'`, `INSERT INTO t (id, bee, m) VALUES (11, 'eleven', 'great')`, 7},
		{"set not null", `ALTER TABLE t ALTER COLUMN e SET NOT NULL`, `INSERT INTO t (id, a, bee) VALUES (12, 120, 'twelve')`, 7},
	}
	all := e.consumeIDs(t, topic, 2) // the backfill
	for _, st := range steps {
		if st.ddl != "" {
			e.db.Exec(t, st.ddl)
		}
		e.db.Exec(t, st.rows)
		n := len(all)
		all = e.consumeIDs(t, topic, n+countRows(t, st.rows))
		// Wait for the step's records before the next DDL, so the catalog
		// the serializer reads is the one of this step.
		vs := e.versions(subject)
		for _, r := range all[n:] {
			if got := versionOf(vs, r.valueID); got != st.version {
				t.Errorf("%s: record of key %v has value schema id %d, version %d; want version %d", st.name, r.Key, r.valueID, got, st.version)
			}
		}
	}
	// Every row once more, in the last schema, to compare with the table.
	e.db.Exec(t, `UPDATE t SET bee = bee`)
	all = e.consumeIDs(t, topic, len(all)+12)

	vs := e.versions(subject)
	if len(vs) != 7 {
		for _, v := range vs {
			t.Logf("version %d: %s", v.Version, v.Schema.Schema)
		}
		t.Fatalf("%d versions of %s, want 7", len(vs), subject)
	}
	checkChain(t, subject, vs)
	if kv := e.versions(topic + "-key"); len(kv) != 1 {
		t.Errorf("%d key versions, want 1", len(kv))
	}
	var rs []rec
	for _, r := range all {
		rs = append(rs, r.rec)
	}
	sameRows(t, state(rs, topic), pgRows(t, e.db, `SELECT id, a, bee, m::text AS m, d, e FROM t`, "id"))

	// Version 3's d has the default PostgreSQL gave the older rows: row 1
	// as backfilled (version 1), read with version 3, has d = 7, as the
	// table says.
	first := all[0]
	if first.Op != "r" || fmt.Sprint(first.Key["id"]) != "1" {
		t.Fatalf("first record: %v %v", first.Op, first.Key)
	}
	if got := readAs(t, vs[0].Schema.Schema, vs[2].Schema.Schema, first.rawValue); fmt.Sprint(got["d"]) != "7" {
		t.Errorf("row 1 of version 1 read with version 3: d = %v, want 7 (the table's default)", got["d"])
	}
	// Version 7 carries b's former name, so it reads bee from older data.
	byID := func(id string) idRec {
		for _, r := range all {
			if fmt.Sprint(r.Key["id"]) == id {
				return r
			}
		}
		t.Fatalf("no record of id %s", id)
		return idRec{}
	}
	if got := readAs(t, vs[5].Schema.Schema, vs[6].Schema.Schema, byID("9").rawValue); got["bee"] != "nine" {
		t.Errorf("row 9 of version 6 read with version 7: bee = %v, want the value written as b", got["bee"])
	}
	if !strings.Contains(vs[6].Schema.Schema, `"name":"bee","aliases":["b"]`) {
		t.Errorf("bee has no alias b: %s", vs[6].Schema.Schema)
	}
	// A column nullable in an earlier version stays nullable (SET NOT NULL
	// registers nothing new).
	if !strings.Contains(vs[6].Schema.Schema, `{"name":"e","type":["null","string"],"default":null}`) {
		t.Errorf("e not nullable in the last version: %s", vs[6].Schema.Schema)
	}
}

// countRows returns the number of rows an INSERT ... VALUES statement has.
func countRows(t *testing.T, insert string) int {
	t.Helper()
	_, values, ok := strings.Cut(insert, "VALUES")
	if !ok {
		t.Fatalf("not an INSERT ... VALUES: %s", insert)
	}
	return strings.Count(values, "(")
}

// readAs decodes a framed value written with schema writer as schema reader
// reads it (Avro schema resolution), and returns its after image.
func readAs(t *testing.T, writer, reader string, framed []byte) map[string]any {
	t.Helper()
	w, err := avro.ParseWithCache(writer, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := avro.ParseWithCache(reader, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	resolved, err := avro.NewSchemaCompatibility().Resolve(r, w)
	if err != nil {
		t.Fatalf("resolving: %v", err)
	}
	var v any
	if err := avro.Unmarshal(resolved, framed[5:], &v); err != nil {
		t.Fatalf("decoding with the resolved schema: %v", err)
	}
	after, _ := plain(v).(map[string]any)["after"].(map[string]any)
	return after
}

// TestSchemaChangeMidTransaction: a Relation message in the middle of a
// transaction (and so of a batch): the records before it keep the old
// schema's id, those after carry the new one.
func TestSchemaChangeMidTransaction(t *testing.T) {
	e := newEnv(t, "public.t")
	e.db.Exec(t, `CREATE TABLE t (id int PRIMARY KEY, a text)`)
	e.start(t)
	topic := "test.public.t"
	e.db.Exec(t, `BEGIN; INSERT INTO t VALUES (1, 'x'), (2, 'y'); ALTER TABLE t ADD COLUMN n int; INSERT INTO t VALUES (3, 'z', 3), (4, 'w', 4); COMMIT`)
	rs := e.consumeIDs(t, topic, 4)
	vs := e.versions(topic + "-value")
	if len(vs) != 2 {
		t.Fatalf("%d versions, want 2", len(vs))
	}
	for i, r := range rs {
		want := 1 + i/2
		if got := versionOf(vs, r.valueID); got != want {
			t.Errorf("record %d (key %v): version %d, want %d", i, r.Key, got, want)
		}
		if _, has := r.After["n"]; has != (want == 2) {
			t.Errorf("record %d: after %v", i, r.After)
		}
	}
	if rs[0].Source["txId"] != rs[3].Source["txId"] {
		t.Error("the transaction's records have different txIds")
	}
	checkChain(t, topic+"-value", vs)
}

// TestSchemaChangeIncompatible: text to integer cannot be read by Avro
// resolution. stop (the default) stops the capture with the table, subject,
// field, LSN and the way out, producing nothing of the change; register
// sets the subject's compatibility to NONE and registers the new version.
func TestSchemaChangeIncompatible(t *testing.T) {
	for _, policy := range []string{"stop", "register"} {
		t.Run(policy, func(t *testing.T) {
			e := newEnv(t, "public.t")
			e.cfg.SchemaRegistry.OnIncompatible = policy
			e.db.Exec(t, `CREATE TABLE t (id int PRIMARY KEY, b text NOT NULL)`)
			rn := e.start(t)
			topic := "test.public.t"
			e.db.Exec(t, `INSERT INTO t VALUES (1, '11')`)
			e.consumeIDs(t, topic, 1)
			e.db.Exec(t, `ALTER TABLE t ALTER COLUMN b TYPE integer USING b::integer`)
			e.db.Exec(t, `INSERT INTO t VALUES (2, 22)`)

			if policy == "stop" {
				var err error
				select {
				case err = <-rn.done:
					rn.done <- err
				case <-time.After(30 * time.Second):
					t.Fatal("the capture did not stop")
				}
				var inc *schema.IncompatibleError
				if !errors.As(err, &inc) || pipeline.Retryable(err) {
					t.Fatalf("error %v (%T), retryable %v: want a final *schema.IncompatibleError", err, err, pipeline.Retryable(err))
				}
				for _, want := range []string{"public.t", topic + "-value", "version 1", "field Value.b", "at LSN", "schemaRegistry.onIncompatible: register"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error does not say %q: %v", want, err)
					}
				}
				t.Log(err)
				if vs := e.versions(topic + "-value"); len(vs) != 1 {
					t.Errorf("%d versions registered, want 1", len(vs))
				}
				// Nothing of the change reached Kafka.
				e.db.Exec(t, `INSERT INTO t VALUES (3, 33)`) // (not captured)
				time.Sleep(500 * time.Millisecond)
				rs := e.consume(t, []string{topic}, 10*time.Second, atLeast(1))
				if len(rs) != 1 {
					t.Errorf("%d records, want the one before the change:\n%s", len(rs), dump(rs))
				}
				return
			}

			rs := e.consumeIDs(t, topic, 2)
			vs := e.versions(topic + "-value")
			if len(vs) != 2 || versionOf(vs, rs[0].valueID) != 1 || versionOf(vs, rs[1].valueID) != 2 {
				t.Fatalf("versions %d; records' ids %d %d", len(vs), rs[0].valueID, rs[1].valueID)
			}
			if err := schema.CheckBackward(vs[0].Schema.Schema, vs[1].Schema.Schema); err == nil {
				t.Error("text to integer found BACKWARD compatible")
			}
			if got := rs[1].After["b"]; got != 22 {
				t.Errorf("b = %v (%T), want int 22", got, got)
			}
			cl, err := sr.NewClient(sr.URLs(e.reg.URL()))
			if err != nil {
				t.Fatal(err)
			}
			res := cl.Compatibility(context.Background(), topic+"-value")
			if res[0].Err != nil || res[0].Level != sr.CompatNone {
				t.Errorf("compatibility of the value subject: %v %v, want NONE", res[0].Level, res[0].Err)
			}
			rn.stop(t)
		})
	}
}

// TestSchemaChangePrimaryKey: a new primary key changes every row's Kafka
// key; stop names the key subject and its fields.
func TestSchemaChangePrimaryKey(t *testing.T) {
	e := newEnv(t, "public.t")
	e.db.Exec(t, `CREATE TABLE t (id int PRIMARY KEY, r text NOT NULL)`)
	rn := e.start(t)
	topic := "test.public.t"
	e.db.Exec(t, `INSERT INTO t VALUES (1, 'eu')`)
	e.consumeIDs(t, topic, 1)
	e.db.Exec(t, `ALTER TABLE t DROP CONSTRAINT t_pkey, ADD PRIMARY KEY (id, r)`)
	e.db.Exec(t, `INSERT INTO t VALUES (2, 'us')`)
	select {
	case err := <-rn.done:
		rn.done <- err
		for _, want := range []string{topic + "-key", "key fields (id, r) were (id)", "at LSN"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error does not say %q: %v", want, err)
			}
		}
		if slices.ContainsFunc(e.versions(topic+"-key"), func(v sr.SubjectSchema) bool { return v.Version > 1 }) {
			t.Error("a second key version was registered")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the capture did not stop")
	}
}

// TestSchemaChangeBurst: a migration's statements run back to back, faster
// than the capture reads them, in one transaction and then in several:
// ADD COLUMN c date, ADD COLUMN d text NOT NULL DEFAULT 'dflt', DROP
// COLUMN a, ALTER COLUMN b TYPE bigint, each followed by an insert. When
// the serializer reads the catalog for the shape with d, the type change
// has rewritten the table and PostgreSQL has dropped d's missing value; d
// still gets its constant default as its Avro default, so every version is
// BACKWARD compatible with the one before, the capture goes on, and an old
// record read with the newest schema has d = 'dflt', as the table says.
func TestSchemaChangeBurst(t *testing.T) {
	e := newEnv(t, "public.m1", "public.m2")
	burst := func(table string) string {
		return fmt.Sprintf(`ALTER TABLE %[1]s ADD COLUMN c date; INSERT INTO %[1]s (id, a, b, c) VALUES (2, 20, 200, '2024-01-02');
ALTER TABLE %[1]s ADD COLUMN d text NOT NULL DEFAULT 'dflt'; INSERT INTO %[1]s (id, a, b, d) VALUES (3, 30, 300, 'three');
ALTER TABLE %[1]s DROP COLUMN a; INSERT INTO %[1]s (id, b) VALUES (4, 400);
ALTER TABLE %[1]s ALTER COLUMN b TYPE bigint; INSERT INTO %[1]s (id, b) VALUES (5, 5000000000);`, table)
	}
	for _, table := range []string{"m1", "m2"} {
		e.db.Exec(t, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, a int, b int NOT NULL); INSERT INTO %[1]s VALUES (1, 10, 100)`, table))
	}
	rn := e.start(t)
	// One transaction (the simple protocol runs a multi-statement string
	// as one), then the same statements each in its own.
	e.db.Exec(t, burst("m1"))
	conn := e.db.Conn(t)
	for stmt := range strings.SplitSeq(burst("m2"), ";") {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			if _, err := conn.Exec(context.Background(), stmt); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, table := range []string{"m1", "m2"} {
		topic := "test.public." + table
		// Every row once more, in the last shape, to compare with the table.
		e.db.Exec(t, `UPDATE `+table+` SET b = b`)
		all := e.consumeIDs(t, topic, 10)
		var rs []rec
		for _, r := range all {
			rs = append(rs, r.rec)
		}
		sameRows(t, state(rs, topic), pgRows(t, e.db, `SELECT id, b, c, d FROM `+table, "id"))
		vs := e.versions(topic + "-value")
		checkChain(t, topic+"-value", vs)
		if len(vs) < 2 {
			t.Fatalf("%s: %d value versions", topic, len(vs))
		}
		first, last := all[0], vs[len(vs)-1]
		if fmt.Sprint(first.Key["id"]) != "1" {
			t.Fatalf("%s: first record of key %v", topic, first.Key)
		}
		if got := readAs(t, vs[0].Schema.Schema, last.Schema.Schema, first.rawValue); got["d"] != "dflt" {
			t.Errorf("%s: row 1 of version 1 read with version %d: d = %v, want dflt (the table's default)", topic, last.Version, got["d"])
		}
	}
	rn.stop(t)
}
