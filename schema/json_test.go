package schema

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// jsonFamilies is one column of each type family, its text and the value
// the JSON payload must hold (as Go's encoding/json reads python3's
// rewriting of it: numbers as json.Number, decimals as their string).
func jsonFamilies() (cols []Column, row []Datum, want map[string]string) {
	micros := func(s string) string {
		tm, err := time.Parse("2006-01-02 15:04:05.999999", s)
		if err != nil {
			panic(err)
		}
		return strconv.FormatInt(tm.UnixMicro(), 10)
	}
	fams := []struct {
		name, text, want string
		t                Type
		nullable         bool
	}{
		{"id", "7", `7`, typ("int4"), false},
		{"b", "t", `true`, typ("bool"), false},
		{"s", "-32768", `-32768`, typ("int2"), false},
		{"l", "9223372036854775807", `9223372036854775807`, typ("int8"), false},
		{"l53", "9007199254740993", `9007199254740993`, typ("int8"), false},
		{"o", "4294967295", `4294967295`, typ("oid"), false},
		{"f4", "1.5", `1.5`, typ("float4"), false},
		{"f4nan", "NaN", `"NaN"`, typ("float4"), false},
		{"f8", "0.1", `0.1`, typ("float8"), false},
		{"f8inf", "-Infinity", `"-Infinity"`, typ("float8"), false},
		{"f8big", "1e+300", `1e+300`, typ("float8"), false},
		{"d", "-1234.50", `"-1234.50"`, numericType(10, 2), false},
		{"dz", "0.00", `"0.00"`, numericType(10, 2), false},
		{"n", "NaN", `"NaN"`, Type{Name: "numeric", Category: 'N', Typmod: -1}, false},
		{"j", `{"a": "x\"y"}`, `"{\"a\": \"x\\\"y\"}"`, typ("jsonb"), false},
		{"by", `\x00ff`, `"AP8="`, typ("bytea"), false},
		{"u", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`, typ("uuid"), false},
		{"dt", "2024-06-01", `19875`, typ("date"), false},
		{"dtinf", "infinity", `2147483647`, typ("date"), false},
		{"tm", "12:34:56.789012", `45296789012`, typ("time"), false},
		{"ts", "2024-06-01 12:34:56.789012", micros("2024-06-01 12:34:56.789012"), typ("timestamp"), false},
		{"tz", "2024-06-01 12:34:56.789012+00", micros("2024-06-01 12:34:56.789012"), typ("timestamptz"), false},
		{"tzinf", "-infinity", `-9223372036854775808`, typ("timestamptz"), false},
		{"iv", "P1Y2M3DT4H5M6.789S", `{"days":3,"micros":14706789000,"months":14}`, typ("interval"), false},
		{"a", "{1,NULL,3}", `[1,null,3]`, arrayOf(typ("int4")), false},
		{"ta", `{"a,b",NULL,"c\"d"}`, `["a,b",null,"c\"d"]`, arrayOf(typ("text")), false},
		{"h", `"a"=>"1", "b"=>NULL`, `{"a":"1","b":null}`, typ("hstore"), false},
		{"tx", "line1\nq\"uote\\ é \x01 ☃", `"line1\nq\"uote\\ é \u0001 ☃"`, typ("text"), false},
		{"e", "happy", `"happy"`, Type{Name: "mood", Category: 'E'}, false},
		{"nul", "", `null`, typ("text"), true},
	}
	want = map[string]string{}
	for _, f := range fams {
		cols = append(cols, Column{Name: f.name, Type: f.t, Nullable: f.nullable})
		d := Datum{Text: []byte(f.text)}
		if f.name == "nul" {
			d = Datum{Null: true}
		}
		row = append(row, d)
		want[f.name] = f.want
	}
	return cols, row, want
}

func jsonCodec(t testing.TB, tbl Table, env Envelope, schemas bool) *Codec {
	t.Helper()
	c, err := NewCodec(tbl, FormatConfig{Envelope: env.String(), Encoding: "json", JSONSchemas: &schemas}, testSource)
	if err != nil {
		t.Fatalf("NewCodec: %v", err)
	}
	return c
}

// pythonJSON reads lines of JSON with python3's json module, strictly (no
// NaN or Infinity literals), and prints each back with decimals (Connect's
// Decimal: base64 of the unscaled value, the scale in the schema) as their
// string, per the schema when the record has one.
const pythonJSON = `
import base64, decimal, json, sys
def bad(c): raise ValueError("non-JSON constant " + c)
def render(schema, v):
    if v is None or schema is None: return v
    t = schema["type"]
    if schema.get("name") == "org.apache.kafka.connect.data.Decimal":
        u = int.from_bytes(base64.b64decode(v), "big", signed=True)
        return str(decimal.Decimal(u).scaleb(-int(schema["parameters"]["scale"])))
    if t == "struct": return {f["field"]: render(f, v[f["field"]]) for f in schema["fields"]}
    if t == "array": return [render(schema["items"], x) for x in v]
    if t == "map": return {k: render(schema["values"], x) for k, x in v.items()}
    return v
for line in sys.stdin:
    rec = json.loads(line, parse_constant=bad)
    if isinstance(rec, dict) and set(rec) == {"schema", "payload"}:
        rec = {"schema": rec["schema"], "payload": render(rec["schema"], rec["payload"])}
    print(json.dumps(rec, sort_keys=True, ensure_ascii=False))
`

func readByPython(t *testing.T, records ...[]byte) []map[string]any {
	t.Helper()
	var in bytes.Buffer
	for _, r := range records {
		if bytes.ContainsAny(r, "\n") {
			t.Fatalf("record holds a raw newline: %s", r)
		}
		in.Write(r)
		in.WriteByte('\n')
	}
	cmd := exec.Command("python3", "-c", pythonJSON)
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 json: %v\n%s\ninput:\n%s", err, stderr.String(), in.String())
	}
	var got []map[string]any
	d := json.NewDecoder(bytes.NewReader(out))
	d.UseNumber()
	for d.More() {
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	if len(got) != len(records) {
		t.Fatalf("python3 read %d records, want %d", len(got), len(records))
	}
	return got
}

func canon(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestJSONReadByPython encodes every type family in the Debezium envelope,
// with schemas and without, and has python3's json module read the records:
// every value as the README states, the Connect schema naming the semantic
// types, the envelope's fields where Flink's debezium-json and RisingWave's
// debezium_json look for them.
func TestJSONReadByPython(t *testing.T) {
	cols, row, want := jsonFamilies()
	tbl := testTable(cols, []int{0})
	for _, schemas := range []bool{true, false} {
		c := jsonCodec(t, tbl, EnvelopeDebezium, schemas)
		ev := &Event{Op: OpUpdate, Before: row, After: row, TsMs: 1717245296789, TxID: 1234, LSN: 0x16B3748, NowMs: 1717245296800,
			Tx: &TxBlock{ID: "1234:23803720", TotalOrder: 3, DataCollectionOrder: 2}}
		v, err := c.AppendValue([]byte("prefix"), ev)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(v, []byte("prefix{")) {
			t.Fatalf("value %q: want the prefix kept and JSON after it (no Confluent framing)", v[:min(len(v), 20)])
		}
		k, err := c.AppendKey(nil, row)
		if err != nil {
			t.Fatal(err)
		}
		got := readByPython(t, v[len("prefix"):], k)
		value, key := got[0], got[1]
		if schemas {
			vs, _ := value["schema"].(map[string]any)
			if vs["type"] != "struct" || vs["name"] != "shop.public.orders.Envelope" {
				t.Errorf("value schema %s", canon(t, vs))
			}
			fields := map[string]map[string]any{}
			for _, f := range vs["fields"].([]any) {
				fields[f.(map[string]any)["field"].(string)] = f.(map[string]any)
			}
			after := map[string]map[string]any{}
			for _, f := range fields["after"]["fields"].([]any) {
				after[f.(map[string]any)["field"].(string)] = f.(map[string]any)
			}
			for col, w := range map[string]string{
				"d":   `{"field":"d","name":"org.apache.kafka.connect.data.Decimal","optional":false,"parameters":{"connect.decimal.precision":"10","scale":"2"},"type":"bytes","version":1}`,
				"tz":  `{"field":"tz","name":"io.debezium.time.MicroTimestamp","optional":false,"type":"int64","version":1}`,
				"dt":  `{"field":"dt","name":"io.debezium.time.Date","optional":false,"type":"int32","version":1}`,
				"j":   `{"field":"j","name":"io.debezium.data.Json","optional":false,"type":"string"}`,
				"a":   `{"field":"a","items":{"optional":true,"type":"int32"},"optional":false,"type":"array"}`,
				"nul": `{"field":"nul","optional":true,"type":"string"}`,
				"f8":  `{"field":"f8","optional":false,"type":"float64"}`,
			} {
				if g := canon(t, after[col]); g != w {
					t.Errorf("schema of %s:\n got %s\nwant %s", col, g, w)
				}
			}
			if fields["after"]["optional"] != true || fields["op"]["type"] != "string" || fields["source"]["name"] != SourceFullName {
				t.Errorf("envelope schema fields: after %v op %v source %v", fields["after"], fields["op"], fields["source"]["name"])
			}
			value = value["payload"].(map[string]any)
			ks := key["schema"].(map[string]any)
			if ks["name"] != "shop.public.orders.Key" || ks["type"] != "struct" {
				t.Errorf("key schema %s", canon(t, ks))
			}
			key = key["payload"].(map[string]any)
		} else if _, ok := value["schema"]; ok {
			t.Errorf("schemas off, but the value has a schema")
		}
		if g := canon(t, key); g != `{"id":7}` {
			t.Errorf("key %s, want {\"id\":7}", g)
		}
		// Flink's debezium-json and RisingWave's debezium_json read these.
		for _, f := range []string{"before", "after", "op", "source", "ts_ms", "transaction"} {
			if _, ok := value[f]; !ok {
				t.Errorf("payload has no %q", f)
			}
		}
		if value["op"] != "u" || canon(t, value["ts_ms"]) != "1717245296800" {
			t.Errorf("op %v ts_ms %v", value["op"], value["ts_ms"])
		}
		src := value["source"].(map[string]any)
		if g, w := canon(t, src), `{"connector":"postgresql","db":"postgres","lsn":23803720,"name":"shop","schema":"public","sequence":null,"snapshot":"false","table":"orders","ts_ms":1717245296789,"txId":1234,"version":"0.1.0","xmin":null}`; g != w {
			t.Errorf("source\n got %s\nwant %s", g, w)
		}
		if g, w := canon(t, value["transaction"]), `{"data_collection_order":2,"id":"1234:23803720","total_order":3}`; g != w {
			t.Errorf("transaction %s, want %s", g, w)
		}
		for _, img := range []string{"before", "after"} {
			m := value[img].(map[string]any)
			if len(m) != len(want) {
				t.Errorf("%s has %d fields, want %d", img, len(m), len(want))
			}
			for col, w := range want {
				if !schemas && strings.HasPrefix(col, "d") && col != "dt" && col != "dtinf" {
					continue // decimals are base64 without the schema: checked below
				}
				if g := canon(t, m[col]); g != w {
					t.Errorf("schemas %v: %s.%s = %s, want %s", schemas, img, col, g, w)
				}
			}
			if !schemas && m["d"] != "/h3G" {
				t.Errorf("decimal -1234.50 without schema: %v, want base64 of the unscaled -123450 (/h3G)", m["d"])
			}
		}
	}
}

// TestJSONDecimalString: decimalHandling string writes the text, which
// every JSON reader takes as is.
func TestJSONDecimalString(t *testing.T) {
	tbl := testTable([]Column{{Name: "id", Type: typ("int4")}, {Name: "d", Type: numericType(10, 2)}}, []int{0})
	f := false
	c, err := NewCodec(tbl, FormatConfig{Encoding: "json", JSONSchemas: &f, DecimalHandling: "string"}, testSource)
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.AppendValue(nil, &Event{Op: OpCreate, After: datums("1", "-1234.50"), TxID: -1, LSN: -1})
	if err != nil {
		t.Fatal(err)
	}
	got := readByPython(t, v)[0]
	if g := canon(t, got["after"]); g != `{"d":"-1234.50","id":1}` {
		t.Errorf("after %s", g)
	}
}

// TestJSONFlatTruncateKeyTag: the flat envelope, a truncate (both images
// null), and a routed table's key with __dbz__physicalTableIdentifier.
func TestJSONFlatTruncateKeyTag(t *testing.T) {
	cols := []Column{{Name: "id", Type: typ("int8")}, {Name: "note", Type: typ("text"), Nullable: true}}
	tbl := testTable(cols, []int{0})
	tbl.KeyTag = KeyTag{Field: "__dbz__physicalTableIdentifier", Value: "public.orders_2024"}
	off := false
	flat, err := NewCodec(tbl, FormatConfig{Envelope: "flat", Encoding: "json", JSONSchemas: &off}, testSource)
	if err != nil {
		t.Fatal(err)
	}
	del, err := flat.AppendValue(nil, &Event{Op: OpDelete, Before: datums("9", "x"), TxID: -1, LSN: 77})
	if err != nil {
		t.Fatal(err)
	}
	key, err := flat.AppendKey(nil, datums("9", "x"))
	if err != nil {
		t.Fatal(err)
	}
	deb := jsonCodec(t, tbl, EnvelopeDebezium, true)
	trunc, err := deb.AppendValue(nil, &Event{Op: OpTruncate, TxID: 5, LSN: 6})
	if err != nil {
		t.Fatal(err)
	}
	got := readByPython(t, del, key, trunc)
	if g, w := canon(t, got[0]), `{"__deleted":"true","__lsn":77,"__op":"d","id":9,"note":"x"}`; g != w {
		t.Errorf("flat delete\n got %s\nwant %s", g, w)
	}
	if g, w := canon(t, got[1]), `{"__dbz__physicalTableIdentifier":"public.orders_2024","id":9}`; g != w {
		t.Errorf("key\n got %s\nwant %s", g, w)
	}
	p := got[2]["payload"].(map[string]any)
	if p["op"] != "t" || p["before"] != nil || p["after"] != nil {
		t.Errorf("truncate payload %s", canon(t, p))
	}
	if deb.JSON() != true || flat.KeySchema() == "" {
		t.Errorf("JSON() %v", deb.JSON())
	}
}

// TestJSONUnavailableAndZero: an unchanged TOAST value is Debezium's marker;
// a key-only delete's nulls in non-nullable columns are the zero values.
func TestJSONUnavailableAndZero(t *testing.T) {
	cols := []Column{{Name: "id", Type: typ("int4")}, {Name: "big", Type: typ("text")}, {Name: "ts", Type: typ("timestamptz")}, {Name: "iv", Type: typ("interval")}}
	c := jsonCodec(t, testTable(cols, []int{0}), EnvelopeDebezium, false)
	upd, err := c.AppendValue(nil, &Event{Op: OpUpdate, After: []Datum{{Text: []byte("1")}, {Unchanged: true}, {Text: []byte("2024-01-01 00:00:00+00")}, {Text: []byte("PT0S")}}, TxID: -1, LSN: -1})
	if err != nil {
		t.Fatal(err)
	}
	del, err := c.AppendValue(nil, &Event{Op: OpDelete, Before: []Datum{{Text: []byte("1")}, {Null: true}, {Null: true}, {Null: true}}, TxID: -1, LSN: -1})
	if err != nil {
		t.Fatal(err)
	}
	got := readByPython(t, upd, del)
	if g, w := canon(t, got[0]["after"]), `{"big":"`+UnavailableValue+`","id":1,"iv":{"days":0,"micros":0,"months":0},"ts":1704067200000000}`; g != w {
		t.Errorf("update after\n got %s\nwant %s", g, w)
	}
	if g, w := canon(t, got[1]["before"]), `{"big":"","id":1,"iv":{"days":0,"micros":0,"months":0},"ts":0}`; g != w {
		t.Errorf("delete before\n got %s\nwant %s", g, w)
	}
}

func TestJSONConfig(t *testing.T) {
	for _, tc := range []struct {
		f    FormatConfig
		want string
	}{
		{FormatConfig{Encoding: "xml"}, `format.encoding: "xml" is not one of avro, json`},
		{FormatConfig{Encoding: "json"}, ``},
		{FormatConfig{Encoding: "avro"}, ``},
		{FormatConfig{}, ``},
	} {
		err := tc.f.Validate()
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.f, err, tc.want)
		}
	}
	var f FormatConfig
	f.SetDefaults()
	if f.Encoding != "avro" || f.JSON() || !f.JSONSchemasOn() {
		t.Errorf("defaults: %+v", f)
	}
}

func TestJSONStringEscapes(t *testing.T) {
	for in, want := range map[string]string{
		"":            `""`,
		"plain":       `"plain"`,
		"a\"b\\c":     `"a\"b\\c"`,
		"\x00\x1f\t":  `"\u0000\u001f\t"`,
		"é☃😀":         `"é☃😀"`,
		"bad\xffutf8": `"bad\ufffdutf8"`,
		"\u2028":      "\"\u2028\"",
	} {
		got := string(appendJSONString(nil, []byte(in)))
		if got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
		var s string
		if err := json.Unmarshal([]byte(got), &s); err != nil {
			t.Errorf("%q: %s is not JSON: %v", in, got, err)
		}
	}
}
