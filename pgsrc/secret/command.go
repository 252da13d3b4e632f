package secret

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// CommandTimeout bounds one run of a credential command.
const CommandTimeout = 30 * time.Second

// Command runs argv (no shell) and returns what it printed on stdout,
// trimmed: a token or password that a helper makes (gcloud, az, vault, a
// script). key is the configuration key of argv, for errors. An error
// holds the command's name and the first line of what it printed on
// stderr, never its stdout.
func Command(ctx context.Context, key string, argv []string) (String, error) {
	if len(argv) == 0 || argv[0] == "" {
		return "", fmt.Errorf("%s: no command", key)
	}
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg, _, _ := strings.Cut(strings.TrimSpace(stderr.String()), "\n")
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w after %s", err, CommandTimeout)
		}
		return "", fmt.Errorf("%s: running %q: %w: %s", key, argv[0], err, msg)
	}
	out := strings.TrimSpace(stdout.String())
	if out == "" {
		return "", fmt.Errorf("%s: %q printed nothing on stdout: it must print the token", key, argv[0])
	}
	return String(out), nil
}
