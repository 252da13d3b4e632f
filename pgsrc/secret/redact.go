package secret

import (
	"cmp"
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
