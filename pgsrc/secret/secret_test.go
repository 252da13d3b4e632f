package secret

import (
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
