package pgsrc

import "testing"

func TestOneElement(t *testing.T) {
	tests := []struct {
		lit, want string
		ok        bool
	}{
		{`{5}`, "5", true},
		{`{1.50}`, "1.50", true},
		{`{"he said \"hi\", {x}"}`, `he said "hi", {x}`, true},
		{`{"{1,2}"}`, "{1,2}", true},
		{`{"a\\b"}`, `a\b`, true},
		{`{""}`, "", true},
		{`{NULL}`, "", false},
		{`{"NULL"}`, "NULL", true},
		{`{1,2}`, "", false},
		{`{"a"b"}`, "", false},
		{`{"a\"}`, "", false},
		{`5`, "", false},
		{`{}`, "", false},
	}
	for _, tt := range tests {
		got, ok := oneElement(tt.lit)
		if got != tt.want || ok != tt.ok {
			t.Errorf("oneElement(%s) = %q, %v; want %q, %v", tt.lit, got, ok, tt.want, tt.ok)
		}
	}
}
