// Package pgtest runs throwaway PostgreSQL clusters for tests.
//
// A cluster is started with initdb and pg_ctl from the PostgreSQL server
// binaries (as the postgres user when the test runs as root), listens on
// 127.0.0.1 on a free port with wal_level=logical, and is removed when
// closed. Tests of a package usually share one cluster, created in TestMain
// with New and Close, and take a fresh database each with NewDatabase:
//
//	func TestMain(m *testing.M) {
//		c, err := pgtest.New()
//		if err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		code := m.Run()
//		if err := c.Close(); err != nil {
//			fmt.Fprintln(os.Stderr, err)
//		}
//		os.Exit(code)
//	}
//
// The server binaries are looked up in this order: WithBinDir, the
// PGTEST_BINDIR environment variable, `pg_config --bindir` on PATH, and the
// newest /usr/lib/postgresql/*/bin. Tests of a feature that older servers
// lack skip on them with SkipBelow (make test-versions runs the end-to-end
// tests on other major versions through PGTEST_BINDIR).
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Superuser is the name of the cluster's superuser.
const Superuser = "postgres"

// startTimeout bounds pg_ctl start and stop.
const startTimeout = 60 * time.Second

// Option configures New.
type Option func(*options)

type options struct {
	binDir   string
	settings [][2]string
	bastion  *Bastion
}

// WithSetting adds a server setting to postgresql.conf; it overrides the
// defaults of this package (e.g. WithSetting("wal_level", "replica")).
func WithSetting(name, value string) Option {
	return func(o *options) { o.settings = append(o.settings, [2]string{name, value}) }
}

// WithBinDir sets the directory of the PostgreSQL server binaries.
func WithBinDir(dir string) Option {
	return func(o *options) { o.binDir = dir }
}

// defaultSettings are written before the WithSetting ones, which win.
func defaultSettings() [][2]string {
	return [][2]string{
		{"wal_level", "logical"},
		{"max_wal_senders", "40"},
		{"max_replication_slots", "40"},
		{"fsync", "off"},
		// On, as in production: the WAL sender sends only flushed WAL, so
		// with it off changes wait up to wal_writer_delay (200 ms) to
		// reach the capture. fsync=off keeps the flush cheap.
		{"synchronous_commit", "on"},
		{"full_page_writes", "off"},
		{"shared_buffers", "32MB"},
		{"max_connections", "100"},
	}
}

// Cluster is a running throwaway PostgreSQL cluster.
type Cluster struct {
	dir      string // temporary directory holding data/ and server.log
	binDir   string
	major    int // the server's major version, from PG_VERSION
	port     int
	password string
	cred     *syscall.Credential // nil unless running as root
	bastion  *Bastion            // WithBastion's, or nil

	closeOnce sync.Once
	closeErr  error

	mu    sync.Mutex
	dbSeq int
}

// Start is New for a single test: the cluster is closed at the end of tb.
func Start(tb testing.TB, opts ...Option) *Cluster {
	tb.Helper()
	c, err := New(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Error(err)
		}
	})
	return c
}

// New initializes and starts a cluster. The caller must Close it.
func New(opts ...Option) (*Cluster, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	binDir, err := findBinDir(o.binDir)
	if err != nil {
		return nil, err
	}
	reapOrphans(binDir)
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("creating cluster directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, fmt.Errorf("recording the cluster's owner: %w", err)
	}
	c := &Cluster{dir: dir, binDir: binDir, bastion: o.bastion}
	if err := c.init(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	// The free port may be taken between probing and binding: retry then.
	for attempt := 0; ; attempt++ {
		err = c.start(o.settings)
		if err == nil {
			return c, nil
		}
		if attempt == 2 || !strings.Contains(err.Error(), "already in use") {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
}

// ownerFile, in a cluster's directory, holds the pid of the process that
// started it.
const ownerFile = "owner.pid"

// reapOrphans stops and removes the clusters left behind by test processes
// that were killed before their Close (pg_ctl starts servers as daemons,
// which outlive their parent). Best effort: what it cannot stop stays.
func reapOrphans(binDir string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "pgtest-*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil || errors.Is(syscall.Kill(pid, 0), syscall.EPERM) {
			continue // its owner is alive
		}
		orphan := &Cluster{dir: dir, binDir: binDir}
		if os.Geteuid() == 0 {
			if u, err := user.Lookup(Superuser); err == nil {
				uid, _ := strconv.Atoi(u.Uid)
				gid, _ := strconv.Atoi(u.Gid)
				orphan.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
			}
		}
		_ = orphan.Close() // best effort, see above
	}
}

func findBinDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("PGTEST_BINDIR")
	}
	if dir == "" {
		if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
			if d := strings.TrimSpace(string(out)); fileExists(filepath.Join(d, "initdb")) {
				dir = d
			}
		}
	}
	if dir == "" {
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		slices.SortFunc(dirs, func(a, b string) int {
			return versionOf(b) - versionOf(a)
		})
		for _, d := range dirs {
			if fileExists(filepath.Join(d, "initdb")) {
				dir = d
				break
			}
		}
	}
	if dir == "" || !fileExists(filepath.Join(dir, "initdb")) {
		return "", errors.New("PostgreSQL server binaries not found: install them or set PGTEST_BINDIR to the directory holding initdb and pg_ctl")
	}
	return dir, nil
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// init runs initdb in c.dir/data with a random superuser password.
func (c *Cluster) init() error {
	if os.Geteuid() == 0 {
		u, err := user.Lookup(Superuser)
		if err != nil {
			return fmt.Errorf("running as root needs the %q system user for PostgreSQL: %w", Superuser, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(c.dir, uid, gid); err != nil {
			return fmt.Errorf("handing %s to %s: %w", c.dir, Superuser, err)
		}
	}
	var pw [16]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return fmt.Errorf("generating the superuser password: %w", err)
	}
	c.password = hex.EncodeToString(pw[:])
	pwfile := filepath.Join(c.dir, "pwfile")
	if err := c.writeFile(pwfile, c.password+"\n"); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if _, err := c.run("initdb", "-D", c.dataDir(), "-U", Superuser, "--pwfile="+pwfile,
		"--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(c.dataDir(), "PG_VERSION"))
	if err != nil {
		return fmt.Errorf("reading the cluster's major version: %w", err)
	}
	if c.major = parseMajor(string(b)); c.major == 0 {
		return fmt.Errorf("reading the cluster's major version: PG_VERSION holds %q", b)
	}
	return nil
}

// parseMajor is the major version in a PG_VERSION file ("15\n", "9.6\n"):
// 15, 9; 0 if unreadable.
func parseMajor(v string) int {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '.'); i >= 0 {
		v = v[:i]
	}
	n, _ := strconv.Atoi(v)
	return n
}

// start writes the settings with a fresh free port and starts the server.
func (c *Cluster) start(settings [][2]string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	c.port = port
	var b strings.Builder
	b.WriteString("\n# pgtest\n")
	all := slices.Concat(defaultSettings(), [][2]string{
		{"listen_addresses", "127.0.0.1"},
		{"port", strconv.Itoa(port)},
		{"unix_socket_directories", c.dataDir()},
	}, settings)
	for _, kv := range all {
		fmt.Fprintf(&b, "%s = '%s'\n", kv[0], strings.ReplaceAll(kv[1], "'", "''"))
	}
	// postgresql.auto.conf is read after postgresql.conf and holds only our
	// lines, so a retry with another port replaces them.
	if err := c.writeFile(filepath.Join(c.dataDir(), "postgresql.auto.conf"), b.String()); err != nil {
		return err
	}
	if _, err := c.run("pg_ctl", "start", "-w", "-t", strconv.Itoa(int(startTimeout/time.Second)),
		"-D", c.dataDir(), "-l", c.logFile()); err != nil {
		return fmt.Errorf("%w\nserver log (%s):\n%s", err, c.logFile(), c.logTail(30))
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeFile writes a file owned by the server's user.
func (c *Cluster) writeFile(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if c.cred != nil {
		if err := os.Chown(path, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("handing %s to %s: %w", path, Superuser, err)
		}
	}
	return nil
}

// run runs a server binary as the server's user and returns its output.
func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout+10*time.Second)
	defer cancel()
	path, argv := filepath.Join(c.binDir, name), args
	if c.bastion != nil {
		path, argv = c.netnsArgs(path, args)
	}
	cmd := exec.CommandContext(ctx, path, argv...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	if c.cred != nil && c.bastion == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("running %s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return out.Bytes(), nil
}

func (c *Cluster) logTail(n int) string {
	b, err := os.ReadFile(c.logFile())
	if err != nil {
		return fmt.Sprintf("(unreadable: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (c *Cluster) dataDir() string { return filepath.Join(c.dir, "data") }
func (c *Cluster) logFile() string { return filepath.Join(c.dir, "server.log") }

// Close stops the server at once and removes its directory. It may be
// called more than once.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		_, err := c.run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", c.dataDir())
		if rmErr := os.RemoveAll(c.dir); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("removing cluster directory: %w", rmErr))
		}
		c.closeErr = err
	})
	return c.closeErr
}

// Host is the address the server listens on.
func (c *Cluster) Host() string { return "127.0.0.1" }

// Port is the TCP port the server listens on.
func (c *Cluster) Port() int { return c.port }

// Address is Host:Port.
func (c *Cluster) Address() string { return net.JoinHostPort(c.Host(), strconv.Itoa(c.port)) }

// SuperuserPassword is the password of the postgres superuser.
func (c *Cluster) SuperuserPassword() string { return c.password }

// Major is the server's major version (13, 15, 18, ...).
func (c *Cluster) Major() int { return c.major }

// SkipBelow skips tb, saying why, when the server's major version is below
// major, the first one that has feature (e.g. SkipBelow(t, 14, "pgoutput's
// binary option")). On a server that has it, it does nothing.
func (c *Cluster) SkipBelow(tb testing.TB, major int, feature string) {
	tb.Helper()
	if c.major < major {
		tb.Skipf("%s needs PostgreSQL %d or later; this server is PostgreSQL %d (%s)", feature, major, c.major, c.binDir)
	}
}

// BinDir is the directory of the server binaries in use.
func (c *Cluster) BinDir() string { return c.binDir }

// LogFile is the path of the server log.
func (c *Cluster) LogFile() string { return c.logFile() }

// DSN is a key/value connection string for the superuser to database db.
func (c *Cluster) DSN(db string) string {
	return dsn(c.Host(), c.port, Superuser, c.password, db)
}

func dsn(host string, port int, user, password, db string) string {
	q := func(v string) string {
		v = strings.ReplaceAll(v, `\`, `\\`)
		return "'" + strings.ReplaceAll(v, `'`, `\'`) + "'"
	}
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable",
		host, port, q(user), q(password), q(db))
}

// Restart stops the server the way an operator's fast restart does (every
// connection, replication included, is cut) and starts it again on the
// same port.
func (c *Cluster) Restart() error {
	if _, err := c.run("pg_ctl", "restart", "-m", "fast", "-w", "-t", strconv.Itoa(int(startTimeout/time.Second)),
		"-D", c.dataDir(), "-l", c.logFile()); err != nil {
		return fmt.Errorf("%w\nserver log (%s):\n%s", err, c.logFile(), c.logTail(30))
	}
	return nil
}
