package schema

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzJSONRewrite feeds the JSON form of the type families' value schema
// arbitrary bytes as its Avro: never a panic; on error the buffer is
// returned as it was before the record; on success the record is valid
// JSON, after the bytes before it, kept.
func FuzzJSONRewrite(f *testing.F) {
	cols, row, _ := jsonFamilies()
	tbl := testTable(cols, []int{0})
	for _, schemas := range []bool{false, true} {
		avroOnly, err := NewCodec(tbl, FormatConfig{}, testSource)
		if err != nil {
			f.Fatal(err)
		}
		v, err := avroOnly.AppendValue(nil, &Event{Op: OpUpdate, Before: row, After: row, TxID: 1, LSN: 2})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(v, schemas)
		f.Add(v[:len(v)/2], schemas)
		f.Add(append(v[:5:5], 0x02, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01), schemas)
	}
	forms := map[bool]*JSONForm{}
	for _, schemas := range []bool{false, true} {
		forms[schemas] = jsonCodec(f, tbl, EnvelopeDebezium, schemas).valueJSON
	}
	f.Fuzz(func(t *testing.T, avro []byte, schemas bool) {
		dst := append([]byte("kept"), avro...)
		out, err := forms[schemas].Rewrite(dst, len("kept"))
		if !bytes.HasPrefix(out, []byte("kept")) {
			t.Fatalf("the bytes before the record changed: %q", out[:min(len(out), 8)])
		}
		if err != nil {
			if len(out) != len("kept") {
				t.Fatalf("error %v, but %d bytes left after the prefix", err, len(out)-len("kept"))
			}
			return
		}
		if !json.Valid(out[len("kept"):]) {
			t.Fatalf("not JSON: %s", out[len("kept"):])
		}
	})
}
