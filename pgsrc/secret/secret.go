// Package secret holds String, the type of every password and token in
// pgkafka's configuration: a string that never prints; and Redactor, which
// removes such strings from what libraries wrote without knowing them
// (their errors, their log lines); and Command, which runs the helper
// program that prints a short-lived token.
//
// It depends on nothing of ours and owns nothing but these, so that every
// package that holds a credential (pgsrc, schema, pipeline) can share them:
// the one exception to the rule that the leaves import nothing of ours
// outside their own tree (STYLE §1, the import test in cmd/pgkafka).
package secret

import "log/slog"

// String is a string that never prints: String, GoString and LogValue
// redact it. string(s) is the value, for the one call that needs it.
type String string

// Redacted is what a non-empty String prints.
const Redacted = "[redacted]"

// String implements fmt.Stringer and redacts the secret.
func (s String) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// GoString redacts the secret in %#v.
func (s String) GoString() string { return s.String() }

// LogValue implements slog.LogValuer and redacts the secret.
func (s String) LogValue() slog.Value { return slog.StringValue(s.String()) }
