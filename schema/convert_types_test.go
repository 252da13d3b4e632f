package schema

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// encodeFormat is encodeOne under a given format block.
func encodeFormat(t *testing.T, ty Type, nullable bool, d Datum, f FormatConfig) (any, error) {
	t.Helper()
	c, err := NewCodec(testTable([]Column{{Name: "v", Type: ty, Nullable: nullable}}, nil), f, testSource)
	if err != nil {
		t.Fatalf("NewCodec: %v", err)
	}
	b, err := c.AppendValue(nil, &Event{Op: OpCreate, After: []Datum{d}, TxID: -1, LSN: -1})
	if err != nil {
		return nil, err
	}
	m := decode(t, rawSchema(t, c.ValueSchema()), b, 0)
	v := image(t, m, "after")["v"]
	if w, ok := v.(map[string]any); ok && nullable && len(w) == 1 {
		for name, inner := range w {
			if name == "array" || name == "map" || name == IntervalFullName {
				return inner, nil
			}
		}
	}
	return v, nil
}

func iv(months, days int, micros int64) map[string]any {
	return map[string]any{"months": months, "days": days, "micros": micros}
}

// unwrapItems removes hamba's union wrappers from array items of complex
// types ({"io.pgkafka.Interval": {...}}).
func unwrapItems(v any) any {
	a, ok := v.([]any)
	if !ok {
		return v
	}
	for i, x := range a {
		if m, ok := x.(map[string]any); ok && len(m) == 1 {
			for name, inner := range m {
				if name == IntervalFullName || name == "map" {
					a[i] = inner
				}
			}
		}
	}
	return a
}

func TestTypeFamilies(t *testing.T) {
	const hour = int64(3600_000_000)
	box := Type{Name: "box", Category: 'G'}
	many := make([]any, 200)
	var manyText strings.Builder
	manyText.WriteByte('{')
	for i := range many {
		if i > 0 {
			manyText.WriteByte(',')
		}
		manyText.WriteString("7")
		many[i] = 7
	}
	manyText.WriteByte('}')
	tests := []struct {
		name string
		ty   Type
		text string
		want any
	}{
		// interval: months, days and microseconds apart
		{"interval zero", typ("interval"), "PT0S", iv(0, 0, 0)},
		{"interval full", typ("interval"), "P1Y2M3DT4H5M6.789S", iv(14, 3, 4*hour+5*60_000_000+6_789_000)},
		{"interval negative parts", typ("interval"), "P-1Y-2M3DT-4H-5M-6.789S", iv(-14, 3, -(4*hour + 5*60_000_000 + 6_789_000))},
		{"interval mixed signs", typ("interval"), "P1Y-1M-1DT1H-1S", iv(11, -1, hour-1_000_000)},
		{"interval fraction only", typ("interval"), "PT-0.5S", iv(0, 0, -500_000)},
		{"interval microsecond", typ("interval"), "PT0.000001S", iv(0, 0, 1)},
		{"interval days only", typ("interval"), "P30D", iv(0, 30, 0)},
		{"interval 24 hours", typ("interval"), "PT24H", iv(0, 0, 24*hour)},
		{"interval max micros", typ("interval"), "PT2562047788H54.775807S", iv(0, 0, math.MaxInt64)},
		{"interval min micros", typ("interval"), "PT-2562047788H-54.775808S", iv(0, 0, math.MinInt64)},
		{"interval max months", typ("interval"), "P178956970Y7M", iv(math.MaxInt32, 0, 0)},
		{"interval min months", typ("interval"), "P-178956970Y-8M", iv(math.MinInt32, 0, 0)},
		{"interval max days", typ("interval"), "P2147483647D", iv(0, math.MaxInt32, 0)},
		{"interval infinity (PG 17)", typ("interval"), "infinity", iv(math.MaxInt32, math.MaxInt32, math.MaxInt64)},
		{"interval -infinity (PG 17)", typ("interval"), "-infinity", iv(math.MinInt32, math.MinInt32, math.MinInt64)},

		// arrays of every family
		{"int4[]", arrayOf(typ("int4")), "{1,NULL,-3}", []any{1, nil, -3}},
		{"int4[] empty", arrayOf(typ("int4")), "{}", []any{}},
		{"int4[] 200 elements", arrayOf(typ("int4")), manyText.String(), many},
		{"int4[][] row-major", arrayOf(typ("int4")), "{{1,2,3},{4,NULL,6}}", []any{1, 2, 3, 4, nil, 6}},
		{"int4[][][]", arrayOf(typ("int4")), "{{{1},{2}},{{3},{4}}}", []any{1, 2, 3, 4}},
		{"int4[] lower bound 0", arrayOf(typ("int4")), "[0:2]={7,8,9}", []any{7, 8, 9}},
		{"int4[][] bounds", arrayOf(typ("int4")), "[-1:0][2:3]={{1,2},{3,4}}", []any{1, 2, 3, 4}},
		{"int8[]", arrayOf(typ("int8")), "{-9223372036854775808,9223372036854775807}", []any{int64(math.MinInt64), int64(math.MaxInt64)}},
		{"bool[]", arrayOf(typ("bool")), "{t,f,NULL}", []any{true, false, nil}},
		{"float8[]", arrayOf(typ("float8")), "{1.5,-Infinity,NaN}", []any{1.5, math.Inf(-1), math.NaN()}},
		{"text[] quoting", arrayOf(typ("text")), `{plain,"a b","NULL",NULL,"","q\"uote","back\\slash","{brace}","a,b"}`,
			[]any{"plain", "a b", "NULL", nil, "", `q"uote`, `back\slash`, "{brace}", "a,b"}},
		{"text[] unicode", arrayOf(typ("text")), `{Zoë,"日本 語"}`, []any{"Zoë", "日本 語"}},
		{"varchar[][]", arrayOf(typ("varchar")), `{{a,"b c"},{NULL,d}}`, []any{"a", "b c", nil, "d"}},
		{"numeric(10,2)[]", arrayOf(numericType(10, 2)), "{1.50,-0.01,NULL}", []any{[]byte{0x00, 0x96}, []byte{0xff}, nil}},
		{"numeric[] unconstrained", arrayOf(typ("numeric")), "{1.5,NaN,Infinity}", []any{"1.5", "NaN", "Infinity"}},
		{"bytea[]", arrayOf(typ("bytea")), `{"\\x00ff","\\x",NULL}`, []any{[]byte{0, 0xff}, []byte{}, nil}},
		{"uuid[]", arrayOf(typ("uuid")), "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}", []any{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", nil}},
		{"date[]", arrayOf(typ("date")), "{1970-01-02,infinity,\"0044-03-15 BC\"}", []any{1, math.MaxInt32, days(-43, 3, 15)}},
		{"time[]", arrayOf(typ("time")), "{24:00:00,00:00:00.5}", []any{int64(24 * hour), int64(500_000)}},
		{"timestamptz[]", arrayOf(typ("timestamptz")), `{"2024-01-02 03:04:05.123456+00",-infinity}`, []any{micros(2024, 1, 2, 3, 4, 5, 123456), int64(math.MinInt64)}},
		{"timestamp[]", arrayOf(typ("timestamp")), `{"10000-01-01 00:00:00"}`, []any{micros(10000, 1, 1, 0, 0, 0, 0)}},
		{"interval[]", arrayOf(typ("interval")), "{P1D,NULL,PT-1S}", []any{iv(0, 1, 0), nil, iv(0, 0, -1_000_000)}},
		{"jsonb[]", arrayOf(typ("jsonb")), `{"{\"a\": [1, 2]}",null}`, []any{`{"a": [1, 2]}`, "null"}},
		{"box[] semicolon", arrayOf(box), "{(3,4),(1,2);(0,0),(0,0);NULL}", []any{"(3,4),(1,2)", "(0,0),(0,0)", nil}},
		{"point[]", arrayOf(Type{Name: "point", Category: 'G'}), `{"(1,2)","(-0.5,3e+20)"}`, []any{"(1,2)", "(-0.5,3e+20)"}},
		{"composite[]", arrayOf(Type{Name: "pair", Category: 'C'}), `{"(1,\"x y\")",NULL}`, []any{`(1,"x y")`, nil}},
		{"enum[]", arrayOf(Type{Name: "mood", Category: 'E'}), "{happy,sad}", []any{"happy", "sad"}},
		{"int4range[]", arrayOf(Type{Name: "int4range", Category: 'R'}), `{"[1,5)",empty}`, []any{"[1,5)", "empty"}},
		{"hstore[]", arrayOf(typ("hstore")), `{"\"a\"=>\"1\"",""}`, []any{map[string]any{"a": "1"}, map[string]any{}}},
		{"int2vector stays text", Type{Name: "int2vector", Category: 'A', Elem: &Type{Name: "int2"}}, "1 2 3", "1 2 3"},

		// hstore
		{"hstore", typ("hstore"), `"a"=>"1", "b"=>NULL`, map[string]any{"a": "1", "b": nil}},
		{"hstore empty", typ("hstore"), ``, map[string]any{}},
		{"hstore escapes", typ("hstore"), `"q\"k"=>"back\\slash", "NULL"=>"NULL", ""=>""`, map[string]any{`q"k`: `back\slash`, "NULL": "NULL", "": ""}},
		{"hstore spaces and arrows", typ("hstore"), `"a b"=>"c => d, e"`, map[string]any{"a b": "c => d, e"}},

		// text forms
		{"money", typ("money"), "-$1,234.56", "-$1,234.56"},
		{"bit", typ("bit"), "0101", "0101"},
		{"varbit", typ("varbit"), "", ""},
		{"inet", typ("inet"), "192.168.0.1/24", "192.168.0.1/24"},
		{"cidr", typ("cidr"), "::1/128", "::1/128"},
		{"macaddr", typ("macaddr"), "08:00:2b:01:02:03", "08:00:2b:01:02:03"},
		{"macaddr8", typ("macaddr8"), "08:00:2b:01:02:03:04:05", "08:00:2b:01:02:03:04:05"},
		{"tsvector", typ("tsvector"), "'a':1 'fat':2", "'a':1 'fat':2"},
		{"tsquery", typ("tsquery"), "'fat' & 'rat'", "'fat' & 'rat'"},
		{"int4range", Type{Name: "int4range", Category: 'R'}, "[1,5)", "[1,5)"},
		{"tstzrange", Type{Name: "tstzrange", Category: 'R'}, `["2024-01-01 00:00:00+00",infinity)`, `["2024-01-01 00:00:00+00",infinity)`},
		{"int4multirange", Type{Name: "int4multirange", Category: 'R'}, "{[1,3),[5,7)}", "{[1,3),[5,7)}"},
		{"point", typ("point"), "(1,2)", "(1,2)"},
		{"line", typ("line"), "{1,-1,0}", "{1,-1,0}"},
		{"lseg", typ("lseg"), "[(0,0),(1,1)]", "[(0,0),(1,1)]"},
		{"box", typ("box"), "(1,1),(0,0)", "(1,1),(0,0)"},
		{"path", typ("path"), "[(0,0),(1,1)]", "[(0,0),(1,1)]"},
		{"polygon", typ("polygon"), "((0,0),(1,1),(1,0))", "((0,0),(1,1),(1,0))"},
		{"circle", typ("circle"), "<(0,0),1>", "<(0,0),1>"},
		{"xml", typ("xml"), "<a x=\"1\">b</a>", "<a x=\"1\">b</a>"},
		{"composite", Type{Name: "pair", Category: 'C'}, `(1,"x y")`, `(1,"x y")`},
		{"unknown base type", Type{Name: "ltree", Category: 'U', OID: 99999}, "a.b.c", "a.b.c"},
		{"char", typ("char"), "x", "x"},
		{"timetz", typ("timetz"), "24:00:00+00", "24:00:00+00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, nullable := range []bool{false, true} {
				got, err := encodeFormat(t, tt.ty, nullable, Datum{Text: []byte(tt.text)}, FormatConfig{})
				if err != nil {
					t.Fatalf("encoding %q: %v", tt.text, err)
				}
				got = unwrapItems(got)
				if w, ok := tt.want.([]any); ok {
					g, ok := got.([]any)
					if !ok || len(g) != len(w) {
						t.Fatalf("got %T %v, want %v", got, got, w)
					}
					for i := range w {
						if w[i] == nil {
							if g[i] != nil {
								t.Errorf("element %d: got %v, want null", i, g[i])
							}
							continue
						}
						checkValue(t, g[i], w[i])
					}
					continue
				}
				checkValue(t, got, tt.want)
			}
		})
	}
}

func TestTypeFamiliesBadText(t *testing.T) {
	tests := []struct {
		name    string
		ty      Type
		text    string
		wantErr string
	}{
		{"interval empty", typ("interval"), "", "invalid syntax"},
		{"interval P", typ("interval"), "P", "invalid syntax"},
		{"interval PT", typ("interval"), "PT", "invalid syntax"},
		{"interval postgres style", typ("interval"), "1 year 2 mons", "invalid syntax"},
		{"interval units out of order", typ("interval"), "P1D2Y", "invalid syntax"},
		{"interval unit twice", typ("interval"), "P1Y1Y", "invalid syntax"},
		{"interval hours before T", typ("interval"), "P1H", "invalid syntax"},
		{"interval days after T", typ("interval"), "PT1D", "invalid syntax"},
		{"interval fraction of minutes", typ("interval"), "PT1.5M", "invalid syntax"},
		{"interval 7 fraction digits", typ("interval"), "PT0.1234567S", "invalid syntax"},
		{"interval no unit", typ("interval"), "P12", "invalid syntax"},
		{"interval micros overflow", typ("interval"), "PT2562047788H54.775808S", "out of range"},
		{"interval hours overflow", typ("interval"), "PT9999999999999H", "out of range"},
		{"interval months overflow", typ("interval"), "P178956970Y8M", "out of range"},
		{"interval years overflow", typ("interval"), "P9999999999Y", "out of range"},
		{"array no braces", arrayOf(typ("int4")), "1,2", "invalid syntax"},
		{"array unclosed", arrayOf(typ("int4")), "{1,2", "invalid syntax"},
		{"array trailing", arrayOf(typ("int4")), "{1,2}x", "invalid syntax"},
		{"array empty element", arrayOf(typ("int4")), "{1,,2}", "invalid syntax"},
		{"array trailing delimiter", arrayOf(typ("int4")), "{1,}", "invalid syntax"},
		{"array unclosed quote", arrayOf(typ("text")), `{"abc}`, "invalid syntax"},
		{"array bad bounds", arrayOf(typ("int4")), "[1:]={1}", "invalid syntax"},
		{"array bounds without =", arrayOf(typ("int4")), "[0:1]{1,2}", "invalid syntax"},
		{"array bad element", arrayOf(typ("int4")), "{1,x,3}", "element 2: invalid syntax"},
		{"array quoted bad element", arrayOf(typ("int4")), `{1,"2 "}`, "element 2: invalid syntax"},
		{"array element overflow", arrayOf(typ("int2")), "{32768}", "element 1: value out of range"},
		{"array NaN decimal fails by default", arrayOf(numericType(10, 2)), "{1,NaN}", "element 2: NaN or infinity"},
		{"hstore unquoted", typ("hstore"), `a=>1`, "invalid syntax"},
		{"hstore no arrow", typ("hstore"), `"a" "b"`, "invalid syntax"},
		{"hstore trailing comma", typ("hstore"), `"a"=>"b", `, "invalid syntax"},
		{"hstore unclosed", typ("hstore"), `"a"=>"b`, "invalid syntax"},
		{"hstore junk after", typ("hstore"), `"a"=>"b" x`, "invalid syntax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := encodeFormat(t, tt.ty, true, Datum{Text: []byte(tt.text)}, FormatConfig{})
			if err == nil {
				t.Fatalf("no error for %q", tt.text)
			}
			var ce *ColumnError
			if !errors.As(err, &ce) || ce.Column != "v" || ce.Table != "public.orders" {
				t.Errorf("error %v is not a ColumnError naming the column", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestDecimalPolicies covers format.decimalHandling and
// format.nonFiniteDecimal.
func TestDecimalPolicies(t *testing.T) {
	dec := numericType(10, 2)
	nullPolicy := FormatConfig{NonFiniteDecimal: "null"}
	asString := FormatConfig{DecimalHandling: "string"}
	for _, text := range []string{"NaN", "Infinity", "-Infinity"} {
		// fail (default): the error names the table, the column and the keys.
		_, err := encodeFormat(t, dec, true, Datum{Text: []byte(text)}, FormatConfig{})
		var ce *ColumnError
		if !errors.As(err, &ce) || ce.Column != "v" || ce.Table != "public.orders" ||
			!strings.Contains(err.Error(), "format.nonFiniteDecimal: null") || !strings.Contains(err.Error(), "format.decimalHandling: string") {
			t.Errorf("%s, fail: error %v", text, err)
		}
		// null: null in a nullable column...
		got, err := encodeFormat(t, dec, true, Datum{Text: []byte(text)}, nullPolicy)
		if err != nil || got != nil {
			t.Errorf("%s, null, nullable: %v, %v", text, got, err)
		}
		// ...and in array elements...
		got, err = encodeFormat(t, arrayOf(dec), false, Datum{Text: []byte("{1.00," + text + "}")}, nullPolicy)
		if a, ok := got.([]any); err != nil || !ok || len(a) != 2 || a[1] != nil {
			t.Errorf("%s, null, array: %v, %v", text, got, err)
		}
		// ...still an error in a non-nullable column, naming what to change.
		_, err = encodeFormat(t, dec, false, Datum{Text: []byte(text)}, nullPolicy)
		if !errors.As(err, &ce) || ce.Column != "v" || !strings.Contains(err.Error(), "format.decimalHandling: string") {
			t.Errorf("%s, null, not nullable: error %v", text, err)
		}
		// string: the text.
		got, err = encodeFormat(t, dec, false, Datum{Text: []byte(text)}, asString)
		if err != nil || got != text {
			t.Errorf("%s, string: %v, %v", text, got, err)
		}
	}
	// A NaN in a key column fails under the null policy too.
	c, err := NewCodec(testTable([]Column{{Name: "k", Type: dec}}, []int{0}), nullPolicy, testSource)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AppendKey(nil, datums("NaN")); err == nil || !strings.Contains(err.Error(), `column "k"`) {
		t.Errorf("NaN key: %v", err)
	}
	// string: finite values keep their exact text, arrays too.
	got, err := encodeFormat(t, dec, true, Datum{Text: []byte("-12.50")}, asString)
	if err != nil || got != "-12.50" {
		t.Errorf("string: %v, %v", got, err)
	}
	got, err = encodeFormat(t, arrayOf(dec), true, Datum{Text: []byte("{1.50,NaN}")}, asString)
	if a, ok := got.([]any); err != nil || !ok || len(a) != 2 || a[0] != "1.50" || a[1] != "NaN" {
		t.Errorf("string array: %v, %v", got, err)
	}
	c, err = NewCodec(testTable([]Column{{Name: "d", Type: dec}}, nil), asString, testSource)
	if err != nil || !strings.Contains(c.ValueSchema(), `{"name":"d","type":"string"}`) {
		t.Errorf("string schema: %v %s", err, c.ValueSchema())
	}
	// Bad spellings are configuration errors with their key paths.
	for _, f := range []FormatConfig{{DecimalHandling: "double"}, {NonFiniteDecimal: "zero"}} {
		_, err := NewCodec(testTable(orderColumns(), nil), f, testSource)
		if err == nil || !strings.Contains(err.Error(), "format.") || f.Validate() == nil {
			t.Errorf("%+v: %v", f, err)
		}
	}
	var f FormatConfig
	f.SetDefaults()
	if f.DecimalHandling != "precise" || f.NonFiniteDecimal != "fail" || f.Validate() != nil {
		t.Errorf("defaults %+v", f)
	}
}

// TestUnchangedToastComplex covers the unavailable marker in arrays and maps.
func TestUnchangedToastComplex(t *testing.T) {
	for _, tt := range []struct {
		name string
		ty   Type
		want any
	}{
		{"text[]", arrayOf(typ("text")), []any{UnavailableValue}},
		{"bytea[]", arrayOf(typ("bytea")), []any{[]byte(UnavailableValue)}},
		{"hstore", typ("hstore"), map[string]any{UnavailableValue: UnavailableValue}},
		{"int4[]", arrayOf(typ("int4")), nil},
		{"interval", typ("interval"), nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := encodeFormat(t, tt.ty, true, Datum{Unchanged: true}, FormatConfig{})
			if tt.want == nil {
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("error %v, want ErrUnavailable", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if w, ok := tt.want.([]any); ok {
				g, ok := got.([]any)
				if !ok || len(g) != 1 {
					t.Fatalf("got %v", got)
				}
				checkValue(t, g[0], w[0])
				return
			}
			checkValue(t, got, tt.want)
		})
	}
}

// TestNewTypesZeroValues: a key-only replica identity's delete nulls.
func TestNewTypesZeroValues(t *testing.T) {
	cols := []Column{
		{Name: "id", Type: typ("int4")},
		{Name: "iv", Type: typ("interval")},
		{Name: "a", Type: arrayOf(typ("int4"))},
		{Name: "h", Type: typ("hstore")},
	}
	c := mustCodec(t, testTable(cols, []int{0}), EnvelopeFlat)
	b, err := c.AppendValue(nil, &Event{Op: OpDelete, Before: []Datum{{Text: []byte("1")}, {Null: true}, {Null: true}, {Null: true}}, LSN: -1})
	if err != nil {
		t.Fatal(err)
	}
	m := decode(t, parse(t, c.ValueSchema()), b, 0)
	checkValue(t, m["iv"], iv(0, 0, 0))
	if a, ok := m["a"].([]any); !ok || len(a) != 0 {
		t.Errorf("a = %v", m["a"])
	}
	if h, ok := m["h"].(map[string]any); !ok || len(h) != 0 {
		t.Errorf("h = %v", m["h"])
	}
}

// TestNewTypesNoAllocs: the new converters write without allocating.
func TestNewTypesNoAllocs(t *testing.T) {
	for _, tt := range []struct {
		ty   Type
		text string
	}{
		{typ("interval"), "P-1Y2M3DT4H5M6.789S"},
		{arrayOf(typ("int4")), "[0:1][1:2]={{1,2},{NULL,4}}"},
		{arrayOf(typ("text")), `{"a b","q\"uote",NULL,x}`},
		{arrayOf(typ("bytea")), `{"\\x00ff"}`},
		{arrayOf(typ("timestamptz")), `{"2024-01-02 03:04:05+00"}`},
		{arrayOf(typ("interval")), `{P1D,NULL}`},
		{typ("hstore"), `"a"=>"1", "b\"c"=>NULL`},
	} {
		conv := mapType(tt.ty, format{}).conv
		text := []byte(tt.text)
		buf := make([]byte, 0, 256)
		if n := testing.AllocsPerRun(100, func() {
			var err error
			if buf, err = conv(buf[:0], text); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s %q: %v allocations", tt.ty.Name, tt.text, n)
		}
	}
}
