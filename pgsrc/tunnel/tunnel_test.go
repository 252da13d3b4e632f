package tunnel

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pgkafka/pgkafka/pgsrc/secret"
)

// sshServer is an in-process SSH server that forwards direct-tcpip
// channels, behind a proxy that can swallow every byte (a tunnel whose
// packets vanish), for the tests of what the real sshd cannot show quickly.
type sshServer struct {
	addr   string // the proxy's
	logins atomic.Int32
	frozen atomic.Bool
}

func startSSHServer(t *testing.T) *sshServer {
	t.Helper()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	s := &sshServer{}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) {
		s.logins.Add(1)
		return nil, nil
	}}
	cfg.AddHostKey(signer)
	ln := listen(t)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(nc, cfg)
		}
	}()
	proxy := listen(t)
	s.addr = proxy.Addr().String()
	go func() {
		for {
			c, err := proxy.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				_ = c.Close()
				continue
			}
			go s.pump(c, u)
			go s.pump(u, c)
		}
	}()
	return s
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// pump copies src to dst, dropping what it reads while frozen.
func (s *sshServer) pump(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !s.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (s *sshServer) serve(nc net.Conn, cfg *ssh.ServerConfig) {
	conn, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs) // answers keepalives with a failure, as OpenSSH does
	for nch := range chans {
		var target struct {
			Host     string
			Port     uint32
			OrigHost string
			OrigPort uint32
		}
		if nch.ChannelType() != "direct-tcpip" || ssh.Unmarshal(nch.ExtraData(), &target) != nil {
			_ = nch.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		up, err := net.Dial("tcp", net.JoinHostPort(target.Host, strconv.Itoa(int(target.Port))))
		if err != nil {
			_ = nch.Reject(ssh.ConnectionFailed, err.Error())
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			_ = up.Close()
			continue
		}
		go ssh.DiscardRequests(creqs)
		go func() { _, _ = io.Copy(ch, up); _ = ch.Close() }()
		go func() { _, _ = io.Copy(up, ch); _ = up.Close() }()
	}
}

// echoServer echoes what each connection sends.
func echoServer(t *testing.T) string {
	ln := listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	_ = c.SetDeadline(time.Time{})
}

func TestTunnelKeepaliveSharingAndDeadlines(t *testing.T) {
	srv := startSSHServer(t)
	echo := echoServer(t)
	key, _ := testKey(t, "")
	c := Config{SSHEndpoint: "ssh://tester@" + srv.addr, PrivateKey: secret.String(key), InsecureIgnoreHostKey: true}
	d, err := NewDialer(&c, prefix)
	if err != nil {
		t.Fatal(err)
	}
	d.t.keepaliveInterval, d.t.keepaliveTimeout = 100*time.Millisecond, 300*time.Millisecond
	if again, _ := NewDialer(&c, prefix); again.t != d.t {
		t.Error("two dialers of one configuration do not share their tunnel")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Concurrent dials share one SSH login.
	var wg sync.WaitGroup
	conns := make([]net.Conn, 8)
	errs := make([]error, 8)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns[i], errs[i] = d.DialContext(ctx, "tcp", echo)
		}()
	}
	wg.Wait()
	for i, c := range conns {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		roundTrip(t, c, "hello "+strconv.Itoa(i))
	}
	if n := srv.logins.Load(); n != 1 {
		t.Errorf("8 dials made %d SSH logins, want 1", n)
	}

	// Deadlines work (pgconn relies on them), and keepalives keep an idle
	// tunnel up.
	_ = conns[0].SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = conns[0].Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("a read past its deadline: %v, want a timeout", err)
	}
	_ = conns[0].SetReadDeadline(time.Time{})
	roundTrip(t, conns[0], "still up after 5 keepalives")

	// The tunnel's packets vanish: no keepalive reply, the SSH connection
	// is closed and its forwarded connections end.
	srv.frozen.Store(true)
	_ = conns[1].SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := conns[1].Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a dead tunnel: %v after %s, want the connection closed by the keepalive", err, time.Since(start))
	}
	srv.frozen.Store(false)

	// The next dial opens a new SSH connection.
	c2, err := d.DialContext(ctx, "tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c2, "reconnected")
	if n := srv.logins.Load(); n != 2 {
		t.Errorf("%d logins after the tunnel died, want 2", n)
	}
	for _, c := range append(conns, c2) {
		_ = c.Close()
	}

	// A target the server cannot reach: a retryable error naming the
	// endpoint.
	ln := listen(t)
	closed := ln.Addr().String()
	_ = ln.Close()
	_, err = d.DialContext(ctx, "tcp", closed)
	var te *Error
	if !errors.As(err, &te) || !te.Retryable() || !errors.As(err, &ne) {
		t.Errorf("dial of a closed port: %v, want a retryable *Error wrapping a net.Error", err)
	}
}
