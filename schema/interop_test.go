package schema

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// pyDecode decodes Avro bodies (framing stripped) with the Apache Avro
// reference implementation, python3-avro, and returns str() of every field of
// each record, in schema order.
const pyDecode = `
import io, json, sys
import avro.io, avro.schema
req = json.load(sys.stdin)
s = avro.schema.parse(req["schema"])
out = []
for h in req["bodies"]:
    r = avro.io.DatumReader(s)
    buf = io.BytesIO(bytes.fromhex(h))
    rec = r.read(avro.io.BinaryDecoder(buf))
    if buf.read():
        raise SystemExit("trailing bytes")
    out.append([str(rec[f.name]) for f in s.fields])
json.dump(out, sys.stdout)
`

func pythonAvro(t *testing.T, schema string, bodies [][]byte) [][]string {
	t.Helper()
	const python = "/usr/bin/python3" // Debian's python3-avro serves this one
	if out, err := exec.Command(python, "-c", "import avro").CombinedOutput(); err != nil {
		t.Fatalf("python3-avro is needed (make deps installs it): %v %s", err, out)
	}
	req := struct {
		Schema string   `json:"schema"`
		Bodies []string `json:"bodies"`
	}{Schema: schema}
	for _, b := range bodies {
		req.Bodies = append(req.Bodies, hex.EncodeToString(b))
	}
	in, _ := json.Marshal(req)
	cmd := exec.Command(python, "-c", pyDecode)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3-avro: %v\n%s", err, stderr.String())
	}
	var got [][]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("python3-avro output %q: %v", out, err)
	}
	return got
}

// TestApacheAvroDecodes checks our bytes against the reference implementation,
// logical types included.
func TestApacheAvroDecodes(t *testing.T) {
	cols := []Column{
		{Name: "b", Type: typ("bool")},
		{Name: "i2", Type: typ("int2")},
		{Name: "i8", Type: typ("int8")},
		{Name: "f4", Type: typ("float4"), Nullable: true},
		{Name: "f8", Type: typ("float8"), Nullable: true},
		{Name: "dec", Type: numericType(20, 4), Nullable: true},
		{Name: "num", Type: typ("numeric"), Nullable: true},
		{Name: "s", Type: Type{Name: "bpchar", Category: 'S'}},
		{Name: "j", Type: typ("jsonb"), Nullable: true},
		{Name: "by", Type: typ("bytea"), Nullable: true},
		{Name: "u", Type: typ("uuid"), Nullable: true},
		{Name: "dt", Type: typ("date"), Nullable: true},
		{Name: "tm", Type: typ("time"), Nullable: true},
		{Name: "ts", Type: typ("timestamptz"), Nullable: true},
	}
	c := mustCodec(t, testTable(cols, []int{0}), EnvelopeFlat)
	rows := []struct {
		text []string
		want string
	}{
		{
			[]string{"t", "-32768", "-9223372036854775808", "1.5", "-Infinity", "-1234567890123456.7891", "NaN",
				"ab  ", `{"k": "v"}`, `\x00ff`, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "2024-02-29",
				"23:59:59.999999", "2024-01-02 03:04:05.123456+05:30"},
			"True|-32768|-9223372036854775808|1.5|-inf|-1234567890123456.7891|NaN|ab  |{\"k\": \"v\"}|b'\\x00\\xff'|" +
				"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11|2024-02-29|23:59:59.999999|2024-01-01 21:34:05.123456+00:00|r|None|false",
		},
		{
			[]string{"f", "0", "0", "", "", "0.0001", "", "", "", "", "", "0001-01-01", "00:00:00", "1970-01-01 00:00:00+00"},
			"False|0|0|None|None|0.0001|None||None|None|None|0001-01-01|00:00:00|1970-01-01 00:00:00+00:00|r|None|false",
		},
	}
	var bodies [][]byte
	for _, r := range rows {
		d := datums(r.text...)
		for i := range d {
			if r.text[i] == "" && cols[i].Nullable {
				d[i] = Datum{Null: true}
			}
		}
		b, err := c.AppendValue(nil, &Event{Op: OpRead, After: d, LSN: -1})
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, unframe(t, b, 0))
	}
	got := pythonAvro(t, c.ValueSchema(), bodies)
	for i, r := range rows {
		if g := strings.Join(got[i], "|"); g != r.want {
			t.Errorf("row %d:\n got  %s\n want %s", i, g, r.want)
		}
	}

	// The Debezium envelope parses and decodes too.
	dc := mustCodec(t, testTable(orderColumns(), []int{0}), EnvelopeDebezium)
	b, err := dc.AppendValue(nil, &Event{Op: OpUpdate, Before: datums("1", "eu", "x", "1.00"), After: datums("1", "us", "y", "2.50"), TsMs: 5, TxID: 6, LSN: 7, NowMs: 8})
	if err != nil {
		t.Fatal(err)
	}
	env := pythonAvro(t, dc.ValueSchema(), [][]byte{unframe(t, b, 0)})[0]
	want := []string{
		"{'id': 1, 'region': 'eu', 'note': 'x', 'price': Decimal('1.00')}",
		"{'id': 1, 'region': 'us', 'note': 'y', 'price': Decimal('2.50')}",
		"{'version': '0.1.0', 'connector': 'postgresql', 'name': 'shop', 'ts_ms': 5, 'snapshot': 'false', 'db': 'postgres', 'sequence': None, 'schema': 'public', 'table': 'orders', 'txId': 6, 'lsn': 7, 'xmin': None}",
		"u", "8", "None",
	}
	if strings.Join(env, "\n") != strings.Join(want, "\n") {
		t.Errorf("envelope:\n got  %q\n want %q", env, want)
	}
}
