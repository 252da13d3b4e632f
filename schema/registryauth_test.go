package schema

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/pgkafka/pgkafka/pgsrc/secret/secrettest"
)

// TestRegistryAuthConfig: the TLS and bearer keys of schemaRegistry are
// validated with their paths; the bearer token is among Secrets.
func TestRegistryAuthConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  RegistryConfig
		want []string
	}{
		{name: "bearer", cfg: RegistryConfig{URL: "https://sr.example", BearerToken: "bt-Secret1"}},
		{name: "command", cfg: RegistryConfig{URL: "https://sr.example", TokenCommand: []string{"gcloud", "auth", "print-access-token"}}},
		{name: "mtls", cfg: RegistryConfig{URL: "https://sr.example", TLS: RegistryTLS{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"}}},
		{name: "both tokens", cfg: RegistryConfig{URL: "https://sr.example", BearerToken: "bt-Secret1", TokenCommand: []string{"x"}},
			want: []string{"schemaRegistry.bearerToken: set, and so is schemaRegistry.tokenCommand"}},
		{name: "basic and bearer", cfg: RegistryConfig{URL: "https://sr.example", Username: "u", Password: "p", BearerToken: "bt-Secret1"},
			want: []string{"schemaRegistry.username: set with a bearer token"}},
		{name: "empty command", cfg: RegistryConfig{URL: "https://sr.example", TokenCommand: []string{""}},
			want: []string{"schemaRegistry.tokenCommand[0]: empty"}},
		{name: "cert without key", cfg: RegistryConfig{URL: "https://sr.example", TLS: RegistryTLS{CertFile: "c.pem"}},
			want: []string{"schemaRegistry.tls: certFile and keyFile go together"}},
		{name: "tls over http", cfg: RegistryConfig{URL: "http://sr.example", TLS: RegistryTLS{InsecureSkipVerify: true}},
			want: []string{`schemaRegistry.tls: set, but schemaRegistry.url "http://sr.example" is http://`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.SetDefaults()
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "bt-Secret1") {
				t.Errorf("the token is in the error: %v", err)
			}
		})
	}
	c := RegistryConfig{BearerToken: "bt-Secret1"}
	if !strings.Contains(fmt.Sprint(c.Secrets()), "[redacted]") || !contains(c.Secrets(), "bt-Secret1") {
		t.Errorf("Secrets %v lacks the bearer token", c.Secrets())
	}
}

// topicTable is testTable's orders table going to another topic (other
// subjects).
func topicTable(topic string) Table {
	tbl := testTable(orderColumns(), []int{0})
	tbl.Topic = topic
	return tbl
}

func contains[S ~[]E, E comparable](s S, v E) bool {
	for _, e := range s {
		if e == v {
			return true
		}
	}
	return false
}

// registerAndDecode registers a codec's schemas through NewRegistry and
// reads a key back through NewDecoder: both clients of cfg.
func registerAndDecode(t *testing.T, cfg RegistryConfig) error {
	t.Helper()
	ctx := context.Background()
	reg, err := NewRegistry(cfg)
	if err != nil {
		return err
	}
	c := mustCodec(t, testTable(orderColumns(), []int{0}), EnvelopeDebezium)
	if _, err := reg.Register(ctx, c); err != nil {
		return err
	}
	dec, err := NewDecoder(cfg)
	if err != nil {
		return err
	}
	b, err := c.AppendKey(nil, datums("1", "eu", "", "1.00"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := dec.Decode(ctx, b)
	if err != nil {
		return err
	}
	if m, ok := v.(map[string]any); !ok || m["id"] == nil {
		t.Errorf("decoded key %#v", v)
	}
	return nil
}

// TestRegistryTLS: a registry behind TLS that requires client
// certificates (tls.RequireAndVerifyClientCert) is reached with
// schemaRegistry.tls.caFile, certFile and keyFile, by the registry client
// and the decoder; without the certificate, or without the CA, it is not;
// insecureSkipVerify opts out of checking the registry's certificate.
func TestRegistryTLS(t *testing.T) {
	certs := secrettest.New(t)
	fake := srfake.NewRegistry()
	srv := httptest.NewUnstartedServer(fake.Handler())
	srv.TLS = certs.ServerConfig(true)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below
	srv.StartTLS()
	t.Cleanup(srv.Close)

	mtls := RegistryConfig{URL: srv.URL, TLS: RegistryTLS{CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}}
	if err := registerAndDecode(t, mtls); err != nil {
		t.Fatalf("mTLS: %v", err)
	}
	noCert := mtls
	noCert.TLS.CertFile, noCert.TLS.KeyFile = "", ""
	if err := registerAndDecode(t, noCert); err == nil {
		t.Error("the registry took a client without a certificate")
	}
	noCA := mtls
	noCA.TLS.CAFile = ""
	if err := registerAndDecode(t, noCA); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a registry certificate from an unknown CA: %v", err)
	}
	skip := noCA
	skip.TLS.InsecureSkipVerify = true
	if err := registerAndDecode(t, skip); err != nil {
		t.Errorf("insecureSkipVerify: %v", err)
	}
	missing := mtls
	missing.TLS.CAFile = filepath.Join(t.TempDir(), "nope.pem")
	if err := registerAndDecode(t, missing); err == nil || !strings.HasPrefix(err.Error(), "schemaRegistry.tls.caFile: ") {
		t.Errorf("a missing CA file: %v", err)
	}
}

// TestRegistryBearer: schemaRegistry.bearerToken is sent with every
// request; schemaRegistry.tokenCommand's token is kept while the registry
// takes it and made anew (the command run again, the request retried) when
// the registry answers 401.
func TestRegistryBearer(t *testing.T) {
	fake := srfake.NewRegistry()
	var want atomic.Value
	want.Store("Bearer bt-Secret2")
	var refused atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != want.Load().(string) {
			refused.Add(1)
			http.Error(w, `{"error_code":40101,"message":"Unauthorized"}`, http.StatusUnauthorized)
			return
		}
		fake.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	if err := registerAndDecode(t, RegistryConfig{URL: srv.URL, BearerToken: "bt-Secret2"}); err != nil {
		t.Fatalf("bearerToken: %v", err)
	}
	err := registerAndDecode(t, RegistryConfig{URL: srv.URL, BearerToken: "wrong-Secret3"})
	if err == nil {
		t.Fatal("the registry took a wrong token")
	}
	if strings.Contains(err.Error(), "wrong-Secret3") {
		t.Errorf("the token is in the error: %v", err)
	}

	dir := t.TempDir()
	tokenFile, runs := filepath.Join(dir, "token"), filepath.Join(dir, "runs")
	script := filepath.Join(dir, "token.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho run >> "+runs+"\ncat "+tokenFile+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	setToken := func(tok string) {
		if err := os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		want.Store("Bearer " + tok)
	}
	countRuns := func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "run")
	}
	setToken("tok-A")
	cfg := RegistryConfig{URL: srv.URL, TokenCommand: []string{script}}
	reg, err := NewRegistry(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := reg.Register(ctx, mustCodec(t, testTable(orderColumns(), []int{0}), EnvelopeDebezium)); err != nil {
		t.Fatal(err)
	}
	if n := countRuns(); n != 1 {
		t.Errorf("the command ran %d times for one token, want 1", n)
	}
	setToken("tok-B") // tok-A expired
	refused.Store(0)
	if _, err := reg.Register(ctx, mustCodec(t, topicTable("shop.public.b"), EnvelopeDebezium)); err != nil {
		t.Fatalf("after the token changed: %v", err)
	}
	if n, r := countRuns(), refused.Load(); n != 2 || r != 1 {
		t.Errorf("after one 401: %d runs (want 2), %d refused (want 1)", n, r)
	}

	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	want.Store("Bearer tok-C")
	_, err = reg.Register(ctx, mustCodec(t, topicTable("shop.public.c"), EnvelopeDebezium))
	if err == nil || !strings.Contains(err.Error(), "schemaRegistry.tokenCommand: running") {
		t.Errorf("a failing command: %v", err)
	}
}
