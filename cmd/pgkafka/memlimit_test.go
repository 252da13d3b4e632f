package main

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

// TestRunMemoryLimit: `pgkafka run` sets the Go runtime's soft memory
// limit to 100 MiB (go_gc_gomemlimit_bytes) unless GOMEMLIMIT sets
// another.
func TestRunMemoryLimit(t *testing.T) {
	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY, v text)`)
	path := s.config(t, pgtest.Superuser, cluster.SuperuserPassword(), ordersBinding)
	for _, c := range []struct {
		env  string
		want float64
	}{
		{"", 100 << 20},
		{"GOMEMLIMIT=300MiB", 300 << 20},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		cmd := exec.Command(binary, "run", "-c", path, "--log-format", "text", "--set", "metrics.address="+addr)
		cmd.Env = os.Environ()
		if c.env != "" {
			cmd.Env = append(cmd.Env, c.env)
		}
		var stderr syncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, func() bool { return strings.Contains(stderr.String(), "serving metrics") }, &stderr)
		got := value(scrape(t, "http://"+addr+"/metrics"), "go_gc_gomemlimit_bytes", "", "")
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%s: exit after SIGTERM: %v\n%s", c.env, err, &stderr)
		}
		if got != c.want {
			t.Errorf("env %q: go_gc_gomemlimit_bytes %v, want %v", c.env, got, c.want)
		}
	}
}
