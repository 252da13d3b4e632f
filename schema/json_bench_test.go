package schema

import "testing"

// BenchmarkAppendValueJSON is BenchmarkAppendValue's row in JSON, with the
// Connect schema and without, beside the Avro it is rewritten from.
func BenchmarkAppendValueJSON(b *testing.B) {
	tbl, row := benchTable()
	var textBytes int
	for _, d := range row {
		textBytes += len(d.Text)
	}
	for _, tc := range []struct {
		name    string
		json    bool
		schemas bool
	}{{"avro", false, false}, {"json", true, false}, {"json+schema", true, true}} {
		b.Run(tc.name, func(b *testing.B) {
			f := FormatConfig{}
			if tc.json {
				f.Encoding, f.JSONSchemas = "json", &tc.schemas
			}
			c, err := NewCodec(tbl, f, testSource)
			if err != nil {
				b.Fatal(err)
			}
			ev := &Event{Op: OpUpdate, After: row, TsMs: 1717245296789, TxID: 1234, LSN: 0x16B3748, NowMs: 1717245296800}
			buf := make([]byte, 0, 8192)
			b.SetBytes(int64(textBytes))
			b.ReportAllocs()
			for b.Loop() {
				if buf, err = c.AppendValue(buf[:0], ev); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(buf)), "record-bytes")
		})
	}
}

func BenchmarkAppendKeyJSON(b *testing.B) {
	tbl, row := benchTable()
	f := false
	c, err := NewCodec(tbl, FormatConfig{Encoding: "json", JSONSchemas: &f}, testSource)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = c.AppendKey(buf[:0], row); err != nil {
			b.Fatal(err)
		}
	}
}
