package pipeline_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// isJSONRecord tells a record of format.encoding json: its key or value
// starts with '{' where Confluent framing starts with 0.
func isJSONRecord(r *kgo.Record) bool {
	return len(r.Value) > 0 && r.Value[0] == '{' || len(r.Value) == 0 && len(r.Key) > 0 && r.Key[0] == '{'
}

// jsonPayload is a JsonConverter record's payload: the record itself
// without schemas, its "payload" with them.
func jsonPayload(t *testing.T, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("JSON record %q: %v", b, err)
	}
	if p, ok := m["payload"].(map[string]any); ok && m["schema"] != nil {
		return p
	}
	return m
}

func decodeJSONRec(t *testing.T, r *kgo.Record) rec {
	t.Helper()
	x := rec{Topic: r.Topic, Partition: r.Partition, RawKey: r.Key}
	for _, h := range r.Headers {
		if x.Headers == nil {
			x.Headers = map[string]string{}
		}
		x.Headers[h.Key] = string(h.Value)
	}
	if r.Key != nil {
		x.Key = jsonPayload(t, r.Key)
	}
	if r.Value == nil {
		x.Tombstone = true
		return x
	}
	m := jsonPayload(t, r.Value)
	x.Value = m
	if op, ok := m["op"].(string); ok {
		x.Op = op
		x.Before, _ = m["before"].(map[string]any)
		x.After, _ = m["after"].(map[string]any)
		x.Source, _ = m["source"].(map[string]any)
	} else if op, ok := m["__op"].(string); ok {
		x.Op = op
	}
	return x
}

// pythonReadJSON reads what kcat prints with -f '%K %S\n%k%s' with
// python3's json module (strict: no NaN literals), renders Connect
// decimals (base64 unscaled, scale in the schema) as strings, and prints
// {"key": payload, "value": payload} per record.
const pythonReadJSON = `
import base64, decimal, json, sys
def bad(c): raise ValueError("non-JSON constant " + c)
def render(schema, v):
    if v is None: return v
    if schema.get("name") == "org.apache.kafka.connect.data.Decimal":
        u = int.from_bytes(base64.b64decode(v), "big", signed=True)
        return str(decimal.Decimal(u).scaleb(-int(schema["parameters"]["scale"])))
    t = schema["type"]
    if t == "struct": return {f["field"]: render(f, v[f["field"]]) for f in schema["fields"]}
    if t == "array": return [render(schema["items"], x) for x in v]
    if t == "map": return {k: render(schema["values"], x) for k, x in v.items()}
    return v
def read(b):
    if b is None: return None
    rec = json.loads(b, parse_constant=bad)
    assert set(rec) == {"schema", "payload"}, rec.keys()
    return render(rec["schema"], rec["payload"])
data = sys.stdin.buffer.read()
pos = 0
while pos < len(data):
    nl = data.index(b"\n", pos)
    klen, vlen = (int(x) for x in data[pos:nl].split(b" "))
    pos = nl + 1
    key = value = None
    if klen >= 0:
        key, pos = data[pos:pos + klen], pos + klen
    if vlen >= 0:
        value, pos = data[pos:pos + vlen], pos + vlen
    print(json.dumps({"key": read(key), "value": read(value)}, sort_keys=True))
`

// TestJSONEndToEnd captures a table in JSON with its Connect schemas:
// backfilled rows, then an insert, an update and a delete with its
// tombstone, and transaction metadata; nothing reaches the registry. kcat
// reads the topic; python3 -m json.tool and python3's json module (readers
// we did not write) decode every record, and the values are PostgreSQL's.
func TestJSONEndToEnd(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is needed (make deps installs it):", err)
	}
	e := newEnv(t, "public.items")
	e.cfg.Format.Encoding = "json"
	e.cfg.Format.TransactionMetadata = true
	e.db.Exec(t, `CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(8,2), at timestamptz, tags text[], doc jsonb, raw bytea, f float8)`)
	e.db.Exec(t, `ALTER TABLE items REPLICA IDENTITY FULL`)
	e.db.Exec(t, `INSERT INTO items VALUES
		(1, 'one', 12.50, '2024-06-01 12:34:56.789012+00', '{a,NULL}', '{"k": [1, 2]}', '\x00ff', 'NaN'),
		(2, 'two "quoted"', -0.01, NULL, '{}', NULL, NULL, 1.5),
		(3, E'three\nlines', 0, '1970-01-01 00:00:00+00', NULL, '"s"', '', '-Infinity')`)
	e.start(t)
	e.db.Exec(t, `INSERT INTO items VALUES (4, 'four', 999999.99, '2000-01-01 00:00:00+00', '{x}', '[]', '\xdeadbeef', 0.1);
		UPDATE items SET price = 13.25 WHERE id = 1;
		DELETE FROM items WHERE id = 2;
		SELECT pg_logical_emit_message(true, 'audit', 'hello')`)
	const topic = "test.public.items"
	messages := cluster.Major() >= 14 // pgoutput sends them from PostgreSQL 14 on
	rs := e.consume(t, []string{topic, "test.transaction", "test.message"}, 60*time.Second, func(rs []rec) bool {
		// Each topic's part of a Kafka transaction may come in a fetch of its own.
		return slices.ContainsFunc(rs, func(r rec) bool { return r.Tombstone }) && (!messages || slices.ContainsFunc(rs, func(r rec) bool { return r.Op == "m" })) &&
			slices.ContainsFunc(rs, func(r rec) bool { return r.Topic == "test.transaction" && r.Value["status"] == "END" })
	})
	var items []rec
	var txEnds int
	for _, r := range rs {
		switch r.Topic {
		case topic:
			items = append(items, r)
		case "test.message":
			// bytes are base64 in JSON: "hello"
			if m, _ := r.Value["message"].(map[string]any); fmt.Sprint(m["prefix"], " ", m["content"]) != "audit aGVsbG8=" || fmt.Sprint(r.Key) != "map[prefix:audit]" {
				t.Errorf("message: key %v value %v", r.Key, r.Value)
			}
		default:
			if r.Value["status"] == "END" {
				txEnds++
			}
		}
	}
	if got := fmt.Sprint(ops(items)); got != "[r r r c u d tombstone]" {
		t.Fatalf("records %s, want [r r r c u d tombstone]:\n%s", got, dump(items))
	}
	if txEnds == 0 {
		t.Error("no transaction END record in test.transaction")
	}
	for _, r := range items {
		if r.Op == "u" && (fmt.Sprint(r.After["id"]) != "1" || r.Value["transaction"] == nil) {
			t.Errorf("update: after %v transaction %v", r.After, r.Value["transaction"])
		}
	}

	// No registry: nothing registered.
	resp, err := http.Get(e.reg.URL() + "/subjects")
	if err != nil {
		t.Fatal(err)
	}
	subjects, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(subjects)) != "[]" {
		t.Errorf("registry subjects %s, want none", subjects)
	}

	brokers := strings.Join(e.broker.ListenAddrs(), ",")
	// python3 -m json.tool over every value (tombstones have none).
	values, err := exec.Command(kcat, "-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	var lines []string
	for _, l := range strings.Split(string(values), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	tool := exec.Command("python3", "-m", "json.tool", "--json-lines")
	tool.Stdin = strings.NewReader(strings.Join(lines, "\n"))
	if out, err := tool.CombinedOutput(); err != nil || len(lines) != 6 {
		t.Fatalf("python3 -m json.tool on %d values: %v\n%s", len(lines), err, out)
	}

	// python3's json module, values rendered by their schema.
	raw, err := exec.Command(kcat, "-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%K %S\n%k%s").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	py := exec.Command("python3", "-c", pythonReadJSON)
	py.Stdin = bytes.NewReader(raw)
	var stderr bytes.Buffer
	py.Stderr = &stderr
	out, err := py.Output()
	if err != nil {
		t.Fatalf("python3 json: %v\n%s", err, stderr.String())
	}
	type pyRec struct{ Key, Value map[string]any }
	var got []pyRec
	d := json.NewDecoder(bytes.NewReader(out))
	d.UseNumber()
	for d.More() {
		var r pyRec
		if err := d.Decode(&r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if len(got) != 7 {
		t.Fatalf("python3 read %d records, want 7:\n%s", len(got), out)
	}
	// What PostgreSQL says each row is, in the JSON encoding's terms.
	conn := e.db.Conn(t)
	want := func(id int, afterUpdate bool) string {
		t.Helper()
		var s string
		err := conn.QueryRow(t.Context(), `SELECT json_build_object('id', id, 'name', name, 'price', price::numeric(8,2)::text,
			'at', (extract(epoch FROM date_trunc('second', at))::bigint * 1000000 + mod(extract(microseconds FROM at)::bigint, 1000000)),
			'tags', tags, 'doc', doc::text, 'raw', encode(raw, 'base64'),
			'f', CASE WHEN f = 'NaN' THEN to_json('NaN'::text) WHEN f = '-Infinity' THEN to_json('-Infinity'::text) ELSE to_json(f) END)::text
			FROM (VALUES (1, 'one', CASE WHEN $2 THEN 13.25 ELSE 12.50 END::numeric(8,2), '2024-06-01 12:34:56.789012+00'::timestamptz, '{a,NULL}'::text[], '{"k": [1, 2]}'::jsonb, '\x00ff'::bytea, 'NaN'::float8),
			             (2, 'two "quoted"', -0.01, NULL, '{}', NULL, NULL, 1.5),
			             (3, E'three\nlines', 0, '1970-01-01 00:00:00+00', NULL, '"s"', '', '-Infinity'),
			             (4, 'four', 999999.99, '2000-01-01 00:00:00+00', '{x}', '[]', '\xdeadbeef', 0.1)) v(id, name, price, at, tags, doc, raw, f)
			WHERE id = $1`, id, afterUpdate).Scan(&s)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		dd := json.NewDecoder(strings.NewReader(s))
		dd.UseNumber()
		if err := dd.Decode(&m); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	canonJ := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	for i, w := range []struct {
		id     int
		update bool
		image  string
	}{{1, false, "after"}, {2, false, "after"}, {3, false, "after"}, {4, false, "after"}, {1, true, "after"}, {2, false, "before"}} {
		r := got[i]
		if g := canonJ(r.Key); g != fmt.Sprintf(`{"id":%d}`, w.id) {
			t.Errorf("record %d: key %s", i, g)
		}
		if g, wv := canonJ(r.Value[w.image]), want(w.id, w.update); g != wv {
			t.Errorf("record %d (%s of row %d):\n got %s\nwant %s", i, w.image, w.id, g, wv)
		}
		for _, f := range []string{"before", "after", "op", "source", "ts_ms", "transaction"} {
			if _, ok := r.Value[f]; !ok {
				t.Errorf("record %d: payload has no %q (Flink's debezium-json reads it)", i, f)
			}
		}
	}
	if got[6].Value != nil || canonJ(got[6].Key) != `{"id":2}` {
		t.Errorf("tombstone: key %v value %v", got[6].Key, got[6].Value)
	}
}
