package secret

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	s := String("hunter2")
	var buf strings.Builder
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "password", s)
	holder := struct{ Password String }{s}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %q %#v", s, s, s, s), fmt.Sprintf("%+v", holder), fmt.Sprintf("%#v", holder), buf.String()} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("secret leaked: %s", out)
		}
	}
	if String("").String() != "" {
		t.Error("empty secret prints something")
	}
	if string(s) != "hunter2" {
		t.Errorf("string(s) = %q", string(s))
	}
}

type codedError struct{ code string }

func (e *codedError) Error() string {
	return "failed at http://bob:hunter2@h:1/x (code " + e.code + ")"
}

func TestRedactor(t *testing.T) {
	r := NewRedactor("hunter2", "bob:hunter2", "", "ab", "hunter2")
	if got, want := r.Redact("GET http://bob:hunter2@h:1/x: hunter2 rejected, ab"), "GET http://[redacted]@h:1/x: [redacted] rejected, ab"; got != want {
		t.Errorf("Redact = %q, want %q", got, want)
	}

	inner := &codedError{code: "42"}
	err := r.Error(fmt.Errorf("registering: %w", inner))
	if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "h:1/x (code 42)") {
		t.Errorf("Error() = %q", err)
	}
	var ce *codedError
	if !errors.As(err, &ce) || !errors.Is(err, inner) {
		t.Errorf("the redacted error lost its chain: %v", err)
	}
	clean := errors.New("nothing secret")
	if r.Error(clean) != clean || r.Error(nil) != nil {
		t.Error("an error without secrets is not returned as it is")
	}

	for _, empty := range []*Redactor{nil, {}, NewRedactor(), NewRedactor("", "x")} {
		if !empty.Empty() || empty.Redact("hunter2") != "hunter2" || empty.Error(inner) != error(inner) {
			t.Errorf("%+v redacts something", empty)
		}
	}
}
