package pgsrc_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/ssh"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
	"github.com/pgkafka/pgkafka/pgsrc/secret"
	"github.com/pgkafka/pgkafka/pgsrc/tunnel"
)

// tunnelled is a cluster that only a bastion reaches: it runs in the
// bastion's network namespace, on its 127.0.0.1.
func tunnelled(t *testing.T) (*pgtest.Bastion, *pgtest.Cluster) {
	t.Helper()
	b := pgtest.StartBastion(t)
	return b, pgtest.Start(t, pgtest.WithBastion(b))
}

// TestTunnelReachesOnlyThroughSSH proves the traffic goes through sshd:
// the server is out of reach without the tunnel, reached with it, and
// sees its client at the namespace's loopback (the bastion). Replication
// connections, Check and Discover go through it; a killed sshd fails new
// connections with a retryable error naming the endpoint, and a restarted
// one is used again.
func TestTunnelReachesOnlyThroughSSH(t *testing.T) {
	b, c := tunnelled(t)
	db := c.NewDatabase(t)
	db.Exec(t, `CREATE TABLE public.items (id int PRIMARY KEY, name text); INSERT INTO public.items VALUES (1, 'a')`)
	cfg := db.SourceConfig(pgtest.Superuser, c.SuperuserPassword())
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	direct := cfg
	direct.NetworkTunnel = pgsrc.NetworkTunnel{}
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	if conn, err := pgsrc.Connect(dctx, &direct); err == nil {
		_ = conn.Close(ctx)
		t.Fatalf("%s reached without the tunnel: the test proves nothing", cfg.Address)
	}
	dcancel()

	conn, err := pgsrc.Connect(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	var client string
	if err := conn.QueryRow(ctx, `SELECT host(inet_client_addr())`).Scan(&client); err != nil {
		t.Fatal(err)
	}
	if client != "127.0.0.1" {
		t.Errorf("the server sees its client at %s, want 127.0.0.1 (sshd in the namespace)", client)
	}
	tables, err := pgsrc.Discover(ctx, conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 1 || tables[0].Name != "items" {
		t.Errorf("discovered %v through the tunnel, want public.items", tables)
	}
	// A query cancelled by its context: pgconn interrupts the read with a
	// deadline, which the tunnel's connections must support.
	qctx, qcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	start := time.Now()
	_, err = conn.Exec(qctx, `SELECT pg_sleep(30)`)
	qcancel()
	if err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("a query whose context ended after 0.3 s returned after %s: %v", time.Since(start), err)
	}
	_ = conn.Close(ctx)

	results, err := pgsrc.Check(ctx, &cfg, []pgsrc.TableRef{{Schema: "public", Name: "items"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Name == "connection" && !r.OK {
			t.Errorf("check's connection through the tunnel failed: %+v", r)
		}
	}
	rc, err := pgsrc.ConnectReplication(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res := rc.Exec(ctx, "IDENTIFY_SYSTEM"); res != nil {
		if _, err := res.ReadAll(); err != nil {
			t.Errorf("IDENTIFY_SYSTEM through the tunnel: %v", err)
		}
	}

	// The bastion dies: the open connection breaks, new ones fail with a
	// retryable error that names the endpoint.
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll(); err == nil {
		t.Error("a replication connection through a killed bastion still works")
	} else if !pgsrc.IsRetryable(err) {
		t.Errorf("a connection cut with the tunnel is not retryable: %v", err)
	}
	_ = rc.Close(ctx)
	kctx, kcancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = pgsrc.Connect(kctx, &cfg)
	kcancel()
	endpoint := strings.TrimPrefix(b.Endpoint(), "ssh://")
	switch {
	case err == nil:
		t.Fatal("connected through a killed bastion")
	case !pgsrc.IsRetryable(err):
		t.Errorf("a lost tunnel is not retryable: %v", err)
	case !strings.Contains(err.Error(), endpoint):
		t.Errorf("error does not name the SSH endpoint %s: %v", endpoint, err)
	case strings.Contains(err.Error(), "PRIVATE KEY"):
		t.Errorf("error holds the key: %v", err)
	}
	t.Logf("with the bastion down: %v", err)

	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	conn, err = pgsrc.Connect(ctx, &cfg)
	if err != nil {
		t.Fatalf("after the bastion's restart: %v", err)
	}
	_ = conn.Close(ctx)
}

// TestTunnelSharesOneSSHConnection: the process's connections through one
// tunnel share one SSH connection (sshd logs one login).
func TestTunnelSharesOneSSHConnection(t *testing.T) {
	b, c := tunnelled(t)
	db := c.NewDatabase(t)
	cfg := db.SourceConfig(pgtest.Superuser, c.SuperuserPassword())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := strings.Count(b.Log(), "Accepted publickey")
	var conns []*pgx.Conn
	for range 4 {
		conn, err := pgsrc.Connect(ctx, &cfg)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	for _, conn := range conns {
		_ = conn.Close(ctx)
	}
	if n := strings.Count(b.Log(), "Accepted publickey") - before; n > 1 {
		t.Errorf("4 connections made %d SSH logins, want at most 1 (shared):\n%s", n, b.Log())
	}
}

// TestTunnelRefusals: a wrong pinned host key, a key the server does not
// accept and an unknown user each fail at once (not retryable) with a
// message naming the key to fix and the endpoint, never the key itself.
func TestTunnelRefusals(t *testing.T) {
	b, c := tunnelled(t)
	db := c.NewDatabase(t)
	good := db.SourceConfig(pgtest.Superuser, c.SuperuserPassword())
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, _ := ssh.NewPublicKey(otherPub)
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(otherPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	otherPEM := string(pemEncode(block))
	endpoint := strings.TrimPrefix(b.Endpoint(), "ssh://")
	for _, tc := range []struct {
		name string
		edit func(*tunnel.Config)
		want []string
	}{
		{"wrong pinned host key", func(c *tunnel.Config) { c.HostKey = string(ssh.MarshalAuthorizedKey(otherKey)) },
			[]string{"source.networkTunnel.sshForwarding.hostKey", "ssh-ed25519 SHA256:", "intercepting", endpoint}},
		{"wrong fingerprint", func(c *tunnel.Config) { c.HostKey = ssh.FingerprintSHA256(otherKey) },
			[]string{"source.networkTunnel.sshForwarding.hostKey", "SHA256:"}},
		{"key not authorized", func(c *tunnel.Config) { c.PrivateKey = secretOf(otherPEM) },
			[]string{"source.networkTunnel.sshForwarding.privateKey", "refused", endpoint}},
		{"unknown user", func(c *tunnel.Config) {
			c.SSHEndpoint = strings.Replace(c.SSHEndpoint, "ssh://root@", "ssh://nosuchuser@", 1)
		}, []string{"privateKey", "nosuchuser"}},
		{"empty known_hosts", func(c *tunnel.Config) {
			c.HostKey = ""
			c.KnownHostsFile = writeTemp(t, "")
		}, []string{"knownHostsFile", "holds no key", "ssh-keyscan"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg.NetworkTunnel.SSHForwarding)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := pgsrc.Connect(ctx, &cfg)
			if err == nil {
				t.Fatal("connected")
			}
			if pgsrc.IsRetryable(err) {
				t.Errorf("retryable: %v", err)
			}
			var te *tunnel.Error
			if !errors.As(err, &te) {
				t.Errorf("not a *tunnel.Error: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("error holds the key: %v", err)
			}
			t.Log(err)
		})
	}
}

func pemEncode(b *pem.Block) []byte { return pem.EncodeToMemory(b) }

func secretOf(s string) secret.String { return secret.String(s) }

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTunnelConfig: the tunnel's keys are validated with their paths in
// the source block, its secrets are the source's, and a configuration
// with a broken tunnel never connects without it.
func TestTunnelConfig(t *testing.T) {
	cfg := pgsrc.Config{Address: "db.internal:5432", Password: "pw"}
	cfg.SetDefaults()
	cfg.NetworkTunnel.SSHForwarding = tunnel.Config{HostKey: "SHA256:abc", PrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n-----END OPENSSH PRIVATE KEY-----"}
	err := cfg.Validate()
	for _, want := range []string{
		"source.networkTunnel.sshForwarding.sshEndpoint: required",
		"source.networkTunnel.sshForwarding.privateKey: not a private key",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "xyz") {
		t.Errorf("error holds the key: %v", err)
	}
	if s := cfg.Secrets(); len(s) != 3 || s[1] != cfg.NetworkTunnel.SSHForwarding.PrivateKey {
		t.Errorf("Secrets() = %d values, want the password, the private key and its passphrase", len(s))
	}
	if _, err := cfg.ConnConfig(context.Background(), false); err == nil {
		t.Error("ConnConfig with an invalid tunnel succeeded: it would connect without the tunnel")
	} else if pgsrc.IsRetryable(err) {
		t.Errorf("an invalid tunnel is retryable: %v", err)
	}
}
