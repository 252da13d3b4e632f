package secret

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// MinRedactLen is the length below which a secret is not searched for in
// free text: replacing every "ab" of a message would leave nothing of it to
// read. A URL's userinfo ("user:pw") is a longer secret of its own.
const MinRedactLen = 3

// Redactor removes secrets from text that code not knowing them wrote: the
// message of an error from a library (an HTTP client quoting a URL with its
// userinfo, a server echoing a request), a log line. The zero Redactor and
// a nil one remove nothing. It is safe for concurrent use.
type Redactor struct {
	r *strings.Replacer
}

// NewRedactor returns a Redactor of the given secrets; the empty ones and
// those shorter than MinRedactLen are left out.
func NewRedactor(secrets ...String) *Redactor {
	var ss []string
	for _, s := range secrets {
		if len(s) >= MinRedactLen && !slices.Contains(ss, string(s)) {
			ss = append(ss, string(s))
		}
	}
	if len(ss) == 0 {
		return &Redactor{}
	}
	// The longest first: a userinfo goes as a whole, not just its password.
	slices.SortStableFunc(ss, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	pairs := make([]string, 0, 2*len(ss))
	for _, s := range ss {
		pairs = append(pairs, s, Redacted)
	}
	return &Redactor{r: strings.NewReplacer(pairs...)}
}

// Empty reports whether r removes nothing.
func (r *Redactor) Empty() bool { return r == nil || r.r == nil }

// Redact returns s with every secret replaced by Redacted.
func (r *Redactor) Redact(s string) string {
	if r.Empty() {
		return s
	}
	return r.r.Replace(s)
}

// Error returns err itself when its message holds no secret, and otherwise
// an error whose message is err's redacted and which unwraps to err, so
// errors.Is and errors.As see what they saw before. nil stays nil.
func (r *Redactor) Error(err error) error {
	if err == nil || r.Empty() {
		return err
	}
	msg := err.Error()
	if red := r.r.Replace(msg); red != msg {
		return &redactedError{msg: red, err: err}
	}
	return err
}

// redactedError is an error's redacted message over the error.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Value returns v with the secrets removed from what it prints: a string,
// an error (see Error), a group's values, anything else formatted with %+v.
// Numbers, booleans, durations and times are returned as they are.
func (r *Redactor) Value(v slog.Value) slog.Value {
	if r.Empty() {
		return v
	}
	v = v.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.StringValue(r.r.Replace(v.String()))
	case slog.KindGroup:
		attrs := v.Group()
		out := make([]slog.Attr, len(attrs))
		for i, a := range attrs {
			out[i] = slog.Attr{Key: a.Key, Value: r.Value(a.Value)}
		}
		return slog.GroupValue(out...)
	case slog.KindAny:
		a := v.Any()
		if err, ok := a.(error); ok {
			return slog.AnyValue(r.Error(err))
		}
		s := fmt.Sprintf("%+v", a)
		if red := r.r.Replace(s); red != s {
			return slog.StringValue(red)
		}
	}
	return v
}

// Handler returns a slog.Handler that removes r's secrets from the message
// and the attributes (see Value) of each record before next handles it.
func (r *Redactor) Handler(next slog.Handler) slog.Handler {
	if r.Empty() {
		return next
	}
	return &handler{next: next, red: r}
}

type handler struct {
	next slog.Handler
	red  *Redactor
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.red.Redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(slog.Attr{Key: a.Key, Value: h.red.Value(a.Value)})
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = slog.Attr{Key: a.Key, Value: h.red.Value(a.Value)}
	}
	return &handler{next: h.next.WithAttrs(red), red: h.red}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name), red: h.red}
}
