package schema

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
)

func orderColumns() []Column {
	return []Column{
		{Name: "id", Type: typ("int8")},
		{Name: "region", Type: typ("text")},
		{Name: "note", Type: typ("text"), Nullable: true},
		{Name: "price", Type: numericType(10, 2), Nullable: true},
	}
}

func TestSchemaNames(t *testing.T) {
	c := mustCodec(t, testTable(orderColumns(), []int{1, 0}), EnvelopeDebezium)
	key := parse(t, c.KeySchema()).(*avro.RecordSchema)
	if key.FullName() != "shop.public.orders.Key" {
		t.Errorf("key full name %s", key.FullName())
	}
	var keyFields []string
	for _, f := range key.Fields() {
		keyFields = append(keyFields, f.Name()+":"+string(f.Type().Type()))
	}
	if want := []string{"region:string", "id:long"}; !reflect.DeepEqual(keyFields, want) {
		t.Errorf("key fields %v, want %v", keyFields, want)
	}

	env := parse(t, c.ValueSchema()).(*avro.RecordSchema)
	if env.FullName() != "shop.public.orders.Envelope" || env.Prop("connect.name") != "shop.public.orders.Envelope" {
		t.Errorf("envelope %s, connect.name %v", env.FullName(), env.Prop("connect.name"))
	}
	var names []string
	fields := map[string]*avro.Field{}
	for _, f := range env.Fields() {
		names = append(names, f.Name())
		fields[f.Name()] = f
	}
	if want := []string{"before", "after", "source", "op", "ts_ms", "transaction"}; !reflect.DeepEqual(names, want) {
		t.Errorf("envelope fields %v, want %v", names, want)
	}
	for _, f := range []string{"before", "after"} {
		u := fields[f].Type().(*avro.UnionSchema)
		var rec avro.NamedSchema
		switch r := u.Types()[1].(type) {
		case *avro.RefSchema:
			rec = r.Schema()
		case avro.NamedSchema:
			rec = r
		}
		if u.Types()[0].Type() != avro.Null || rec.FullName() != "shop.public.orders.Value" || !fields[f].HasDefault() || fields[f].Default() != nil {
			t.Errorf("%s: %s", f, fields[f].Type())
		}
	}
	value := fields["before"].Type().(*avro.UnionSchema).Types()[1].(*avro.RecordSchema)
	for _, f := range value.Fields() {
		nullable := f.Name() == "note" || f.Name() == "price"
		_, isUnion := f.Type().(*avro.UnionSchema)
		if isUnion != nullable || (nullable && (!f.HasDefault() || f.Default() != nil)) {
			t.Errorf("value field %s: %s", f.Name(), f.Type())
		}
	}
	src := fields["source"].Type().(*avro.RecordSchema)
	if src.FullName() != SourceFullName {
		t.Errorf("source full name %s", src.FullName())
	}
	var srcFields []string
	for _, f := range src.Fields() {
		srcFields = append(srcFields, f.Name())
	}
	if want := []string{"version", "connector", "name", "ts_ms", "snapshot", "db", "sequence", "schema", "table", "txId", "lsn", "xmin"}; !reflect.DeepEqual(srcFields, want) {
		t.Errorf("source fields %v, want %v", srcFields, want)
	}
	tx := fields["transaction"].Type().(*avro.UnionSchema).Types()[1].(*avro.RecordSchema)
	if tx.FullName() != "event.block" {
		t.Errorf("transaction block %s", tx.FullName())
	}

	flat := mustCodec(t, testTable(orderColumns(), []int{0}), EnvelopeFlat)
	fv := parse(t, flat.ValueSchema()).(*avro.RecordSchema)
	if fv.FullName() != "shop.public.orders.Value" {
		t.Errorf("flat value full name %s", fv.FullName())
	}
	if n := len(fv.Fields()); n != 7 || fv.Fields()[4].Name() != "__op" || fv.Fields()[5].Name() != "__lsn" || fv.Fields()[6].Name() != "__deleted" {
		t.Errorf("flat fields %v", fv.Fields())
	}
}

func TestKeyless(t *testing.T) {
	c := mustCodec(t, testTable(orderColumns(), nil), EnvelopeDebezium)
	if c.Keyed() || c.KeySchema() != "" || c.KeyAvro() != nil {
		t.Errorf("keyless codec: Keyed %v, KeySchema %q", c.Keyed(), c.KeySchema())
	}
	if _, err := c.AppendKey(nil, datums("1", "eu", "", "1.00")); !errors.Is(err, ErrKeyless) {
		t.Errorf("AppendKey on keyless: %v", err)
	}
}

func TestAppendKey(t *testing.T) {
	cols := []Column{
		{Name: "tenant", Type: typ("uuid")},
		{Name: "payload", Type: typ("jsonb"), Nullable: true},
		{Name: "day", Type: typ("date")},
		{Name: "seq", Type: typ("int4"), Nullable: true}, // nullable in the table, never in the key
	}
	c := mustCodec(t, testTable(cols, []int{0, 2, 3}), EnvelopeDebezium)
	c.SetIDs(11, 12)
	row := []Datum{{Text: []byte("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")}, {Null: true}, {Text: []byte("2024-05-06")}, {Text: []byte("-7")}}
	prefix := []byte("keep")
	b, err := c.AppendKey(prefix, row)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:4]) != "keep" {
		t.Fatalf("AppendKey overwrote dst")
	}
	m := decode(t, rawSchema(t, c.KeySchema()), b[4:], 11)
	want := map[string]any{"tenant": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "day": days(2024, 5, 6), "seq": -7}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("key %v, want %v", m, want)
	}

	for name, bad := range map[string]Datum{"null": {Null: true}, "unchanged": {Unchanged: true}, "text": {Text: []byte("x")}} {
		t.Run(name, func(t *testing.T) {
			r := append([]Datum(nil), row...)
			r[3] = bad
			got, err := c.AppendKey(prefix, r)
			if err == nil || string(got) != "keep" {
				t.Fatalf("AppendKey with %s key column: %v, dst %q", name, err, got)
			}
			if !strings.Contains(err.Error(), `column "seq" of public.orders`) {
				t.Errorf("error %q does not name the column", err)
			}
		})
	}
	if _, err := c.AppendKey(nil, row[:2]); err == nil {
		t.Error("short row accepted")
	}
}

func TestDebeziumEnvelope(t *testing.T) {
	c := mustCodec(t, testTable(orderColumns(), []int{0}), EnvelopeDebezium)
	c.SetIDs(1, 2)
	s := rawSchema(t, c.ValueSchema())
	row1 := []Datum{{Text: []byte("1")}, {Text: []byte("eu")}, {Null: true}, {Text: []byte("9.99")}}
	row2 := []Datum{{Text: []byte("1")}, {Text: []byte("us")}, {Text: []byte("hi")}, {Null: true}}
	keyOnly := []Datum{{Text: []byte("1")}, {Null: true}, {Null: true}, {Null: true}}
	rec1 := map[string]any{"id": int64(1), "region": "eu", "note": nil, "price": []byte{0x03, 0xe7}}
	rec2 := map[string]any{"id": int64(1), "region": "us", "note": "hi", "price": nil}
	recKey := map[string]any{"id": int64(1), "region": "", "note": nil, "price": nil}

	tests := []struct {
		name                string
		ev                  Event
		wantBefore, wantAft map[string]any
		wantTx, wantLSN     any
		wantSnapshot        string
	}{
		{"create", Event{Op: OpCreate, After: row1, TsMs: 1700000000123, TxID: 770, LSN: 0x16B3748, NowMs: 1700000000456},
			nil, rec1, int64(770), int64(0x16B3748), "false"},
		{"update", Event{Op: OpUpdate, Before: row1, After: row2, TsMs: 5, TxID: 771, LSN: 99, NowMs: 6},
			rec1, rec2, int64(771), int64(99), "false"},
		{"update without before", Event{Op: OpUpdate, After: row2, TsMs: 5, TxID: 771, LSN: 99, NowMs: 6},
			nil, rec2, int64(771), int64(99), "false"},
		{"delete key-only", Event{Op: OpDelete, Before: keyOnly, TsMs: 5, TxID: 772, LSN: 100, NowMs: 6},
			recKey, nil, int64(772), int64(100), "false"},
		{"read", Event{Op: OpRead, After: row1, TsMs: 5, TxID: -1, LSN: -1, Snapshot: "true", NowMs: 6},
			nil, rec1, nil, nil, "true"},
		{"read last", Event{Op: OpRead, After: row1, TsMs: 5, TxID: -1, LSN: -1, Snapshot: "last", NowMs: 6},
			nil, rec1, nil, nil, "last"},
		{"truncate", Event{Op: OpTruncate, TsMs: 5, TxID: 773, LSN: 101, NowMs: 6},
			nil, nil, int64(773), int64(101), "false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := c.AppendValue(nil, &tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			m := decode(t, s, b, 2)
			if got := image(t, m, "before"); !reflect.DeepEqual(got, tt.wantBefore) {
				t.Errorf("before %v, want %v", got, tt.wantBefore)
			}
			if got := image(t, m, "after"); !reflect.DeepEqual(got, tt.wantAft) {
				t.Errorf("after %v, want %v", got, tt.wantAft)
			}
			if m["op"] != string(rune(tt.ev.Op)) || m["ts_ms"] != tt.ev.NowMs || m["transaction"] != nil {
				t.Errorf("op %v ts_ms %v transaction %v", m["op"], m["ts_ms"], m["transaction"])
			}
			wantSrc := map[string]any{
				"version": "0.1.0", "connector": "postgresql", "name": "shop", "ts_ms": tt.ev.TsMs,
				"snapshot": tt.wantSnapshot, "db": "postgres", "sequence": nil, "schema": "public",
				"table": "orders", "txId": tt.wantTx, "lsn": tt.wantLSN, "xmin": nil,
			}
			if src := m["source"]; !reflect.DeepEqual(src, wantSrc) {
				t.Errorf("source\n got %v\nwant %v", src, wantSrc)
			}
		})
	}
}

func TestFlatEnvelope(t *testing.T) {
	c := mustCodec(t, testTable(orderColumns(), []int{0}), EnvelopeFlat)
	s := rawSchema(t, c.ValueSchema())
	row1 := []Datum{{Text: []byte("1")}, {Text: []byte("eu")}, {Null: true}, {Text: []byte("-0.01")}}
	keyOnly := []Datum{{Text: []byte("1")}, {Null: true}, {Null: true}, {Null: true}}
	tests := []struct {
		name string
		ev   Event
		want map[string]any
	}{
		{"create", Event{Op: OpCreate, After: row1, LSN: 42}, map[string]any{
			"id": int64(1), "region": "eu", "note": nil, "price": []byte{0xff}, "__op": "c", "__lsn": int64(42), "__deleted": "false"}},
		{"update", Event{Op: OpUpdate, Before: keyOnly, After: row1, LSN: -1}, map[string]any{
			"id": int64(1), "region": "eu", "note": nil, "price": []byte{0xff}, "__op": "u", "__lsn": nil, "__deleted": "false"}},
		{"delete", Event{Op: OpDelete, Before: keyOnly, LSN: 43}, map[string]any{
			"id": int64(1), "region": "", "note": nil, "price": nil, "__op": "d", "__lsn": int64(43), "__deleted": "true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := c.AppendValue(nil, &tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if m := decode(t, s, b, 0); !reflect.DeepEqual(m, tt.want) {
				t.Errorf("got  %v\nwant %v", m, tt.want)
			}
		})
	}
	dst := []byte("keep")
	got, err := c.AppendValue(dst, &Event{Op: OpTruncate, LSN: 1})
	if !errors.Is(err, ErrNotRepresentable) || string(got) != "keep" {
		t.Errorf("flat truncate: %v, dst %q", err, got)
	}
}

func TestAppendValueErrors(t *testing.T) {
	row := datums("1", "eu", "x", "1.00")
	for _, env := range []Envelope{EnvelopeDebezium, EnvelopeFlat} {
		c := mustCodec(t, testTable(orderColumns(), []int{0}), env)
		tests := []struct {
			name    string
			ev      Event
			wantErr string
		}{
			{"bad op", Event{Op: 'x', After: row}, "unknown op"},
			{"create without after", Event{Op: OpCreate, Before: row}, "without its after image"},
			{"delete without before", Event{Op: OpDelete, After: row}, "without its before image"},
			{"short row", Event{Op: OpCreate, After: row[:3]}, "row has 3 values, table has 4 columns"},
			{"bad numeric", Event{Op: OpCreate, After: datums("1", "eu", "x", "abc")}, `column "price" of public.orders: parsing numeric "abc": invalid syntax`},
			{"null in non-nullable", Event{Op: OpCreate, After: []Datum{{Text: []byte("1")}, {Null: true}, {Null: true}, {Null: true}}}, `column "region" of public.orders: null in a non-nullable column`},
		}
		for _, tt := range tests {
			t.Run(env.String()+"/"+tt.name, func(t *testing.T) {
				dst := []byte("keep")
				got, err := c.AppendValue(dst, &tt.ev)
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if string(got) != "keep" {
					t.Errorf("dst not restored: %q", got)
				}
			})
		}
	}
}

func TestSanitizeName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"id", "id"},
		{"_x9", "_x9"},
		{"order-id", "order_id"},
		{"9lives", "_9lives"},
		{"a b.c", "a_b_c"},
		{"prénom", "pr_nom"},
		{"日本", "__"},
		{"", "_"},
		{"ok_", "ok_"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := SanitizeName(tt.in); got != tt.want {
				t.Errorf("SanitizeName(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if got := SanitizeNamespace("my-shop.public.2024-orders"); got != "my_shop.public._2024_orders" {
		t.Errorf("SanitizeNamespace: %q", got)
	}
}

func TestNewCodecErrors(t *testing.T) {
	tests := []struct {
		name    string
		tbl     Table
		env     Envelope
		wantErr string
	}{
		{"collision", testTable([]Column{{Name: "a-b", Type: typ("text")}, {Name: "a_b", Type: typ("text")}}, nil), EnvelopeDebezium,
			`schema for public.orders: column "a_b": Avro field name "a_b" already taken by column "a-b"`},
		{"flat reserved", testTable([]Column{{Name: "__op", Type: typ("text")}}, nil), EnvelopeFlat,
			`column "__op": Avro field name "__op" already taken by the flat envelope's __op`},
		{"key out of range", testTable(orderColumns(), []int{4}), EnvelopeDebezium, "key column index 4 out of range"},
		{"key twice", testTable(orderColumns(), []int{0, 0}), EnvelopeDebezium, `column "id" twice in the key`},
		{"no topic", Table{Namespace: "a", Schema: "public", Name: "orders"}, EnvelopeDebezium, "no topic"},
		{"bad envelope", testTable(orderColumns(), nil), Envelope(9), "unknown envelope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewCodec(tt.tbl, FormatConfig{Envelope: tt.env.String()}, testSource)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
	// The flat envelope's names are free in the Debezium envelope.
	mustCodec(t, testTable([]Column{{Name: "__op", Type: typ("text")}}, nil), EnvelopeDebezium)
	// Sanitized names and namespace parse.
	tbl := testTable([]Column{{Name: "1st col", Type: typ("int4")}, {Name: "größe", Type: typ("text")}}, []int{0})
	tbl.Namespace = "my-shop.public.2024 orders"
	c := mustCodec(t, tbl, EnvelopeDebezium)
	if got := parse(t, c.KeySchema()).(*avro.RecordSchema).FullName(); got != "my_shop.public._2024_orders.Key" {
		t.Errorf("key full name %s", got)
	}
}

func TestEnvelopeString(t *testing.T) {
	for _, e := range []Envelope{EnvelopeDebezium, EnvelopeFlat} {
		got, err := ParseEnvelope(e.String())
		if err != nil || got != e {
			t.Errorf("ParseEnvelope(%q) = %v, %v", e, got, err)
		}
	}
	if _, err := ParseEnvelope("json"); err == nil {
		t.Error("ParseEnvelope accepted json")
	}
	if OpTruncate.String() != "t" {
		t.Errorf("OpTruncate.String() = %q", OpTruncate)
	}
}
