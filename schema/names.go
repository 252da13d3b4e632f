package schema

import (
	"strings"
	"unicode/utf8"
)

// SanitizeName turns s into a valid Avro name ([A-Za-z_][A-Za-z0-9_]*): every
// other character (each rune, not each byte) becomes '_', a leading digit gets
// a '_' prefix, and the empty string becomes "_". Distinct column names can
// collide once sanitized ("a-b" and "a_b"); NewCodec rejects such tables.
func SanitizeName(s string) string {
	if validName(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 1)
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		b.WriteByte('_')
	}
	for _, r := range s {
		if r < utf8.RuneSelf && nameChar(byte(r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// SanitizeNamespace sanitizes each dot-separated part of an Avro namespace.
func SanitizeNamespace(ns string) string {
	parts := strings.Split(ns, ".")
	for i, p := range parts {
		parts[i] = SanitizeName(p)
	}
	return strings.Join(parts, ".")
}

func nameChar(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func validName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := range len(s) {
		if !nameChar(s[i]) {
			return false
		}
	}
	return true
}
