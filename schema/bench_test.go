package schema

import "testing"

// benchTable is a typical 10-column row of about 200 bytes of text.
func benchTable() (Table, []Datum) {
	cols := []Column{
		{Name: "id", Type: typ("int8")},
		{Name: "customer_id", Type: typ("int4")},
		{Name: "status", Type: Type{Name: "order_status", Category: 'E'}},
		{Name: "note", Type: typ("text"), Nullable: true},
		{Name: "price", Type: numericType(12, 2)},
		{Name: "created_at", Type: typ("timestamptz")},
		{Name: "paid", Type: typ("bool")},
		{Name: "weight", Type: typ("float8"), Nullable: true},
		{Name: "tracking", Type: typ("uuid"), Nullable: true},
		{Name: "attrs", Type: typ("jsonb"), Nullable: true},
	}
	row := datums(
		"1234567", "42", "shipped", "leave at the door, ring twice", "1234.50",
		"2024-06-01 12:34:56.789012+00", "t", "2.5", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		`{"gift": true, "lines": [1, 2, 3], "channel": "web"}`,
	)
	return testTable(cols, []int{0}), row
}

func BenchmarkAppendValue(b *testing.B) {
	tbl, row := benchTable()
	var textBytes int
	for _, d := range row {
		textBytes += len(d.Text)
	}
	for _, env := range []Envelope{EnvelopeDebezium, EnvelopeFlat} {
		b.Run(env.String(), func(b *testing.B) {
			c := mustCodec(b, tbl, env)
			ev := &Event{Op: OpUpdate, After: row, TsMs: 1717245296789, TxID: 1234, LSN: 0x16B3748, NowMs: 1717245296800}
			buf := make([]byte, 0, 1024)
			b.SetBytes(int64(textBytes))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = c.AppendValue(buf[:0], ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendKey(b *testing.B) {
	tbl, row := benchTable()
	c := mustCodec(b, tbl, EnvelopeDebezium)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = c.AppendKey(buf[:0], row); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConvert measures each converter alone on a typical value.
func BenchmarkConvert(b *testing.B) {
	tests := []struct {
		name string
		ty   Type
		text string
	}{
		{"int8", typ("int8"), "1234567"},
		{"float8", typ("float8"), "2.5"},
		{"numeric(12,2)", numericType(12, 2), "1234.50"},
		{"numeric(30,10)", numericType(30, 10), "-12345678901234567890.1234567890"},
		{"timestamptz", typ("timestamptz"), "2024-06-01 12:34:56.789012+00"},
		{"date", typ("date"), "2024-06-01"},
		{"uuid", typ("uuid"), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{"bytea", typ("bytea"), `\x000102030405060708090a0b0c0d0e0f`},
		{"text", typ("text"), "leave at the door, ring twice"},
		{"interval", typ("interval"), "P1Y2M3DT4H5M6.789S"},
		{"int4[]", arrayOf(typ("int4")), "{1,2,NULL,4,5,6,7,8}"},
		{"text[]", arrayOf(typ("text")), `{"a b",c,NULL,"q\"uote"}`},
		{"timestamptz[]", arrayOf(typ("timestamptz")), `{"2024-06-01 12:34:56.789012+00","2024-06-02 00:00:00+00"}`},
		{"hstore", typ("hstore"), `"a"=>"1", "b"=>NULL, "c\\d"=>"e\"f"`},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			conv := mapType(tt.ty, format{}).conv
			text := []byte(tt.text)
			buf := make([]byte, 0, 64)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = conv(buf[:0], text); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
