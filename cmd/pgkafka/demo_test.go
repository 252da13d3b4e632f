package main

import (
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDemoShowsRecordsAndCleansUp runs `pgkafka demo` as a user would: it
// must print decoded change records within a minute and, on Ctrl-C, stop
// with exit 0 and remove its cluster.
func TestDemoShowsRecordsAndCleansUp(t *testing.T) {
	cmd := exec.Command(binary, "demo")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	// Records, a delete among them, and the header printed again.
	deadline := time.Now().Add(time.Minute)
	for strings.Count(out.String(), "op=") < demoHeaderEvery+5 || !strings.Contains(out.String(), "op=d") {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d decoded records, or no delete, after a minute:\n%s", demoHeaderEvery+5, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	text := out.String()
	for _, want := range []string{"orders ", "op=c", "key={id:", "amount:"} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "read them yourself: kcat -b "); n < 2 {
		t.Errorf("the header with the kcat command was printed %d times in %d records:\n%s", n, strings.Count(text, "op="), text)
	}
	// A delete of a table without REPLICA IDENTITY FULL shows its key, not
	// a row of zeros and 1970 dates.
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "op=d") && (!strings.Contains(line, "key={id:") || strings.Contains(line, "row=") || strings.Contains(line, "1970")) {
			t.Errorf("a delete line shows more than its key: %s", line)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo exit after Ctrl-C: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("demo still running 30s after Ctrl-C:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "stopped and cleaned up") {
		t.Errorf("no clean-up message:\n%s", out.String())
	}
	// Its PostgreSQL is gone: nothing serves the address it printed.
	line := out.String()[strings.Index(out.String(), "PostgreSQL at ")+len("PostgreSQL at "):]
	addr := line[:strings.IndexByte(line, ' ')]
	if out, err := exec.Command("bash", "-c", "exec 3<>/dev/tcp/"+strings.Replace(addr, ":", "/", 1)).CombinedOutput(); err == nil {
		t.Errorf("the demo's PostgreSQL at %s still accepts connections after exit (%s)", addr, out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
