package schema

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pgkafka/pgkafka/pgsrc/secret"
)

// registryTimeout bounds one request to the registry (sr's default).
const registryTimeout = 5 * time.Second

// client returns the registry client of c, the one builder of Registry's
// and Decoder's: c's URL, TLS (CA, client certificate, skipped
// verification) and authentication (basic, a bearer token, or the token
// TokenCommand prints). It reads the TLS files, and makes no request.
func (c *RegistryConfig) client() (*sr.Client, error) {
	tc, err := c.TLS.config()
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tc
	var rt http.RoundTripper = transport
	opts := []sr.ClientOpt{sr.URLs(c.URL)}
	switch {
	case c.Username != "":
		opts = append(opts, sr.BasicAuth(c.Username, string(c.Password)))
	case c.BearerToken != "":
		opts = append(opts, sr.BearerToken(string(c.BearerToken)))
	case len(c.TokenCommand) > 0:
		rt = &commandBearer{next: transport, argv: c.TokenCommand}
	}
	opts = append(opts, sr.HTTPClient(&http.Client{Timeout: registryTimeout, Transport: rt}))
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("schema registry client for %s: %w", redactURL(c.URL), err)
	}
	return cl, nil
}

// config returns the TLS configuration of the registry's connections.
func (t *RegistryTLS) config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in by the operator
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("schemaRegistry.tls.caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("schemaRegistry.tls.caFile: no PEM certificate in %s", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("schemaRegistry.tls.certFile/keyFile: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// commandBearer sends the token that argv prints as a bearer token. It
// keeps the token while the registry takes it, and runs argv again, and
// retries the request once, when the registry answers 401 Unauthorized.
type commandBearer struct {
	next http.RoundTripper
	argv []string

	mu    sync.Mutex
	token secret.String
}

func (b *commandBearer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close() // send passes copies of it
	}
	b.mu.Lock()
	token := b.token
	b.mu.Unlock()
	fresh := false
	if token == "" {
		var err error
		if token, err = b.refresh(req, ""); err != nil {
			return nil, err
		}
		fresh = true
	}
	resp, err := b.send(req, token)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || fresh || (req.Body != nil && req.GetBody == nil) {
		return resp, err
	}
	resp.Body.Close()
	if token, err = b.refresh(req, token); err != nil {
		return nil, err
	}
	return b.send(req, token)
}

// refresh runs argv unless another request has replaced stale already.
func (b *commandBearer) refresh(req *http.Request, stale secret.String) (secret.String, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.token != stale {
		return b.token, nil
	}
	token, err := secret.Command(req.Context(), "schemaRegistry.tokenCommand", b.argv)
	if err != nil {
		return "", err
	}
	b.token = token
	return token, nil
}

// send sends a copy of req (with a new body) carrying token.
func (b *commandBearer) send(req *http.Request, token secret.String) (*http.Response, error) {
	r := req.Clone(req.Context())
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		r.Body = body
	}
	r.Header.Set("Authorization", "Bearer "+string(token))
	return b.next.RoundTrip(r)
}
