package tunnel

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/pgkafka/pgkafka/pgsrc/secret"
)

const prefix = "source.networkTunnel.sshForwarding"

func testKey(t *testing.T, passphrase string) (pemKey string, pub ssh.PublicKey) {
	t.Helper()
	p, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	pub, err = ssh.NewPublicKey(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block)), pub
}

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "ssh://bastion@db.example.com", want: "bastion@db.example.com:22"},
		{in: "ssh://ec2-user@10.0.0.5:2222", want: "ec2-user@10.0.0.5:2222"},
		{in: "ssh://u@[::1]:22/", want: "u@[::1]:22"},
		{in: "", err: "required"},
		{in: "bastion:22", err: "is not ssh://user@host[:port]"},
		{in: "http://u@h", err: "scheme must be ssh"},
		{in: "ssh://db.example.com", err: "names no user"},
		{in: "ssh://u@", err: "names no host"},
		{in: "ssh://u@h:0", err: "port"},
		{in: "ssh://u@h:99999", err: "port"},
		{in: "ssh://u@h:", err: "empty port"},
		{in: "ssh://u@h/db", err: "without a path"},
		{in: "ssh://u:hunter2@h", err: "holds a password"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			ep, err := ParseEndpoint(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseEndpoint(%q) = %v, %v; want an error with %q", tc.in, ep, err, tc.err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error holds the password: %v", err)
				}
				return
			}
			if err != nil || ep.String() != tc.want {
				t.Fatalf("ParseEndpoint(%q) = %v, %v; want %s", tc.in, ep, err, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	key, pub := testKey(t, "")
	encrypted, _ := testKey(t, "correct horse")
	hostKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(knownHosts, []byte("[bastion]:2222 "+hostKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := Config{SSHEndpoint: "ssh://u@bastion:2222", PrivateKey: secret.String(key), HostKey: hostKey}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string // each a line of the error; none: valid
	}{
		{"no tunnel", func(c *Config) { *c = Config{} }, nil},
		{"pinned key", func(c *Config) {}, nil},
		{"pinned fingerprint", func(c *Config) { c.HostKey = ssh.FingerprintSHA256(pub) }, nil},
		{"ssh-keyscan lines", func(c *Config) { c.HostKey = "# bastion:22 SSH-2.0-OpenSSH_9.2\nbastion " + hostKey + "\n" }, nil},
		{"known_hosts file", func(c *Config) { c.HostKey, c.KnownHostsFile = "", knownHosts }, nil},
		{"insecure", func(c *Config) { c.HostKey, c.InsecureIgnoreHostKey = "", true }, nil},
		{"key with literal \\n", func(c *Config) { c.PrivateKey = secret.String(strings.ReplaceAll(key, "\n", `\n`)) }, nil},
		{"encrypted key", func(c *Config) { c.PrivateKey, c.PrivateKeyPassphrase = secret.String(encrypted), "correct horse" }, nil},
		{"only a host key", func(c *Config) { c.SSHEndpoint, c.PrivateKey = "", "" }, []string{
			prefix + ".sshEndpoint: required when other keys",
			prefix + ".privateKey: required"}},
		{"bad endpoint", func(c *Config) { c.SSHEndpoint = "bastion:22" }, []string{prefix + ".sshEndpoint: \"bastion:22\" is not ssh://user@host[:port]"}},
		{"no host-key check", func(c *Config) { c.HostKey = "" }, []string{
			prefix + ": the SSH server's host key is not checked: set one of " + prefix + ".knownHostsFile, " + prefix + ".hostKey or " + prefix + ".insecureIgnoreHostKey"}},
		{"two host-key checks", func(c *Config) { c.InsecureIgnoreHostKey = true }, []string{prefix + ": set only one of"}},
		{"bad host key", func(c *Config) { c.HostKey = "ssh-ed25519 notbase64" }, []string{prefix + ".hostKey: line 1 is not a public key"}},
		{"missing known_hosts", func(c *Config) { c.HostKey, c.KnownHostsFile = "", "/nonexistent/known_hosts" }, []string{prefix + ".knownHostsFile: \"/nonexistent/known_hosts\""}},
		{"garbage key", func(c *Config) { c.PrivateKey = "not a key at all" }, []string{prefix + ".privateKey: not a private key in PEM or OpenSSH format"}},
		{"public key as private", func(c *Config) { c.PrivateKey = secret.String(hostKey) }, []string{prefix + ".privateKey: holds a public key"}},
		{"encrypted, no passphrase", func(c *Config) { c.PrivateKey = secret.String(encrypted) }, []string{prefix + ".privateKeyPassphrase: required: privateKey is encrypted"}},
		{"wrong passphrase", func(c *Config) { c.PrivateKey, c.PrivateKeyPassphrase = secret.String(encrypted), "wrong horse" }, []string{prefix + ".privateKeyPassphrase: does not decrypt privateKey"}},
		{"needless passphrase", func(c *Config) { c.PrivateKeyPassphrase = "correct horse" }, []string{prefix + ".privateKeyPassphrase: set, but privateKey is not encrypted"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.Validate(prefix)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted it; want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			for _, s := range []string{key, encrypted, "correct horse", "wrong horse", "PRIVATE KEY-----\n"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error holds a secret:\n%v", err)
				}
			}
		})
	}
}

// TestPinnedKeyAsksForItsAlgorithm: a pinned RSA key makes the client ask
// for RSA host keys, so a server with keys of several types presents the
// pinned one.
func TestPinnedKeyAsksForItsAlgorithm(t *testing.T) {
	key, pub := testKey(t, "")
	c := Config{SSHEndpoint: "ssh://u@h", PrivateKey: secret.String(key), HostKey: string(ssh.MarshalAuthorizedKey(pub))}
	ep, _ := ParseEndpoint(c.SSHEndpoint)
	cfg, err := c.clientConfig(ep, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.HostKeyAlgorithms) != 1 || cfg.HostKeyAlgorithms[0] != ssh.KeyAlgoED25519 {
		t.Errorf("HostKeyAlgorithms = %v, want [%s]", cfg.HostKeyAlgorithms, ssh.KeyAlgoED25519)
	}
	if err := cfg.HostKeyCallback("h:22", nil, pub); err != nil {
		t.Errorf("the pinned key is refused: %v", err)
	}
	_, other := testKey(t, "")
	err = cfg.HostKeyCallback("h:22", nil, other)
	if err == nil || !strings.Contains(err.Error(), "ssh-keyscan -p 22 h") {
		t.Errorf("another key: %v", err)
	}
}
