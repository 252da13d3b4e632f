package tunnel

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh/knownhosts"
)

// Error is a failure of the tunnel. Its message names the SSH endpoint
// (user@host:port), never the key.
type Error struct {
	// Endpoint is user@host:port.
	Endpoint string
	// Key is the configuration key to fix when the configuration is at
	// fault (a refused key or host key, a key that does not parse);
	// empty for a failure of the network or of a server, which a retry
	// may get past.
	Key string
	// Err says what failed.
	Err error
}

func (e *Error) Error() string { return fmt.Sprintf("SSH tunnel %s: %v", e.Endpoint, e.Err) }

// Unwrap returns what failed: a net error when the network did.
func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether a retry may succeed: the configuration is
// not at fault.
func (e *Error) Retryable() bool { return e.Key == "" }

// HostKeyError: the SSH server presented a host key the configuration
// does not accept.
type HostKeyError struct {
	// Key is the configuration key that refused it: hostKey or
	// knownHostsFile.
	Key string
	// File is knownHostsFile, when Key is.
	File string
	// Host and Port are the SSH server's, as the endpoint names them.
	Host, Port string
	// Type and Fingerprint (SHA256:...) describe the presented key.
	Type, Fingerprint string
	// Err is knownhosts' error, when Key is knownHostsFile.
	Err error
}

func (e *HostKeyError) Error() string {
	presented := fmt.Sprintf("the server presented host key %s %s", e.Type, e.Fingerprint)
	keyscan := fmt.Sprintf("ssh-keyscan -p %s %s", e.Port, e.Host)
	var kerr *knownhosts.KeyError
	switch {
	case e.Key == "hostKey":
		return presented + ", which hostKey does not pin: if the server's key changed on purpose, set hostKey to its new key (" + keyscan + " prints it); otherwise someone may be intercepting the connection"
	case errors.As(e.Err, &kerr) && len(kerr.Want) == 0:
		return fmt.Sprintf("%s, and knownHostsFile %q holds no key for this host: add one (%s >> %s, after checking the fingerprint)", presented, e.File, keyscan, e.File)
	case errors.As(e.Err, &kerr):
		return fmt.Sprintf("%s, which does not match the key knownHostsFile %q holds for this host (%s line %d): if the server's key changed on purpose, replace that line; otherwise someone may be intercepting the connection",
			presented, e.File, kerr.Want[0].Filename, kerr.Want[0].Line)
	default:
		return fmt.Sprintf("%s, which knownHostsFile %q refuses: %v", presented, e.File, e.Err)
	}
}

// Unwrap returns knownhosts' error, if any.
func (e *HostKeyError) Unwrap() error { return e.Err }
