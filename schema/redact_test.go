package schema

import (
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// The registry's passwords in a URL ("p@ss" written p%40ss) and for basic
// authentication.
const (
	urlPassword   = "p@ss-Secret9"
	basicPassword = "basic-Secret7"
)

// TestRegistryErrorsHidePasswords: whatever the registry's trouble (down,
// closing connections, echoing the request in its error), the errors of
// Registry and Decoder name the registry's host but hold neither the
// password of schemaRegistry.url, in any of its spellings, nor
// schemaRegistry.password. franz-go's sr client quotes the URL it requested,
// userinfo included, in its errors.
func TestRegistryErrorsHidePasswords(t *testing.T) {
	closed := closedAddr(t)
	closing := srfake.New()
	t.Cleanup(closing.Close)
	closing.Intercept(func(w http.ResponseWriter, _ *http.Request) bool {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return true
	})
	echoing := srfake.New()
	t.Cleanup(echoing.Close)
	echoing.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		auth, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(r.Header.Get("Authorization"), "Basic "))
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error_code":50001,"message":"rejected credentials ` + string(auth) + `"}`))
		return true
	})
	hostOf := func(u string) string { p, _ := url.Parse(u); return p.Host }

	for _, tc := range []struct{ name, host string }{
		{"down", closed},
		{"closing connections", hostOf(closing.URL())},
		{"echoing", hostOf(echoing.URL())},
	} {
		for _, cfg := range []RegistryConfig{
			{URL: "http://alice:" + url.QueryEscape(urlPassword) + "@" + tc.host},
			{URL: "http://" + tc.host, Username: "alice", Password: basicPassword},
		} {
			t.Run(tc.name+"/"+redactURL(cfg.URL), func(t *testing.T) {
				ctx := context.Background()
				reg, err := NewRegistry(cfg)
				if err != nil {
					t.Fatal(err)
				}
				dec, err := NewDecoder(cfg)
				if err != nil {
					t.Fatal(err)
				}
				c := mustCodec(t, testTable(orderColumns(), []int{0}), EnvelopeDebezium)
				mc, err := NewMessageCodec("shop.message", testSource)
				if err != nil {
					t.Fatal(err)
				}
				_, errRegister := reg.Register(ctx, c)
				_, _, errLatest := reg.Latest(ctx, "shop.public.orders-value")
				_, errDecode := dec.Decode(ctx, []byte{0, 0, 0, 0, 1, 2})
				for op, err := range map[string]error{
					"Register": errRegister, "RegisterMessages": reg.RegisterMessages(ctx, mc),
					"Latest": errLatest, "Inherit": reg.Inherit(ctx, &Table{Topic: "shop.public.orders", Namespace: "shop.public.orders"}, EnvelopeDebezium), "Decode": errDecode,
				} {
					if err == nil {
						t.Errorf("%s: no error", op)
						continue
					}
					msg := err.Error()
					for _, pw := range []string{urlPassword, url.QueryEscape(urlPassword), url.PathEscape(urlPassword), basicPassword} {
						if strings.Contains(msg, pw) {
							t.Errorf("%s: error holds the password %q: %s", op, pw, msg)
						}
					}
					if !strings.Contains(msg, tc.host) {
						t.Errorf("%s: error does not name the registry at %s: %s", op, tc.host, msg)
					}
				}
			})
		}
	}
}

func TestRegistrySecrets(t *testing.T) {
	for _, tc := range []struct {
		cfg  RegistryConfig
		want []string
	}{
		{RegistryConfig{URL: "http://h:1"}, nil},
		{RegistryConfig{URL: "http://alice@h:1", Username: "x", Password: "pw-123"}, []string{"pw-123"}},
		{RegistryConfig{URL: "https://alice:p%40ss@h:1/base?x=1"}, []string{"alice:p%40ss", "p%40ss", "p@ss"}},
		{RegistryConfig{URL: "http://a:b:c@d@h"}, []string{"a:b:c@d", "b:c@d", "a:b%3Ac%40d", "b%3Ac%40d"}},
		{RegistryConfig{URL: "::bad://u:pw-x@h/"}, []string{"u:pw-x", "pw-x"}},
	} {
		t.Run(tc.cfg.URL, func(t *testing.T) {
			got := map[string]bool{}
			for _, s := range tc.cfg.Secrets() {
				got[string(s)] = true
			}
			for _, w := range tc.want {
				if !got[w] {
					t.Errorf("Secrets() = %v lacks %q", got, w)
				}
			}
			for s := range got {
				if s != "" && !strings.Contains(strings.Join(tc.want, " "), s) {
					t.Errorf("Secrets() holds %q, not a secret", s)
				}
			}
		})
	}
}

// closedAddr is a local host:port where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
