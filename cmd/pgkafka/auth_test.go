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

// TestCheckReportsAuthProblems: `pgkafka check` names what failed and what
// to fix when source.auth cannot make a password (the command fails) or
// the server refuses the one it made, and prints neither password.
func TestCheckReportsAuthProblems(t *testing.T) {
	s := newStack(t)
	role := "checked_" + s.db.Name
	s.db.CreateRole(t, role, "right-pw", "LOGIN", "REPLICATION")
	base := readFile(t, s.config(t, role, "unused", countersBinding))
	withCommand := func(argv string) string {
		return writeConfig(t, strings.Replace(base, "  password: unused\n", "  auth: command\n  authCommand: "+argv+"\n", 1))
	}

	code, out := pgkafka(t, "check", "-c", withCommand(`[sh, -c, "echo half-secret; echo token service unreachable >&2; exit 3"]`))
	if code != 1 || !strings.Contains(out, "source.authCommand") || !strings.Contains(out, "token service unreachable") || !strings.Contains(out, "exit status 3") {
		t.Errorf("a failing auth command: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "half-secret") {
		t.Errorf("the command's output reached the report:\n%s", out)
	}

	code, out = pgkafka(t, "check", "-c", withCommand(`[echo, wrong-pw]`))
	if code != 1 || !strings.Contains(out, "password authentication failed") || !strings.Contains(out, "check what source.authCommand prints") {
		t.Errorf("a password the server refuses: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "wrong-pw") || strings.Contains(out, "right-pw") {
		t.Errorf("a password reached the report:\n%s", out)
	}
}
