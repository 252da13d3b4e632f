package secret

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
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

type point struct{ X, Y string }

func TestRedactorValue(t *testing.T) {
	r := NewRedactor("hunter2")
	var buf strings.Builder
	h := slog.NewJSONHandler(&buf, nil)
	v := slog.GroupValue(
		slog.String("s", "pw hunter2"),
		slog.Any("err", fmt.Errorf("dial: %w", errors.New("bob:hunter2@h"))),
		slog.Any("p", point{"hunter2", "y"}),
		slog.Int("n", 7),
		slog.Group("g", slog.String("deep", "hunter2")),
	)
	rec := slog.NewRecord(time.Time{}, slog.LevelInfo, "m", 0)
	rec.AddAttrs(slog.Attr{Key: "v", Value: r.Value(v)})
	if err := h.Handle(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "hunter2") {
		t.Errorf("secret in %s", out)
	}
	for _, want := range []string{`"s":"pw [redacted]"`, `"err":"dial: bob:[redacted]@h"`, `"n":7`, `"deep":"[redacted]"`, `"p":"{X:[redacted] Y:y}"`} {
		if !strings.Contains(out, want) {
			t.Errorf("%s lacks %s", out, want)
		}
	}
	if got := r.Value(slog.Int64Value(42)); got.Int64() != 42 {
		t.Errorf("an int became %v", got)
	}
}

func TestRedactorHandler(t *testing.T) {
	var buf strings.Builder
	log := slog.New(NewRedactor("hunter2").Handler(slog.NewTextHandler(&buf, nil)))
	log.With("dsn", "u:hunter2@h").WithGroup("g").Warn("failed with hunter2", "err", errors.New("hunter2 refused"), "n", 1)
	out := buf.String()
	if strings.Contains(out, "hunter2") {
		t.Errorf("secret in %s", out)
	}
	for _, want := range []string{`msg="failed with [redacted]"`, `dsn=u:[redacted]@h`, `g.err="[redacted] refused"`, "g.n=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("%s lacks %s", out, want)
		}
	}
	if h := slog.NewTextHandler(&buf, nil); NewRedactor().Handler(h) != slog.Handler(h) {
		t.Error("an empty Redactor wraps the handler")
	}
}
