package schema

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

func compatCols(extra ...Column) []Column {
	return append([]Column{{Name: "id", Type: typ("int4")}, {Name: "qty", Type: typ("int4"), Nullable: true}}, extra...)
}

func TestIncompatibilities(t *testing.T) {
	base := compatCols(Column{Name: "price", Type: numericType(10, 2)}, Column{Name: "note", Type: typ("text")})
	with := func(i int, c Column) []Column {
		cols := append([]Column(nil), base...)
		if i == len(cols) {
			return append(cols, c)
		}
		cols[i] = c
		return cols
	}
	tests := []struct {
		name string
		cols []Column
		key  []int
		want []string // substrings of the problems; none: compatible
	}{
		{"same", base, []int{0}, nil},
		{"nullable column added", with(4, Column{Name: "n", Type: typ("text"), Nullable: true}), []int{0}, nil},
		{"not null column with a default", with(4, Column{Name: "n", Type: typ("int4"), HasDefault: true, Default: "7"}), []int{0}, nil},
		{"not null column without a default", with(4, Column{Name: "n", Type: typ("int4")}), []int{0}, []string{"field Value.n is new and has no default"}},
		{"int to bigint", with(1, Column{Name: "qty", Type: typ("int8"), Nullable: true}), []int{0}, nil},
		{"text to integer", with(3, Column{Name: "note", Type: typ("int4")}), []int{0}, []string{"field Value.note: written as string, which the new type int cannot read"}},
		{"nullable to not null", with(1, Column{Name: "qty", Type: typ("int4")}), []int{0}, []string{"field Value.qty: written as null"}},
		{"decimal scale", with(2, Column{Name: "price", Type: numericType(12, 4)}), []int{0}, []string{"field Value.price: written as bytes (decimal(10,2))"}},
		{"decimal precision grows", with(2, Column{Name: "price", Type: numericType(12, 2)}), []int{0}, nil},
		{"text to uuid", with(3, Column{Name: "note", Type: typ("uuid")}), []int{0}, []string{"field Value.note: written as string, which reads differently as string (uuid)"}},
		{"renamed with alias", with(3, Column{Name: "memo", Type: typ("text"), Aliases: []string{"note"}}), []int{0}, nil},
		{"renamed without alias", with(3, Column{Name: "memo", Type: typ("text")}), []int{0}, []string{"field Value.memo is new"}},
		{"key grows", base, []int{0, 3}, []string{"key fields (id, note) were (id)"}},
	}
	old := mustCodec(t, testTable(base, []int{0}), EnvelopeDebezium)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := mustCodec(t, testTable(tt.cols, tt.key), EnvelopeDebezium)
			got := append(incompatibilities(next.ValueAvro(), old.ValueAvro(), false), incompatibilities(next.KeyAvro(), old.KeyAvro(), true)...)
			if len(tt.want) == 0 && len(got) > 0 {
				t.Fatalf("problems %q, want none", got)
			}
			for _, w := range tt.want {
				found := false
				for _, p := range got {
					found = found || strings.Contains(p, w)
				}
				if !found {
					t.Errorf("problems %q lack %q", got, w)
				}
			}
			// Where hamba/avro's resolution refuses, so do we.
			if err := CheckBackward(old.ValueSchema(), next.ValueSchema()); err != nil && len(got) == 0 {
				t.Errorf("CheckBackward: %v, but no problem found", err)
			}
		})
	}
}

func TestDefaultJSON(t *testing.T) {
	tests := []struct {
		typ  Type
		text string
		want string // "": no default
	}{
		{typ("int4"), "7", "7"},
		{typ("int8"), "-42", "-42"},
		{typ("int8"), "9007199254740993", ""},
		{typ("bool"), "t", "true"},
		{typ("float8"), "1.5", "1.5"},
		{typ("float8"), "NaN", ""},
		{typ("text"), `he said "hi"`, `"he said \"hi\""`},
		{typ("bytea"), `\x00ff41`, `"\u0000ÿA"`},
		{numericType(5, 2), "1.50", "\"\\u0000\u0096\""}, // 150 as two's complement: 00 96
		{typ("date"), "1970-01-02", "1"},
		{typ("interval"), "P1D", ""},
		{arrayOf(typ("int4")), "{1,2}", ""},
		{typ("int4"), "x", ""},
	}
	for _, tt := range tests {
		m := mapType(tt.typ, format{})
		got, ok := defaultJSON(&m, tt.text)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("%s %q: %q %v, want %q", tt.typ.Name, tt.text, got, ok, tt.want)
		}
		if ok {
			// The schema with it parses (hamba/avro validates defaults).
			c := mustCodec(t, testTable(compatCols(Column{Name: "n", Type: tt.typ, HasDefault: true, Default: tt.text}), []int{0}), EnvelopeDebezium)
			if !strings.Contains(c.ValueSchema(), `"default":`+got) {
				t.Errorf("%s: schema without the default: %s", tt.typ.Name, c.ValueSchema())
			}
		}
	}
}

func TestRegisterIncompatible(t *testing.T) {
	old := mustCodec(t, testTable(compatCols(Column{Name: "note", Type: typ("text")}), []int{0}), EnvelopeDebezium)
	next := func() *Codec {
		return mustCodec(t, testTable(compatCols(Column{Name: "note", Type: typ("int4")}), []int{0}), EnvelopeDebezium)
	}
	ctx := context.Background()
	for _, policy := range []string{"", "register"} {
		fake := srfake.New()
		t.Cleanup(fake.Close)
		reg, err := NewRegistry(RegistryConfig{URL: fake.URL(), OnIncompatible: policy})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Register(ctx, old); err != nil {
			t.Fatal(err)
		}
		// A second client (a restarted pgkafka) finds the old schema by lookup.
		reg2, _ := NewRegistry(RegistryConfig{URL: fake.URL(), OnIncompatible: policy})
		again := mustCodec(t, testTable(compatCols(Column{Name: "note", Type: typ("text")}), []int{0}), EnvelopeDebezium)
		if forced, err := reg2.Register(ctx, again); err != nil || forced != nil || again.valueHdr != old.valueHdr {
			t.Fatalf("%q: the registered schema again: %v %v", policy, forced, err)
		}
		forced, err := reg2.Register(ctx, next())
		_, v2 := fake.GetSchema("shop.public.orders-value", 2)
		if policy == "" {
			var inc *IncompatibleError
			if !errors.As(err, &inc) || len(inc.Fields()) != 1 || v2 {
				t.Fatalf("stop: %v; version 2 registered %v", err, v2)
			}
			continue
		}
		if err != nil || len(forced) != 1 || forced[0].Subject != "shop.public.orders-value" || forced[0].Version != 1 || !v2 {
			t.Fatalf("register: %+v %v; version 2 registered %v", forced, err, v2)
		}
		cl, _ := sr.NewClient(sr.URLs(fake.URL()))
		if res := cl.Compatibility(ctx, "shop.public.orders-value"); res[0].Level != sr.CompatNone {
			t.Errorf("compatibility %v, want NONE", res[0].Level)
		}
	}
}

func TestOnIncompatibleConfig(t *testing.T) {
	c := RegistryConfig{}
	c.SetDefaults()
	if c.OnIncompatible != "stop" {
		t.Errorf("default %q", c.OnIncompatible)
	}
	c.OnIncompatible = "ignore"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "schemaRegistry.onIncompatible") {
		t.Errorf("bad policy: %v", err)
	}
}
