package schema

import (
	"bytes"
	"errors"
	"math"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"
)

// unscaled is the expected unscaled value of a decimal, in base 10.
type unscaled string

func micros(y int, mo time.Month, d, h, mi, s, us int) int64 {
	return time.Date(y, mo, d, h, mi, s, us*1000, time.UTC).UnixMicro()
}

// days is what hamba decodes an Avro int into: a Go int.
func days(y int, mo time.Month, d int) int {
	return int(time.Date(y, mo, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// encodeOne encodes text as the after image of a one-column table with column
// type ty and returns the raw decoded value (logical types stripped).
func encodeOne(t *testing.T, ty Type, nullable bool, d Datum) (any, error) {
	t.Helper()
	c := mustCodec(t, testTable([]Column{{Name: "v", Type: ty, Nullable: nullable}}, nil), EnvelopeDebezium)
	b, err := c.AppendValue(nil, &Event{Op: OpCreate, After: []Datum{d}, TxID: -1, LSN: -1})
	if err != nil {
		return nil, err
	}
	m := decode(t, rawSchema(t, c.ValueSchema()), b, 0)
	v := image(t, m, "after")["v"]
	if w, ok := v.(map[string]any); ok && nullable && len(w) == 1 {
		// hamba wraps the non-null branch of a union of a complex type.
		for name, inner := range w {
			if name == "array" || name == "map" || name == IntervalFullName {
				return inner, nil
			}
		}
	}
	return v, nil
}

func TestTypes(t *testing.T) {
	nan32 := float32(math.NaN())
	tests := []struct {
		name string
		ty   Type
		text string
		want any
	}{
		{"bool t", typ("bool"), "t", true},
		{"bool f", typ("bool"), "f", false},
		{"int2 min", typ("int2"), "-32768", -32768},
		{"int2 max", typ("int2"), "32767", 32767},
		{"int4 min", typ("int4"), "-2147483648", math.MinInt32},
		{"int4 max", typ("int4"), "2147483647", math.MaxInt32},
		{"int4 zero", typ("int4"), "0", 0},
		{"int8 min", typ("int8"), "-9223372036854775808", int64(math.MinInt64)},
		{"int8 max", typ("int8"), "9223372036854775807", int64(math.MaxInt64)},
		{"oid max", typ("oid"), "4294967295", int64(math.MaxUint32)},
		{"float4", typ("float4"), "1.10000002", float32(1.1)},
		{"float4 tiny", typ("float4"), "1.40129846e-45", float32(math.SmallestNonzeroFloat32)},
		{"float4 NaN", typ("float4"), "NaN", nan32},
		{"float4 inf", typ("float4"), "Infinity", float32(math.Inf(1))},
		{"float8 -inf", typ("float8"), "-Infinity", math.Inf(-1)},
		{"float8 NaN", typ("float8"), "NaN", math.NaN()},
		{"float8", typ("float8"), "0.30000000000000004", math.Nextafter(0.3, 1)},
		{"float8 max", typ("float8"), "1.7976931348623157e+308", math.MaxFloat64},
		{"float8 -0", typ("float8"), "-0", math.Copysign(0, -1)},
		{"numeric(10,2)", numericType(10, 2), "12345678.90", unscaled("1234567890")},
		{"numeric(10,2) neg", numericType(10, 2), "-0.01", unscaled("-1")},
		{"numeric(10,2) zero", numericType(10, 2), "0.00", unscaled("0")},
		{"numeric(10,2) pad", numericType(10, 2), "5", unscaled("500")},
		{"numeric(10,2) -128", numericType(10, 2), "-1.28", unscaled("-128")},
		{"numeric(10,2) 128", numericType(10, 2), "1.28", unscaled("128")},
		{"numeric(10,2) 32768", numericType(10, 2), "327.68", unscaled("32768")},
		{"numeric(10,2) -32769", numericType(10, 2), "-327.69", unscaled("-32769")},
		{"numeric(18,0) max", numericType(18, 0), "999999999999999999", unscaled("999999999999999999")},
		{"numeric(30,10)", numericType(30, 10), "-12345678901234567890.1234567890", unscaled("-123456789012345678901234567890")},
		{"numeric(38,0) max", numericType(38, 0), strings.Repeat("9", 38), unscaled(strings.Repeat("9", 38))},
		{"numeric(38,0) min", numericType(38, 0), "-" + strings.Repeat("9", 38), unscaled("-" + strings.Repeat("9", 38))},
		{"numeric(38,38)", numericType(38, 38), "-0." + strings.Repeat("1", 38), unscaled("-" + strings.Repeat("1", 38))},
		{"numeric(60,20)", numericType(60, 20), "-" + strings.Repeat("7", 40) + "." + strings.Repeat("3", 20), unscaled("-" + strings.Repeat("7", 40) + strings.Repeat("3", 20))},
		{"numeric(60,20) pos", numericType(60, 20), strings.Repeat("8", 40), unscaled(strings.Repeat("8", 40) + strings.Repeat("0", 20))},
		{"numeric(1000,500)", numericType(1000, 500), "-1.5", unscaled("-15" + strings.Repeat("0", 499))},
		{"numeric(5,-2)", numericType(5, -2), "1234500", unscaled("1234500")},
		{"numeric(2,5)", numericType(2, 5), "0.00012", unscaled("12")},
		{"numeric unconstrained NaN", typ("numeric"), "NaN", "NaN"},
		{"numeric unconstrained", typ("numeric"), "-1.50", "-1.50"},
		{"text", typ("text"), "héllo, wörld", "héllo, wörld"},
		{"text empty", typ("text"), "", ""},
		{"bpchar padding", Type{Name: "bpchar", Category: 'S', Typmod: 9}, "ab   ", "ab   "},
		{"citext", Type{Name: "citext", Category: 'S', OID: 16400}, "MiXeD", "MiXeD"},
		{"xml", typ("xml"), "<a>b</a>", "<a>b</a>"},
		{"enum", Type{Name: "mood", Category: 'E', OID: 16500}, "happy", "happy"},
		{"jsonb", typ("jsonb"), `{"a": [1, 2]}`, `{"a": [1, 2]}`},
		{"timetz", typ("timetz"), "03:04:05.5+05:30", "03:04:05.5+05:30"},
		{"interval", typ("interval"), "P1Y2M3DT4H5M6.5S", map[string]any{"months": 14, "days": 3, "micros": int64(14706500000)}},
		{"array", Type{Name: "_int4", Category: 'A', Elem: &Type{Name: "int4"}}, "{1,NULL,3}", []any{1, nil, 3}},
		{"bytea", typ("bytea"), `\x00ff10`, []byte{0, 0xff, 0x10}},
		{"bytea empty", typ("bytea"), `\x`, []byte{}},
		{"uuid", typ("uuid"), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{"date", typ("date"), "2024-02-29", days(2024, 2, 29)},
		{"date epoch", typ("date"), "1970-01-01", 0},
		{"date before epoch", typ("date"), "1969-12-31", -1},
		{"date BC", typ("date"), "0044-03-15 BC", days(-43, 3, 15)},
		{"date 1 BC leap", typ("date"), "0001-02-29 BC", days(0, 2, 29)},
		{"date 4713 BC", typ("date"), "4714-11-24 BC", days(-4713, 11, 24)},
		{"date year 12345", typ("date"), "12345-06-07", days(12345, 6, 7)},
		{"date infinity", typ("date"), "infinity", math.MaxInt32},
		{"date -infinity", typ("date"), "-infinity", math.MinInt32},
		{"time", typ("time"), "03:04:05.123456", int64(((3*60+4)*60+5)*1_000_000 + 123456)},
		{"time short fraction", typ("time"), "00:00:00.5", int64(500000)},
		{"time 24h", typ("time"), "24:00:00", int64(86400 * 1_000_000)},
		{"timestamp", typ("timestamp"), "2024-01-02 03:04:05.123456", micros(2024, 1, 2, 3, 4, 5, 123456)},
		{"timestamp no fraction", typ("timestamp"), "1999-12-31 23:59:59", micros(1999, 12, 31, 23, 59, 59, 0)},
		{"timestamp 1 digit", typ("timestamp"), "1969-12-31 23:59:59.9", micros(1969, 12, 31, 23, 59, 59, 900000)},
		{"timestamp BC", typ("timestamp"), "0044-03-15 10:00:00 BC", micros(-43, 3, 15, 10, 0, 0, 0)},
		{"timestamp year 10000", typ("timestamp"), "10000-01-01 00:00:00", micros(10000, 1, 1, 0, 0, 0, 0)},
		{"timestamp infinity", typ("timestamp"), "infinity", int64(math.MaxInt64)},
		{"timestamp -infinity", typ("timestamp"), "-infinity", int64(math.MinInt64)},
		{"timestamptz UTC", typ("timestamptz"), "2024-01-02 03:04:05.123456+00", micros(2024, 1, 2, 3, 4, 5, 123456)},
		{"timestamptz +05:30", typ("timestamptz"), "2024-01-02 03:04:05+05:30", micros(2024, 1, 1, 21, 34, 5, 0)},
		{"timestamptz -08", typ("timestamptz"), "2024-01-02 03:04:05.000001-08", micros(2024, 1, 2, 11, 4, 5, 1)},
		{"timestamptz LMT seconds", typ("timestamptz"), "1850-01-01 00:00:00+00:53:28", micros(1849, 12, 31, 23, 6, 32, 0)},
		{"timestamptz BC", typ("timestamptz"), "0001-01-01 00:00:00+00 BC", micros(0, 1, 1, 0, 0, 0, 0)},
		{"timestamptz infinity", typ("timestamptz"), "infinity", int64(math.MaxInt64)},
		{"timestamptz -infinity", typ("timestamptz"), "-infinity", int64(math.MinInt64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, nullable := range []bool{false, true} {
				got, err := encodeOne(t, tt.ty, nullable, Datum{Text: []byte(tt.text)})
				if err != nil {
					t.Fatalf("encoding %q: %v", tt.text, err)
				}
				checkValue(t, got, tt.want)
			}
		})
	}
}

func checkValue(t *testing.T, got, want any) {
	t.Helper()
	switch w := want.(type) {
	case unscaled:
		b, ok := got.([]byte)
		if !ok {
			t.Fatalf("got %T, want bytes", got)
		}
		if !minimalTwosOK(b) {
			t.Errorf("decimal bytes % x are not minimal two's complement", b)
		}
		if g := twos(b).String(); g != string(w) {
			t.Errorf("unscaled %s, want %s", g, w)
		}
		return
	case float32:
		g, ok := got.(float32)
		if !ok || math.Float32bits(g) != math.Float32bits(w) && !(g != g && w != w) {
			t.Errorf("got %T %v, want float32 %v", got, got, w)
		}
		return
	case float64:
		g, ok := got.(float64)
		if !ok || math.Float64bits(g) != math.Float64bits(w) && !(g != g && w != w) {
			t.Errorf("got %T %v, want float64 %v", got, got, w)
		}
		return
	case []byte:
		if g, ok := got.([]byte); !ok || !bytes.Equal(g, w) {
			t.Errorf("got %T % x, want % x", got, got, w)
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %T %v, want %T %v", got, got, want, want)
	}
}

// TestLogicalTypes decodes with the logical types in place, as consumers do.
func TestLogicalTypes(t *testing.T) {
	cols := []Column{
		{Name: "d", Type: numericType(12, 3)},
		{Name: "ts", Type: typ("timestamptz")},
		{Name: "lts", Type: typ("timestamp")},
		{Name: "dt", Type: typ("date")},
		{Name: "tm", Type: typ("time")},
		{Name: "u", Type: typ("uuid")},
	}
	c := mustCodec(t, testTable(cols, nil), EnvelopeFlat)
	b, err := c.AppendValue(nil, &Event{Op: OpRead, LSN: 7, After: datums(
		"-123456789.012", "2024-01-02 03:04:05.123456+00", "1900-03-04 05:06:07.000008",
		"0100-02-03 BC", "23:59:59.999999", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")})
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, parse(t, c.ValueSchema()), b, 0)
	if got, want := m["d"].(*big.Rat), big.NewRat(-123456789012, 1000); got.Cmp(want) != 0 {
		t.Errorf("decimal %v, want %v", got, want)
	}
	if got, want := m["ts"].(time.Time), time.Date(2024, 1, 2, 3, 4, 5, 123456000, time.UTC); !got.Equal(want) {
		t.Errorf("timestamptz %v, want %v", got, want)
	}
	if got, want := m["lts"].(time.Time), time.Date(1900, 3, 4, 5, 6, 7, 8000, time.UTC); !got.Equal(want) {
		t.Errorf("timestamp %v, want %v", got, want)
	}
	if got, want := m["dt"].(time.Time), time.Date(-99, 2, 3, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("date %v, want %v", got, want)
	}
	if got, want := m["tm"].(time.Duration), 24*time.Hour-time.Microsecond; got != want {
		t.Errorf("time %v, want %v", got, want)
	}
	if got := m["u"]; got != "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" {
		t.Errorf("uuid %v", got)
	}
	if m["__op"] != "r" || m["__lsn"] != int64(7) || m["__deleted"] != "false" {
		t.Errorf("flat fields %v %v %v", m["__op"], m["__lsn"], m["__deleted"])
	}
}

func TestBadText(t *testing.T) {
	tests := []struct {
		name    string
		ty      Type
		text    string
		wantErr string
	}{
		{"bool", typ("bool"), "yes", `column "v" of public.orders: parsing bool "yes": invalid syntax`},
		{"int2 overflow", typ("int2"), "32768", `parsing int2 "32768": value out of range`},
		{"int4 overflow", typ("int4"), "-2147483649", "out of range"},
		{"int8 overflow", typ("int8"), "9223372036854775808", "out of range"},
		{"int8 huge", typ("int8"), "99999999999999999999999", "out of range"},
		{"int4 empty", typ("int4"), "", "invalid syntax"},
		{"int4 sign only", typ("int4"), "-", "invalid syntax"},
		{"int4 junk", typ("int4"), "12a", "invalid syntax"},
		{"oid negative", typ("oid"), "-1", "out of range"},
		{"float8", typ("float8"), "abc", "invalid syntax"},
		{"numeric NaN", numericType(10, 2), "NaN", `column "v" of public.orders: parsing numeric "NaN": NaN or infinity`},
		{"numeric Infinity", numericType(10, 2), "-Infinity", "NaN or infinity"},
		{"numeric abc", numericType(10, 2), "abc", `parsing numeric "abc": invalid syntax`},
		{"numeric two dots", numericType(10, 2), "1.2.3", "invalid syntax"},
		{"numeric empty", numericType(10, 2), "", "invalid syntax"},
		{"numeric dot", numericType(10, 2), ".", "invalid syntax"},
		{"numeric rounding", numericType(10, 2), "1.234", "more fractional digits"},
		{"numeric precision", numericType(4, 2), "123.45", "more digits than the column's precision"},
		{"bytea escape form", typ("bytea"), `abc`, `want hex form`},
		{"bytea odd", typ("bytea"), `\x123`, `want hex form`},
		{"bytea bad hex", typ("bytea"), `\xzz`, `want hex form`},
		{"uuid", typ("uuid"), "not-a-uuid", "invalid syntax"},
		{"date month 13", typ("date"), "2024-13-01", "invalid syntax"},
		{"date Feb 30", typ("date"), "2023-02-29", "invalid syntax"},
		{"date year 0", typ("date"), "0000-01-01", "invalid syntax"},
		{"date short year", typ("date"), "24-01-01", "invalid syntax"},
		{"time 25h", typ("time"), "25:00:00", "invalid syntax"},
		{"time 7 digits", typ("time"), "00:00:00.1234567", "invalid syntax"},
		{"timestamp no time", typ("timestamp"), "2024-01-01", "invalid syntax"},
		{"timestamp with tz", typ("timestamp"), "2024-01-01 00:00:00+00", "invalid syntax"},
		{"timestamptz without tz", typ("timestamptz"), "2024-01-01 00:00:00", "invalid syntax"},
		{"timestamptz beyond int64", typ("timestamptz"), "294276-12-31 23:59:59.999999+00", "out of the range"},
		{"long text truncated", typ("int4"), strings.Repeat("9", 200), `"` + strings.Repeat("9", 64) + `..."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := encodeOne(t, tt.ty, true, Datum{Text: []byte(tt.text)})
			if err == nil {
				t.Fatalf("no error for %q", tt.text)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			var ce *ColumnError
			if !errors.As(err, &ce) || ce.Column != "v" || ce.Table != "public.orders" {
				t.Errorf("error %v is not a ColumnError naming the column", err)
			}
		})
	}
}

func TestUnchangedToast(t *testing.T) {
	tests := []struct {
		name    string
		ty      Type
		want    any
		wantErr bool
	}{
		{"text", typ("text"), UnavailableValue, false},
		{"varchar", typ("varchar"), UnavailableValue, false},
		{"jsonb", typ("jsonb"), UnavailableValue, false},
		{"array as string", Type{Name: "_text", Category: 'A'}, UnavailableValue, false},
		{"unconstrained numeric", typ("numeric"), UnavailableValue, false},
		{"bytea", typ("bytea"), []byte(UnavailableValue), false},
		{"int4", typ("int4"), nil, true},
		{"decimal", numericType(10, 2), nil, true},
		{"uuid", typ("uuid"), nil, true},
		{"timestamptz", typ("timestamptz"), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, nullable := range []bool{false, true} {
				got, err := encodeOne(t, tt.ty, nullable, Datum{Unchanged: true})
				if tt.wantErr {
					if !errors.Is(err, ErrUnavailable) {
						t.Fatalf("error %v, want ErrUnavailable", err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				checkValue(t, got, tt.want)
			}
		})
	}
}

// TestDeleteZeroValues covers a delete's before image under a key-only
// replica identity: nulls in non-nullable non-key columns become zero values.
func TestDeleteZeroValues(t *testing.T) {
	cols := []Column{
		{Name: "id", Type: typ("int8")},
		{Name: "b", Type: typ("bool")},
		{Name: "i", Type: typ("int4")},
		{Name: "f4", Type: typ("float4")},
		{Name: "f8", Type: typ("float8")},
		{Name: "d", Type: numericType(10, 2)},
		{Name: "s", Type: typ("text")},
		{Name: "j", Type: typ("jsonb")},
		{Name: "by", Type: typ("bytea")},
		{Name: "u", Type: typ("uuid")},
		{Name: "dt", Type: typ("date")},
		{Name: "tm", Type: typ("time")},
		{Name: "ts", Type: typ("timestamp")},
		{Name: "tz", Type: typ("timestamptz")},
		{Name: "n", Type: typ("text"), Nullable: true},
	}
	before := make([]Datum, len(cols))
	before[0] = Datum{Text: []byte("42")}
	for i := 1; i < len(before); i++ {
		before[i] = Datum{Null: true}
	}
	want := map[string]any{
		"id": int64(42), "b": false, "i": 0, "f4": float32(0), "f8": float64(0),
		"d": []byte{0}, "s": "", "j": "", "by": []byte{}, "u": nilUUID,
		"dt": 0, "tm": int64(0), "ts": int64(0), "tz": int64(0), "n": nil,
	}
	for _, env := range []Envelope{EnvelopeDebezium, EnvelopeFlat} {
		t.Run(env.String(), func(t *testing.T) {
			c := mustCodec(t, testTable(cols, []int{0}), env)
			b, err := c.AppendValue(nil, &Event{Op: OpDelete, Before: before, TxID: -1, LSN: -1})
			if err != nil {
				t.Fatal(err)
			}
			m := decode(t, rawSchema(t, c.ValueSchema()), b, 0)
			row := m
			if env == EnvelopeDebezium {
				row = image(t, m, "before")
				if m["after"] != nil {
					t.Errorf("after = %v, want null", m["after"])
				}
			} else if m["__deleted"] != "true" || m["__op"] != "d" {
				t.Errorf("flat delete: __deleted %v __op %v", m["__deleted"], m["__op"])
			}
			for k, w := range want {
				if !reflect.DeepEqual(row[k], w) {
					t.Errorf("%s = %T %v, want %T %v", k, row[k], row[k], w, w)
				}
			}
			// The same nulls in an insert are errors.
			_, err = c.AppendValue(nil, &Event{Op: OpCreate, After: before, TxID: -1, LSN: -1})
			var ce *ColumnError
			if !errors.Is(err, ErrNull) || !errors.As(err, &ce) || ce.Column != "b" {
				t.Errorf("insert with nulls: error %v, want ErrNull on column b", err)
			}
		})
	}
}
