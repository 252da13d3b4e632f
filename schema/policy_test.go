package schema

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
)

// TestPolicyCodec: a column policy changes the value schema and the values
// the codec writes, from text and binary datums alike; key columns refuse
// policies, truncate refuses non-string types.
func TestPolicyCodec(t *testing.T) {
	salt := []byte("s4lt")
	cols := []Column{
		{Name: "id", Type: typ("int4")},
		{Name: "email", Type: typ("text"), Nullable: true, Policy: Policy{Hash: "sha256", Salt: salt}},
		{Name: "age", Type: typ("int4"), Policy: Policy{Hash: "sha512", Salt: salt}},
		{Name: "notes", Type: typ("text"), Nullable: true, Policy: Policy{Mask: 3}},
		{Name: "bio", Type: typ("varchar"), Nullable: true, Policy: Policy{Truncate: 2, TruncateSet: true}},
		{Name: "secret", Type: typ("text"), Policy: Policy{Exclude: true}},
		{Name: "plain", Type: typ("text")},
	}
	c := mustCodec(t, testTable(cols, []int{0}), EnvelopeFlat)
	js := c.ValueSchema()
	if strings.Contains(js, `"secret"`) {
		t.Errorf("value schema has the excluded column: %s", js)
	}
	row := []Datum{{Text: []byte("1")}, {Text: []byte("a@b.c")}, {Text: []byte{0, 0, 0, 42}, Binary: true},
		{Text: []byte("private")}, {Text: []byte("ééé"), Binary: true}, {Text: []byte("SECRET")}, {Text: []byte("p")}}
	b, err := c.AppendValue(nil, &Event{Op: OpCreate, After: row, LSN: -1})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := avro.Unmarshal(parse(t, js), b[5:], &got); err != nil {
		t.Fatal(err)
	}
	h256 := sha256.Sum256([]byte("s4lta@b.c"))
	h512 := sha512.Sum512([]byte("s4lt42"))
	want := map[string]any{
		"email": hex.EncodeToString(h256[:]),
		"age":   hex.EncodeToString(h512[:]),
		"notes": "***",
		"bio":   "éé",
		"plain": "p",
	}
	for k, v := range want {
		if g := got[k]; g != v {
			t.Errorf("%s = %#v, want %#v", k, g, v)
		}
	}
	if _, ok := got["secret"]; ok || strings.Contains(string(b), "SECRET") || strings.Contains(string(b), "private") {
		t.Errorf("excluded or masked value written: %q", b)
	}
	if got := HashedValue("sha256", salt, []byte("a@b.c")); got != hex.EncodeToString(h256[:]) {
		t.Errorf("HashedValue = %s", got)
	}

	for _, tc := range []struct {
		col  Column
		key  bool
		want string
	}{
		{Column{Name: "id", Type: typ("int4"), Policy: Policy{Mask: 2}}, true, "key column"},
		{Column{Name: "n", Type: typ("int4"), Policy: Policy{Truncate: 2, TruncateSet: true}}, false, "not int4"},
		{Column{Name: "n", Type: typ("text"), Policy: Policy{Hash: "md4"}}, false, `unknown hash algorithm "md4"`},
	} {
		var key []int
		if tc.key {
			key = []int{0}
		}
		_, err := NewCodec(testTable([]Column{tc.col}, key), FormatConfig{}, testSource)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("column %+v: error %v, want %q", tc.col, err, tc.want)
		}
	}
}

func TestTruncateRunes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{{"abc", 5, "abc"}, {"abcdef", 3, "abc"}, {"ééé", 2, "éé"}, {"ab", 0, ""}, {"日本語テキスト", 3, "日本語"}} {
		if got := string(truncateRunes([]byte(tc.in), tc.n)); got != tc.want {
			t.Errorf("truncateRunes(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// TestPolicyCompatibility: what the registry's BACKWARD check says of a
// policy added between runs: excluding a column (a dropped field) and
// masking or hashing a string column pass; hashing or masking a column of
// another type (its field becomes a string) does not.
func TestPolicyCompatibility(t *testing.T) {
	cols := func(p, q Policy) []Column {
		return []Column{{Name: "id", Type: typ("int4")}, {Name: "email", Type: typ("text"), Nullable: true, Policy: p},
			{Name: "age", Type: typ("int4"), Policy: q}}
	}
	older := mustCodec(t, testTable(cols(Policy{}, Policy{}), []int{0}), EnvelopeDebezium)
	for _, tc := range []struct {
		name       string
		p, q       Policy
		compatible bool
	}{
		{"exclude", Policy{Exclude: true}, Policy{Exclude: true}, true},
		{"hash a string", Policy{Hash: "sha256"}, Policy{}, true},
		{"mask a string", Policy{Mask: 3}, Policy{}, true},
		{"hash an int", Policy{}, Policy{Hash: "sha256"}, false},
		{"mask an int", Policy{}, Policy{Mask: 3}, false},
	} {
		newer := mustCodec(t, testTable(cols(tc.p, tc.q), []int{0}), EnvelopeDebezium)
		got := incompatibilities(newer.ValueAvro(), older.ValueAvro(), false)
		if (len(got) == 0) != tc.compatible {
			t.Errorf("%s: incompatibilities %v, want compatible %v", tc.name, got, tc.compatible)
		}
	}
	// Back: the excluded column's field returns, nullable: compatible.
	excluded := mustCodec(t, testTable(cols(Policy{Exclude: true}, Policy{}), []int{0}), EnvelopeDebezium)
	if got := incompatibilities(older.ValueAvro(), excluded.ValueAvro(), false); len(got) != 0 {
		t.Errorf("a nullable column no longer excluded: %v", got)
	}
}
