package tunnel

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

const (
	// KeepaliveInterval is how often a live SSH connection is asked for a
	// keepalive@openssh.com reply.
	KeepaliveInterval = 20 * time.Second
	// KeepaliveTimeout is how long a reply may take: without one, the SSH
	// connection is closed, its forwarded connections with it, and the
	// next Dial opens another.
	KeepaliveTimeout = 15 * time.Second
	// handshakeTimeout bounds connecting to the SSH server and logging in
	// when the caller's ctx has no deadline.
	handshakeTimeout = 30 * time.Second
)

// Dialer opens connections through one tunnel. Dialers of equal
// configurations share one SSH connection.
type Dialer struct {
	t *sshTunnel
}

// NewDialer returns the Dialer of c, whose keys are under prefix
// (source.networkTunnel.sshForwarding) in messages. It returns the
// process's existing Dialer of an equal configuration, so that all the
// process's connections through one tunnel share one SSH connection. Its
// errors (a configuration Validate rejects) are *Error.
func NewDialer(c *Config, prefix string) (*Dialer, error) {
	ep, err := ParseEndpoint(c.SSHEndpoint)
	if err != nil {
		return nil, &Error{Endpoint: c.SSHEndpoint, Key: prefix + ".sshEndpoint", Err: err}
	}
	t, err := tunnels.get(c, ep, prefix)
	if err != nil {
		return nil, err
	}
	return &Dialer{t: t}, nil
}

// Endpoint is the tunnel's user@host:port.
func (d *Dialer) Endpoint() string { return d.t.endpoint.String() }

// DialContext opens a TCP connection to addr (host:port) from the SSH
// server, which resolves host itself: a name only it can resolve (a
// private RDS endpoint) works. network must be tcp, tcp4 or tcp6. The
// connection supports deadlines. Its errors are *Error; those of a lost
// or unreachable tunnel wrap the net error and are Retryable.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return d.t.dial(ctx, network, addr)
}

// registry holds the process's tunnels, one per configuration.
type registry struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*sshTunnel
}

// tunnels is the process's registry. A package variable on purpose: every
// copy of a source configuration, in every command, must reach the one SSH
// connection of its tunnel (as http.DefaultTransport pools connections),
// without a handle to thread through each caller or to forget.
var tunnels = &registry{m: make(map[[sha256.Size]byte]*sshTunnel)}

func (r *registry) get(c *Config, ep Endpoint, prefix string) (*sshTunnel, error) {
	h := sha256.New()
	for _, s := range []string{ep.String(), string(c.PrivateKey), string(c.PrivateKeyPassphrase),
		c.KnownHostsFile, c.HostKey, fmt.Sprint(c.InsecureIgnoreHostKey), prefix} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.m[key]; ok {
		return t, nil
	}
	cfg, err := c.clientConfig(ep, prefix)
	if err != nil {
		return nil, err
	}
	t := &sshTunnel{
		endpoint:          ep,
		prefix:            prefix,
		config:            cfg,
		sem:               make(chan struct{}, 1),
		keepaliveInterval: KeepaliveInterval,
		keepaliveTimeout:  KeepaliveTimeout,
	}
	r.m[key] = t
	return t, nil
}

// sshTunnel is one tunnel: its SSH connection, opened on demand.
type sshTunnel struct {
	endpoint Endpoint
	prefix   string
	config   *ssh.ClientConfig

	keepaliveInterval, keepaliveTimeout time.Duration

	// sem is held while the SSH connection is opened: one login at a time.
	sem chan struct{}

	mu     sync.Mutex
	client *ssh.Client // nil when none is open
	lost   error       // why the last client ended, for messages
}

func (t *sshTunnel) errorf(err error) *Error {
	return &Error{Endpoint: t.endpoint.String(), Err: err}
}

func (t *sshTunnel) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, t.errorf(fmt.Errorf("cannot forward %s connections, only tcp", network))
	}
	for attempt := 0; ; attempt++ {
		cl, fresh, err := t.clientFor(ctx)
		if err != nil {
			return nil, err
		}
		ch, err := cl.DialContext(ctx, "tcp", addr)
		if err == nil {
			c, err := socketConn(ch, addr)
			if err != nil {
				_ = ch.Close() // the error that matters is err
				return nil, t.errorf(fmt.Errorf("forwarding to %s: %w", addr, err))
			}
			return c, nil
		}
		var oce *ssh.OpenChannelError
		switch {
		case ctx.Err() != nil:
			return nil, t.errorf(fmt.Errorf("forwarding to %s: %w", addr, err))
		case errors.As(err, &oce) && oce.Reason == ssh.Prohibited:
			return nil, &Error{Endpoint: t.endpoint.String(), Key: t.prefix + ".sshEndpoint", Err: fmt.Errorf(
				"the SSH server refuses to forward connections to %s for user %q (%s): allow it on the server (sshd_config AllowTcpForwarding yes, PermitOpen) or log in as another user",
				addr, t.endpoint.User, oce.Message)}
		case errors.As(err, &oce):
			// The server could not connect (the database is down or
			// restarting, or the address is wrong): retryable.
			return nil, t.errorf(&net.OpError{Op: "dial", Net: "tcp", Addr: stringAddr(addr), Err: fmt.Errorf(
				"the SSH server could not connect to %s (as it resolves and reaches it; check source.address): %s", addr, oce.Message)})
		}
		// The SSH connection is gone: drop it, and open another once.
		_ = cl.Close() // already broken: its error is err
		t.forget(cl, err)
		if fresh || attempt > 0 {
			return nil, t.errorf(&net.OpError{Op: "dial", Net: "tcp", Addr: stringAddr(addr), Err: fmt.Errorf("the SSH connection broke: %w", err)})
		}
	}
}

// clientFor returns the open SSH client, opening one if none is; fresh
// reports that it was opened by this call.
func (t *sshTunnel) clientFor(ctx context.Context) (cl *ssh.Client, fresh bool, err error) {
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, false, t.errorf(fmt.Errorf("waiting for the SSH connection: %w", ctx.Err()))
	}
	defer func() { <-t.sem }()
	t.mu.Lock()
	cl = t.client
	t.mu.Unlock()
	if cl != nil {
		return cl, false, nil
	}
	cl, err = t.connect(ctx)
	if err != nil {
		return nil, false, err
	}
	done := make(chan struct{})
	t.mu.Lock()
	t.client = cl
	t.mu.Unlock()
	go func() {
		err := cl.Wait()
		t.forget(cl, err)
		close(done)
	}()
	go t.keepalive(cl, done)
	return cl, true, nil
}

// forget drops cl, which ended with err, so that the next dial opens
// another.
func (t *sshTunnel) forget(cl *ssh.Client, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.client == cl {
		t.client = nil
		t.lost = err
	}
}

// keepalive asks cl for a reply every keepaliveInterval until done, and
// closes it when none comes within keepaliveTimeout: a tunnel whose
// packets vanish (a NAT that forgot it, a bastion gone) fails its
// connections instead of leaving them waiting.
func (t *sshTunnel) keepalive(cl *ssh.Client, done <-chan struct{}) {
	tick := time.NewTicker(t.keepaliveInterval)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		reply := make(chan error, 1)
		go func() {
			// OpenSSH answers an unknown request with a failure: any
			// answer proves the connection alive.
			_, _, err := cl.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		timer := time.NewTimer(t.keepaliveTimeout)
		var err error
		select {
		case <-done:
			timer.Stop()
			return
		case err = <-reply:
		case <-timer.C:
			err = fmt.Errorf("no keepalive reply within %s", t.keepaliveTimeout)
		}
		timer.Stop()
		if err != nil {
			t.forget(cl, err)
			_ = cl.Close() // the connection is dead: its error is err
			return
		}
	}
}

// connect dials the SSH server and logs in, within ctx.
func (t *sshTunnel) connect(ctx context.Context) (*ssh.Client, error) {
	d := net.Dialer{KeepAlive: 30 * time.Second}
	if _, ok := ctx.Deadline(); !ok {
		d.Timeout = handshakeTimeout
	}
	nc, err := d.DialContext(ctx, "tcp", t.endpoint.Addr())
	if err != nil {
		return nil, t.errorf(fmt.Errorf("connecting to the SSH server (sshEndpoint)%s: %w", t.lostSuffix(), err))
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(handshakeTimeout)
	}
	_ = nc.SetDeadline(deadline) // a fresh TCP connection supports deadlines
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	conn, chans, reqs, err := ssh.NewClientConn(nc, t.endpoint.Addr(), t.config)
	stopped := stop()
	if err != nil {
		_ = nc.Close() // the handshake's error is the one to report
		return nil, t.handshakeError(ctx, err)
	}
	if !stopped {
		_ = conn.Close()
		return nil, t.errorf(fmt.Errorf("logging in to the SSH server: %w", ctx.Err()))
	}
	_ = nc.SetDeadline(time.Time{})
	return ssh.NewClient(conn, chans, reqs), nil
}

func (t *sshTunnel) lostSuffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lost == nil || errors.Is(t.lost, net.ErrClosed) {
		return ""
	}
	return fmt.Sprintf(" (after the previous SSH connection ended: %v)", t.lost)
}

// handshakeError explains a failed SSH handshake: the configuration key
// to fix when the server refused the key or the host key was refused.
func (t *sshTunnel) handshakeError(ctx context.Context, err error) error {
	var hk *HostKeyError
	msg := err.Error()
	switch {
	case errors.As(err, &hk):
		return &Error{Endpoint: t.endpoint.String(), Key: t.prefix + "." + hk.Key, Err: fmt.Errorf("%s.%s: %w", t.prefix, hk.Key, hk)}
	case strings.Contains(msg, "unable to authenticate"):
		return &Error{Endpoint: t.endpoint.String(), Key: t.prefix + ".privateKey", Err: fmt.Errorf(
			"the SSH server refused privateKey for user %q: check %s.privateKey (its public key, which `ssh-keygen -y -f KEYFILE` prints, must be in ~%s/.ssh/authorized_keys on the server) and the user of %s.sshEndpoint",
			t.endpoint.User, t.prefix, t.endpoint.User, t.prefix)}
	case strings.Contains(msg, "no common algorithm for host key"):
		return &Error{Endpoint: t.endpoint.String(), Key: t.prefix + ".hostKey", Err: fmt.Errorf(
			"the SSH server has no host key of the types hostKey pins: set %s.hostKey to a key it has (ssh-keyscan -p PORT HOST prints them): %w", t.prefix, err)}
	case ctx.Err() != nil:
		return t.errorf(fmt.Errorf("logging in to the SSH server: %w (%v)", ctx.Err(), err))
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) {
		return t.errorf(&net.OpError{Op: "ssh", Net: "tcp", Addr: stringAddr(t.endpoint.Addr()), Err: err})
	}
	return t.errorf(fmt.Errorf("logging in to the SSH server: %w", err))
}

type stringAddr string

func (a stringAddr) Network() string { return "tcp" }
func (a stringAddr) String() string  { return string(a) }

// conn is a forwarded connection: one end of a socket pair whose other
// end is copied to and from the SSH channel. ssh's channels do not support
// deadlines, which pgconn needs (to cancel a query, to bound a receive);
// a socket does.
type conn struct {
	*net.UnixConn
	remote stringAddr
}

func (c *conn) RemoteAddr() net.Addr { return c.remote }

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.UnixConn.Read(p)
	return n, c.opError(err)
}

func (c *conn) Write(p []byte) (int, error) {
	n, err := c.UnixConn.Write(p)
	return n, c.opError(err)
}

// opError names the forwarded address in the socket pair's errors, which
// name none ("write unix @->@").
func (c *conn) opError(err error) error {
	if oe, ok := err.(*net.OpError); ok {
		e := *oe
		e.Net, e.Source, e.Addr = "tcp", nil, c.remote
		return &e
	}
	return err
}

// socketConn returns a connection that carries ch's bytes through a
// socket pair, and the copying goroutines, which end when either side
// closes.
func socketConn(ch net.Conn, addr string) (net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	ours, err := fileConn(fds[0])
	if err != nil {
		_ = syscall.Close(fds[1])
		return nil, err
	}
	theirs, err := fileConn(fds[1])
	if err != nil {
		_ = ours.Close()
		return nil, err
	}
	go func() {
		_, _ = io.Copy(theirs, ch) // ends when the server side closes
		_ = theirs.Close()
		_ = ch.Close()
	}()
	go func() {
		_, _ = io.Copy(ch, theirs) // ends when our side closes
		_ = ch.Close()
		_ = theirs.Close()
	}()
	return &conn{UnixConn: ours, remote: stringAddr(addr)}, nil
}

func fileConn(fd int) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), "tunnel")
	c, err := net.FileConn(f)
	_ = f.Close() // FileConn made its own copy of the descriptor
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	return c.(*net.UnixConn), nil
}
