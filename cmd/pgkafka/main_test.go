package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

// The package's PostgreSQL cluster and pgkafka binary, made once in TestMain.
var (
	cluster *pgtest.Cluster
	binary  string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pgkafka-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "pgkafka")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building pgkafka: %v\n%s", err, out)
		return 1
	}
	c, err := pgtest.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting PostgreSQL:", err)
		return 1
	}
	defer c.Close()
	cluster = c
	return m.Run()
}

// pgkafka runs the command in process and returns its exit code and what
// it printed (stdout then stderr).
func pgkafka(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if len(args) > 0 {
		// Flags before the positional arguments (flag parsing stops there).
		args = append([]string{args[0], "--log-format", "text"}, args[1:]...)
	}
	code := run(args, &stdout, &stderr)
	return code, stdout.String() + stderr.String()
}

// writeConfig writes a configuration file and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pgkafka.yaml")
	if err := os.WriteFile(p, []byte(strings.TrimLeft(yaml, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
