// Package tunnel opens TCP connections through an SSH server
// (source.networkTunnel.sshForwarding): the SSH server resolves and dials
// the target, as `ssh -L` does, so a database that only the SSH server
// reaches (a private Amazon RDS endpoint behind a bastion) is reached
// through it.
//
// One SSH connection per tunnel configuration serves every connection of
// the process: it is opened by the first Dial, kept alive with
// keepalive@openssh.com requests, and opened again by the next Dial once
// it died. It knows SSH and nothing of PostgreSQL.
package tunnel

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/pgkafka/pgkafka/pgsrc/secret"
)

// Config is the `source.networkTunnel.sshForwarding` block: the keys of
// the Estuary capture (sshEndpoint, privateKey) and those of host-key
// checking, of which exactly one must be set.
type Config struct {
	// SSHEndpoint is ssh://user@host[:port] (port 22 by default): the SSH
	// server and the user to log in as.
	SSHEndpoint string `koanf:"sshEndpoint"`
	// PrivateKey is the user's private key, PEM or OpenSSH format (what
	// ssh-keygen writes). The server must hold its public key in the
	// user's authorized_keys.
	PrivateKey secret.String `koanf:"privateKey"`
	// PrivateKeyPassphrase decrypts PrivateKey when it is encrypted.
	PrivateKeyPassphrase secret.String `koanf:"privateKeyPassphrase"`
	// KnownHostsFile is an OpenSSH known_hosts file that holds the SSH
	// server's host key (e.g. what `ssh-keyscan -p PORT HOST` prints).
	KnownHostsFile string `koanf:"knownHostsFile"`
	// HostKey pins the SSH server's host key: one key a line, each an
	// authorized_keys line ("ssh-ed25519 AAAA..."), a known_hosts line
	// (what ssh-keyscan prints) or a SHA256 fingerprint ("SHA256:...", as
	// `ssh-keygen -lf` prints it).
	HostKey string `koanf:"hostKey"`
	// InsecureIgnoreHostKey accepts any host key: whoever answers at the
	// endpoint's address sees the traffic (and the database password).
	InsecureIgnoreHostKey bool `koanf:"insecureIgnoreHostKey"`
}

// Enabled reports whether any key of the block is set: the tunnel is then
// used (and Validate requires sshEndpoint).
func (c *Config) Enabled() bool {
	return c.SSHEndpoint != "" || c.PrivateKey != "" || c.PrivateKeyPassphrase != "" ||
		c.KnownHostsFile != "" || c.HostKey != "" || c.InsecureIgnoreHostKey
}

// DefaultPort is the SSH port of an endpoint that names none.
const DefaultPort = 22

// Endpoint is a parsed sshEndpoint.
type Endpoint struct {
	User string
	Host string
	Port int
}

// Addr is host:port.
func (e Endpoint) Addr() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// String is user@host:port, the name of the tunnel in every message.
func (e Endpoint) String() string { return e.User + "@" + e.Addr() }

// ParseEndpoint parses ssh://user@host[:port].
func ParseEndpoint(s string) (Endpoint, error) {
	if s == "" {
		return Endpoint{}, errors.New("required: ssh://user@host[:port]")
	}
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" {
		return Endpoint{}, fmt.Errorf("%q is not ssh://user@host[:port]", redactURL(s))
	}
	if u.Scheme != "ssh" {
		return Endpoint{}, fmt.Errorf("%q: the scheme must be ssh (ssh://user@host[:port])", u.Redacted())
	}
	if _, hasPassword := u.User.Password(); hasPassword {
		return Endpoint{}, fmt.Errorf("%q holds a password: pgkafka logs in with privateKey only; remove the password", u.Redacted())
	}
	e := Endpoint{User: u.User.Username(), Host: u.Hostname(), Port: DefaultPort}
	if e.User == "" {
		return Endpoint{}, fmt.Errorf("%q names no user: ssh://user@host[:port]", u.Redacted())
	}
	if e.Host == "" {
		return Endpoint{}, fmt.Errorf("%q names no host: ssh://user@host[:port]", u.Redacted())
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Endpoint{}, fmt.Errorf("%q: port %q is not a number from 1 to 65535", u.Redacted(), p)
		}
		e.Port = n
	} else if strings.HasSuffix(u.Host, ":") {
		return Endpoint{}, fmt.Errorf("%q has an empty port", u.Redacted())
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return Endpoint{}, fmt.Errorf("%q: only ssh://user@host[:port], without a path or query", u.Redacted())
	}
	return e, nil
}

// redactURL hides what follows "user:" in a string that did not parse.
func redactURL(s string) string {
	if at := strings.LastIndexByte(s, '@'); at > 0 {
		if i := strings.Index(s[:at], "://"); i >= 0 {
			if c := strings.IndexByte(s[i+3:at], ':'); c >= 0 {
				return s[:i+3+c+1] + "xxxxx" + s[at:]
			}
		}
	}
	return s
}

// Validate reports every problem of the block, each prefixed with its key
// path under prefix (source.networkTunnel.sshForwarding). It reads
// knownHostsFile and parses privateKey. A block with no key set is valid
// (no tunnel).
func (c *Config) Validate(prefix string) error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	bad := func(key string, err error) {
		errs = append(errs, fmt.Errorf("%s.%s: %w", prefix, key, err))
	}
	if c.SSHEndpoint == "" {
		bad("sshEndpoint", fmt.Errorf("required when other keys of %s are set: ssh://user@host[:port] of the SSH server", prefix))
	} else if _, err := ParseEndpoint(c.SSHEndpoint); err != nil {
		bad("sshEndpoint", err)
	}
	if c.PrivateKey == "" {
		bad("privateKey", errors.New("required: the PEM private key of the SSH user (a secret: may come from PGKAFKA_SOURCE__NETWORKTUNNEL__SSHFORWARDING__PRIVATEKEY)"))
	} else if _, err := c.signer(); err != nil {
		var ke *keyError
		if errors.As(err, &ke) {
			bad(ke.key, ke.err)
		} else {
			bad("privateKey", err)
		}
	}
	if _, err := c.hostKeyCheck(prefix); err != nil {
		var ke *keyError
		if errors.As(err, &ke) {
			bad(ke.key, ke.err)
		} else {
			errs = append(errs, fmt.Errorf("%s: %w", prefix, err))
		}
	}
	return errors.Join(errs...)
}

// keyError is a problem of one key of the block, named relative to it.
type keyError struct {
	key string
	err error
}

func (e *keyError) Error() string { return e.key + ": " + e.err.Error() }
func (e *keyError) Unwrap() error { return e.err }

// pemBytes is privateKey as ssh parses it. A key whose line breaks were
// written as the two characters \n (one line of an environment variable)
// is taken too.
func (c *Config) pemBytes() []byte {
	s := strings.TrimSpace(string(c.PrivateKey))
	if !strings.Contains(s, "\n") && strings.Contains(s, `\n`) {
		s = strings.ReplaceAll(s, `\n`, "\n")
	}
	return []byte(s + "\n")
}

// signer parses privateKey. Its errors never hold the key.
func (c *Config) signer() (ssh.Signer, error) {
	raw := c.pemBytes()
	var s ssh.Signer
	var err error
	if c.PrivateKeyPassphrase != "" {
		s, err = ssh.ParsePrivateKeyWithPassphrase(raw, []byte(c.PrivateKeyPassphrase))
	} else {
		s, err = ssh.ParsePrivateKey(raw)
	}
	if err == nil {
		return s, nil
	}
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return nil, &keyError{"privateKeyPassphrase", errors.New("required: privateKey is encrypted with a passphrase")}
	case c.PrivateKeyPassphrase != "" && strings.Contains(err.Error(), "not password protected"):
		return nil, &keyError{"privateKeyPassphrase", errors.New("set, but privateKey is not encrypted: remove it")}
	case errors.Is(err, x509.IncorrectPasswordError):
		return nil, &keyError{"privateKeyPassphrase", errors.New("does not decrypt privateKey")}
	case strings.HasPrefix(strings.TrimSpace(string(c.PrivateKey)), "ssh-"):
		return nil, &keyError{"privateKey", errors.New("holds a public key: it must be the private key (the file without .pub, starting with -----BEGIN)")}
	}
	// ssh's parse errors name the format, never the key's bytes.
	return nil, &keyError{"privateKey", fmt.Errorf("not a private key in PEM or OpenSSH format (-----BEGIN ... PRIVATE KEY-----): %v", err)}
}

// hostKeyCheck is the host-key callback the configuration asks for, with
// the host-key algorithms to ask the server for (nil: any).
type hostKeyCheck struct {
	callback   ssh.HostKeyCallback
	algorithms []string
}

// hostKeyKeys are the keys of which exactly one must be set.
func hostKeyKeys(prefix string) string {
	return fmt.Sprintf("%[1]s.knownHostsFile, %[1]s.hostKey or %[1]s.insecureIgnoreHostKey", prefix)
}

func (c *Config) hostKeyCheck(prefix string) (*hostKeyCheck, error) {
	n := 0
	for _, set := range []bool{c.KnownHostsFile != "", strings.TrimSpace(c.HostKey) != "", c.InsecureIgnoreHostKey} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, fmt.Errorf("the SSH server's host key is not checked: set one of %s (ssh-keyscan -p PORT HOST prints the server's keys, for knownHostsFile or hostKey)", hostKeyKeys(prefix))
	case n > 1:
		return nil, fmt.Errorf("set only one of %s", hostKeyKeys(prefix))
	case c.InsecureIgnoreHostKey:
		return &hostKeyCheck{callback: ssh.InsecureIgnoreHostKey()}, nil
	case c.KnownHostsFile != "":
		cb, err := knownhosts.New(c.KnownHostsFile)
		if err != nil {
			return nil, &keyError{"knownHostsFile", fmt.Errorf("%q: %v", c.KnownHostsFile, err)}
		}
		return &hostKeyCheck{callback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			err := cb(host, remote, key)
			if err == nil {
				return nil
			}
			h, p := splitHostPort(host)
			return &HostKeyError{Key: "knownHostsFile", File: c.KnownHostsFile, Host: h, Port: p, Type: key.Type(), Fingerprint: ssh.FingerprintSHA256(key), Err: err}
		}}, nil
	}
	keys, fingerprints, err := parseHostKeys(c.HostKey)
	if err != nil {
		return nil, &keyError{"hostKey", err}
	}
	check := &hostKeyCheck{callback: func(host string, _ net.Addr, key ssh.PublicKey) error {
		fp := ssh.FingerprintSHA256(key)
		for _, k := range keys {
			if bytes.Equal(k.Marshal(), key.Marshal()) {
				return nil
			}
		}
		for _, f := range fingerprints {
			if f == fp {
				return nil
			}
		}
		h, p := splitHostPort(host)
		return &HostKeyError{Key: "hostKey", Host: h, Port: p, Type: key.Type(), Fingerprint: fp}
	}}
	if len(fingerprints) == 0 {
		// Ask for the pinned keys' algorithms, so a server with keys of
		// several types presents the pinned one.
		for _, k := range keys {
			check.algorithms = append(check.algorithms, algorithmsOf(k.Type())...)
		}
	}
	return check, nil
}

// parseHostKeys parses hostKey: one key a line, each an authorized_keys
// line, a known_hosts line or a SHA256 fingerprint.
func parseHostKeys(s string) (keys []ssh.PublicKey, fingerprints []string, err error) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for i := 1; sc.Scan(); i++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if f, ok := strings.CutPrefix(line, "SHA256:"); ok {
			if f == "" || strings.ContainsAny(f, " \t") {
				return nil, nil, fmt.Errorf("line %d: %q is not a SHA256 fingerprint (SHA256: and 43 base64 characters, as ssh-keygen -lf prints)", i, line)
			}
			fingerprints = append(fingerprints, "SHA256:"+strings.TrimRight(f, "="))
			continue
		}
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err == nil {
			keys = append(keys, k)
			continue
		}
		if _, _, k, _, _, err := ssh.ParseKnownHosts([]byte(line)); err == nil {
			keys = append(keys, k)
			continue
		}
		return nil, nil, fmt.Errorf("line %d is not a public key (\"ssh-ed25519 AAAA...\", a known_hosts line as ssh-keyscan prints, or SHA256:...)", i)
	}
	if len(keys)+len(fingerprints) == 0 {
		return nil, nil, errors.New("holds no key")
	}
	return keys, fingerprints, nil
}

// algorithmsOf are the host-key algorithms that present a key of type t.
func algorithmsOf(t string) []string {
	if t == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{t}
}

// clientConfig is the ssh configuration of the tunnel. Its errors are
// *Error with a Key to fix.
func (c *Config) clientConfig(ep Endpoint, prefix string) (*ssh.ClientConfig, error) {
	signer, err := c.signer()
	if err != nil {
		var ke *keyError
		errors.As(err, &ke)
		return nil, &Error{Endpoint: ep.String(), Key: prefix + "." + ke.key, Err: ke.err}
	}
	check, err := c.hostKeyCheck(prefix)
	if err != nil {
		key := prefix
		var ke *keyError
		if errors.As(err, &ke) {
			key, err = prefix+"."+ke.key, ke.err
		}
		return nil, &Error{Endpoint: ep.String(), Key: key, Err: err}
	}
	return &ssh.ClientConfig{
		User:              ep.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   check.callback,
		HostKeyAlgorithms: check.algorithms,
	}, nil
}

// splitHostPort splits the address ssh hands the host-key callback.
func splitHostPort(addr string) (host, port string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, strconv.Itoa(DefaultPort)
	}
	return host, port
}
