package pgtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/ssh"

	"github.com/pgkafka/pgkafka/pgsrc/secret"
	"github.com/pgkafka/pgkafka/pgsrc/tunnel"
)

// SSHDPath is the OpenSSH server a Bastion runs (Debian's openssh-server).
const SSHDPath = "/usr/sbin/sshd"

// Bastion is an OpenSSH server in a network namespace of its own, reached
// from the test's namespace through a veth pair. A cluster started
// WithBastion listens on the namespace's 127.0.0.1, where nothing but
// processes of the namespace (the bastion) reach it: a connection that
// works went through the SSH tunnel.
type Bastion struct {
	ns         string // network namespace
	dir        string // configuration, keys, log
	addr       string // the sshd's address, from the test: 10.x.y.2:22
	user       string
	privateKey string // the client's key, PEM
	hostKey    string // the server's public key, authorized_keys line

	mu  sync.Mutex
	cmd *exec.Cmd // the running sshd, nil when killed
}

// StartBastion makes a network namespace and starts sshd in it, both
// removed at the end of tb. It needs root, iproute2's ip and sshd: without
// them the test is skipped, unless the environment variable CI is "true",
// where it fails.
func StartBastion(tb testing.TB) *Bastion {
	tb.Helper()
	if msg := bastionMissing(); msg != "" {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s (CI=true: the CI image must provide it)", msg)
		}
		tb.Skipf("%s: skipping (with CI=true this fails)", msg)
	}
	var rnd [5]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		tb.Fatal(err)
	}
	b := &Bastion{ns: "pgk" + hex.EncodeToString(rnd[:3]), dir: tb.TempDir()}
	u, err := user.Current()
	if err != nil {
		tb.Fatal(err)
	}
	b.user = u.Username
	hostIP, nsIP := fmt.Sprintf("10.%d.%d.1", 64+rnd[3]%64, rnd[4]), fmt.Sprintf("10.%d.%d.2", 64+rnd[3]%64, rnd[4])
	b.addr = net.JoinHostPort(nsIP, "22")
	hostIf, nsIf := b.ns+"h", b.ns+"n"
	if err := ipCmd("netns", "add", b.ns); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := b.Kill(); err != nil {
			tb.Error(err)
		}
		if err := ipCmd("netns", "del", b.ns); err != nil {
			tb.Error(err)
		}
	})
	for _, args := range [][]string{
		{"link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", b.ns},
		{"addr", "add", hostIP + "/30", "dev", hostIf},
		{"link", "set", hostIf, "up"},
		{"-n", b.ns, "addr", "add", nsIP + "/30", "dev", nsIf},
		{"-n", b.ns, "link", "set", nsIf, "up"},
		{"-n", b.ns, "link", "set", "lo", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			tb.Fatal(err)
		}
	}
	if err := b.writeConfig(nsIP); err != nil {
		tb.Fatal(err)
	}
	if err := b.Start(); err != nil {
		tb.Fatal(err)
	}
	return b
}

func bastionMissing() string {
	switch {
	case os.Geteuid() != 0:
		return "an SSH bastion in a network namespace needs root"
	case !fileExists(SSHDPath):
		return SSHDPath + " not found: install Debian's openssh-server"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "ip not found: install Debian's iproute2"
	}
	return ""
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// writeConfig generates the host and client keys and sshd's configuration.
func (b *Bastion) writeConfig(listen string) error {
	hostPriv, hostPub, err := newKey()
	if err != nil {
		return err
	}
	clientPriv, clientPub, err := newKey()
	if err != nil {
		return err
	}
	b.privateKey, b.hostKey = clientPriv, strings.TrimSpace(hostPub)
	files := map[string]string{
		"host_ed25519":    hostPriv,
		"authorized_keys": clientPub,
		"sshd_config": strings.Join([]string{
			"ListenAddress " + net.JoinHostPort(listen, "22"),
			"HostKey " + filepath.Join(b.dir, "host_ed25519"),
			"AuthorizedKeysFile " + filepath.Join(b.dir, "authorized_keys"),
			"PermitRootLogin prohibit-password",
			"PubkeyAuthentication yes",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"UsePAM no",
			"StrictModes no",
			"PidFile none",
			"AllowTcpForwarding yes",
			"LogLevel VERBOSE",
			"",
		}, "\n"),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(b.dir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	// sshd's privilege separation directory, which systemd makes at boot.
	return os.MkdirAll("/run/sshd", 0o755)
}

// newKey returns a new ed25519 key: the private key in OpenSSH's PEM form
// and the public key as an authorized_keys line.
func newKey() (private, public string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return "", "", err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", "", err
	}
	return string(pem.EncodeToMemory(block)), string(ssh.MarshalAuthorizedKey(sshPub)), nil
}

// Start starts sshd (again, after Kill) and waits until it accepts
// connections.
func (b *Bastion) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		return errors.New("sshd is running")
	}
	logFile, err := os.OpenFile(filepath.Join(b.dir, "sshd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command("ip", "netns", "exec", b.ns, SSHDPath, "-D", "-e", "-f", filepath.Join(b.dir, "sshd_config"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting sshd: %w", err)
	}
	b.cmd = cmd
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // Kill reaps it through this
		close(exited)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.addr, time.Second)
		if err == nil {
			return c.Close()
		}
		select {
		case <-exited:
			b.cmd = nil
			return fmt.Errorf("sshd exited at start:\n%s", b.Log())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sshd not accepting connections at %s after 15s: %v\n%s", b.addr, err, b.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill kills sshd and the processes serving its connections (each
// connection's own sshd), as a crashed or rebooted bastion: every
// connection through the tunnel is cut.
func (b *Bastion) Kill() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return nil
	}
	var errs []error
	if err := b.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		errs = append(errs, err)
	}
	b.cmd = nil
	// The connections' processes run in the namespace: those named sshd
	// are the children of the one just killed (PostgreSQL's are not).
	out, err := exec.Command("ip", "netns", "pids", b.ns).Output()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("ip netns pids %s: %w", b.ns, err))...)
	}
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || !strings.HasPrefix(strings.TrimSpace(string(comm)), "sshd") {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("killing sshd %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

// Log is what sshd wrote.
func (b *Bastion) Log() string {
	out, err := os.ReadFile(filepath.Join(b.dir, "sshd.log"))
	if err != nil {
		return fmt.Sprintf("(unreadable: %v)", err)
	}
	return string(out)
}

// Namespace is the name of the bastion's network namespace.
func (b *Bastion) Namespace() string { return b.ns }

// Addr is sshd's address (host:port) as the test reaches it.
func (b *Bastion) Addr() string { return b.addr }

// Endpoint is the source.networkTunnel.sshForwarding.sshEndpoint of the
// bastion.
func (b *Bastion) Endpoint() string { return "ssh://" + b.user + "@" + b.addr }

// HostKey is the bastion's public host key, an authorized_keys line.
func (b *Bastion) HostKey() string { return b.hostKey }

// PrivateKey is the PEM private key the bastion accepts.
func (b *Bastion) PrivateKey() string { return b.privateKey }

// Tunnel is the source.networkTunnel.sshForwarding block that reaches
// the bastion, its host key pinned.
func (b *Bastion) Tunnel() tunnel.Config {
	return tunnel.Config{SSHEndpoint: b.Endpoint(), PrivateKey: secret.String(b.privateKey), HostKey: b.hostKey}
}

// WithBastion starts the cluster in b's network namespace, listening on
// its 127.0.0.1 alone: only b reaches it. The package's own connections
// (NewDatabase, Exec, Conn) go through b's tunnel, and DB.SourceConfig
// sets source.networkTunnel to it. DSN strings do not reach such a
// cluster.
func WithBastion(b *Bastion) Option {
	return func(o *options) { o.bastion = b }
}

// connect opens a connection from a DSN of this cluster: through the
// bastion's tunnel when the cluster has one.
func (c *Cluster) connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if c.bastion != nil {
		t := c.bastion.Tunnel()
		d, err := tunnel.NewDialer(&t, "pgtest bastion")
		if err != nil {
			return nil, err
		}
		cfg.DialFunc = d.DialContext
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// netnsArgs prefixes a server binary's command line so that it runs in
// the bastion's namespace as the server's user.
func (c *Cluster) netnsArgs(path string, args []string) (string, []string) {
	pre := []string{"netns", "exec", c.bastion.ns, "setpriv",
		fmt.Sprintf("--reuid=%d", c.cred.Uid), fmt.Sprintf("--regid=%d", c.cred.Gid), "--clear-groups", path}
	return "ip", append(pre, args...)
}
