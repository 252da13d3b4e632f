package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAuthCommandRotatedPassword: with source.auth command, each new
// connection authenticates with what the command prints at that moment.
// The role's password is rotated and every session of the capture ended
// (as a token expiring and a server dropping connections would): the
// capture reconnects with the new password and loses and repeats nothing.
func TestAuthCommandRotatedPassword(t *testing.T) {
	s := newStack(t)
	role := "rotating_" + s.db.Name
	s.db.CreateRole(t, role, "pw-1", "LOGIN", "SUPERUSER")
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte("pw-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := readFile(t, s.config(t, role, "unused", countersBinding))
	text = strings.Replace(text, "  password: unused\n", "  auth: command\n  authCommand: [cat, "+pwFile+"]\n", 1)
	path := writeConfig(t, text)

	ctr := newCounters(t, s.db, 10)
	c := startCapture(t, path)
	ctr.seed(t)
	stop := make(chan struct{})
	written := ctr.write(t, s.db.DSN(), stop)
	time.Sleep(500 * time.Millisecond)

	s.db.Exec(t, `ALTER ROLE "`+role+`" PASSWORD 'pw-2'`)
	if err := os.WriteFile(pwFile, []byte("pw-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.db.Exec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '`+role+`'`)
	c.waitLog(t, "retrying from the last checkpoint", 30*time.Second)
	time.Sleep(time.Second)
	n := finishWrites(t, s, c, ctr, stop, written)
	if logs := c.logs.String(); strings.Contains(logs, "pw-1") || strings.Contains(logs, "pw-2") {
		t.Errorf("a password reached the log:\n%s", logs)
	}
	t.Logf("%d writer transactions across a password rotation", n)
}
