package schema

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/big"
	"testing"

	"github.com/hamba/avro/v2"
)

var testSource = Source{Version: "0.1.0", Connector: "postgresql", Name: "shop", DB: "postgres"}

func typ(name string) Type { return Type{Name: name, Typmod: -1, Category: 'U'} }

func arrayOf(elem Type) Type {
	return Type{Name: "_" + elem.Name, Category: 'A', Typmod: elem.Typmod, Elem: &elem}
}

func numericType(p, s int) Type {
	return Type{Name: "numeric", Category: 'N', Typmod: int32(p<<16|(s&0x7ff)) + 4}
}

func testTable(cols []Column, key []int) Table {
	return Table{
		Topic:     "shop.public.orders",
		Namespace: "shop.public.orders",
		Schema:    "public",
		Name:      "orders",
		Columns:   cols,
		Key:       key,
	}
}

func mustCodec(t testing.TB, tbl Table, env Envelope) *Codec {
	t.Helper()
	c, err := NewCodec(tbl, FormatConfig{Envelope: env.String()}, testSource)
	if err != nil {
		t.Fatalf("NewCodec: %v", err)
	}
	return c
}

// parse parses schema JSON in a private cache, as an independent reader would.
func parse(t testing.TB, js string) avro.Schema {
	t.Helper()
	s, err := avro.ParseWithCache(js, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatalf("parsing schema: %v\n%s", err, js)
	}
	return s
}

// rawSchema parses js with every logicalType removed, so values decode as
// their underlying int, long or bytes, exactly.
func rawSchema(t testing.TB, js string) avro.Schema {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(js), &v); err != nil {
		t.Fatal(err)
	}
	var strip func(any)
	strip = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			delete(v, "logicalType")
			for _, e := range v {
				strip(e)
			}
		case []any:
			for _, e := range v {
				strip(e)
			}
		}
	}
	strip(v)
	b, _ := json.Marshal(v)
	return parse(t, string(b))
}

// unframe checks the Confluent framing and returns the Avro body.
func unframe(t testing.TB, b []byte, wantID int) []byte {
	t.Helper()
	if len(b) < 5 || b[0] != 0 {
		t.Fatalf("bad framing: % x", b)
	}
	if id := int(binary.BigEndian.Uint32(b[1:5])); id != wantID {
		t.Fatalf("schema id %d, want %d", id, wantID)
	}
	return b[5:]
}

// decode decodes a framed message into a map with schema s, requiring every
// byte to be consumed.
func decode(t testing.TB, s avro.Schema, b []byte, wantID int) map[string]any {
	t.Helper()
	body := unframe(t, b, wantID)
	r := &byteByByte{r: bytes.NewReader(body)}
	var m map[string]any
	if err := avro.NewDecoderForSchema(s, r).Decode(&m); err != nil {
		t.Fatalf("decoding: %v (% x)", err, body)
	}
	if r.r.Len() != 0 {
		t.Fatalf("%d trailing bytes after the record (% x)", r.r.Len(), body)
	}
	return m
}

// twos decodes big-endian two's complement.
func twos(b []byte) *big.Int {
	v := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		v.Sub(v, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return v
}

func minimalTwosOK(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	return len(b) == 1 || !((b[0] == 0 && b[1]&0x80 == 0) || (b[0] == 0xff && b[1]&0x80 != 0))
}

func datums(texts ...string) []Datum {
	d := make([]Datum, len(texts))
	for i, s := range texts {
		d[i] = Datum{Text: []byte(s)}
	}
	return d
}

// byteByByte hands the decoder one byte per Read, so what is left in r after
// decoding is exactly what the decoder did not consume.
type byteByByte struct{ r *bytes.Reader }

func (b *byteByByte) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return b.r.Read(p)
}

// image returns the row record of a decoded Debezium before/after field,
// which hamba wraps in a map keyed by the record's full name; nil when null.
func image(t testing.TB, m map[string]any, field string) map[string]any {
	t.Helper()
	v := m[field]
	if v == nil {
		return nil
	}
	w, ok := v.(map[string]any)
	if !ok || len(w) != 1 {
		t.Fatalf("%s = %#v, want a union-wrapped record", field, v)
	}
	for name, rec := range w {
		if name != "shop.public.orders.Value" {
			t.Fatalf("%s holds %s, want shop.public.orders.Value", field, name)
		}
		return rec.(map[string]any)
	}
	return nil
}
