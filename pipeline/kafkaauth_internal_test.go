package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pgsrc/secret/secrettest"
)

// TestKafkaAuthConfig: every key of kafka.sasl is required by its
// mechanism and refused by the others, each error with its key path; an
// unknown mechanism lists the known ones.
func TestKafkaAuthConfig(t *testing.T) {
	oauth := OAuthConfig{TokenEndpoint: "https://login.example/oauth2/token", ClientID: "pgkafka", ClientSecret: "cs-Secret1"}
	for _, tc := range []struct {
		name string
		sasl SASLConfig
		tls  bool
		want []string // substrings of the error; none: valid
	}{
		{name: "none", sasl: SASLConfig{}},
		{name: "plain", sasl: SASLConfig{Mechanism: "plain", Username: "u", Password: "p"}},
		{name: "scram without password", sasl: SASLConfig{Mechanism: "scram-sha-512", Username: "u"},
			want: []string{"kafka.sasl.password: required with kafka.sasl.mechanism scram-sha-512"}},
		{name: "unknown", sasl: SASLConfig{Mechanism: "gssapi"},
			want: []string{`kafka.sasl.mechanism: "gssapi" is not one of plain, scram-sha-256, scram-sha-512, oauthbearer, aws_msk_iam`}},
		{name: "oauthbearer command", sasl: SASLConfig{Mechanism: "oauthbearer", TokenCommand: []string{"gettoken", "--kafka"},
			Extensions: map[string]string{"logicalCluster": "lkc-1"}}},
		{name: "oauthbearer client credentials", sasl: SASLConfig{Mechanism: "oauthbearer", OAuth: oauth}},
		{name: "oauthbearer without a token", sasl: SASLConfig{Mechanism: "oauthbearer"},
			want: []string{"kafka.sasl.tokenCommand: required with kafka.sasl.mechanism oauthbearer"}},
		{name: "oauthbearer with both", sasl: SASLConfig{Mechanism: "oauthbearer", OAuth: oauth, TokenCommand: []string{"x"}},
			want: []string{"kafka.sasl: tokenCommand and oauth are both set"}},
		{name: "oauthbearer with a password", sasl: SASLConfig{Mechanism: "oauthbearer", TokenCommand: []string{"x"}, Username: "u", Password: "p"},
			want: []string{`kafka.sasl.username: set, but kafka.sasl.mechanism is "oauthbearer"`, `kafka.sasl.password: set, but`}},
		{name: "oauth incomplete", sasl: SASLConfig{Mechanism: "oauthbearer", OAuth: OAuthConfig{TokenEndpoint: "login.example"}},
			want: []string{`kafka.sasl.oauth.tokenEndpoint: "login.example" is not an https:// URL`,
				"kafka.sasl.oauth.clientId: required", "kafka.sasl.oauth.clientSecret: required"}},
		{name: "empty command", sasl: SASLConfig{Mechanism: "oauthbearer", TokenCommand: []string{""}},
			want: []string{"kafka.sasl.tokenCommand[0]: empty"}},
		{name: "bad extension", sasl: SASLConfig{Mechanism: "oauthbearer", TokenCommand: []string{"x"}, Extensions: map[string]string{"auth": "x"}},
			want: []string{`kafka.sasl.extensions: "auth" is not an extension name`}},
		{name: "token command with plain", sasl: SASLConfig{Mechanism: "plain", Username: "u", Password: "p", TokenCommand: []string{"x"}},
			want: []string{`kafka.sasl: tokenCommand, oauth and extensions go with kafka.sasl.mechanism oauthbearer, not "plain"`}},
		{name: "msk iam", sasl: SASLConfig{Mechanism: "aws_msk_iam", AWSRegion: "eu-west-1"}, tls: true},
		{name: "msk iam without tls", sasl: SASLConfig{Mechanism: "aws_msk_iam"},
			want: []string{"kafka.tls.enabled: required with kafka.sasl.mechanism aws_msk_iam"}},
		{name: "region with scram", sasl: SASLConfig{Mechanism: "scram-sha-256", Username: "u", Password: "p", AWSRegion: "eu-west-1"},
			want: []string{`kafka.sasl.awsRegion: set, but kafka.sasl.mechanism is "scram-sha-256"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p problems
			k := KafkaConfig{SASL: tc.sasl, TLS: TLSConfig{Enabled: tc.tls}}
			k.validateAuth(&p)
			err := errors.Join(p...)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
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
			if strings.Contains(err.Error(), "cs-Secret1") {
				t.Errorf("the client secret is in the error: %v", err)
			}
		})
	}
}

// TestKafkaAuthSecrets: the client secret and the registry's bearer token
// are among Config.Secrets, and the client secret leaves kgo's log lines.
func TestKafkaAuthSecrets(t *testing.T) {
	var c Config
	c.Kafka.SASL.OAuth.ClientSecret = "cs-Secret2"
	c.SchemaRegistry.BearerToken = "bt-Secret3"
	red := c.Redactor()
	if got := red.Redact("a cs-Secret2 b bt-Secret3"); got != "a [redacted] b [redacted]" {
		t.Errorf("redacted: %q", got)
	}
	var buf strings.Builder
	k := KafkaConfig{Brokers: []string{"127.0.0.1:1"}, ClientID: "t", SASL: c.Kafka.SASL}
	k.SASL.Mechanism, k.SASL.TokenCommand = SASLOAuthBearer, []string{"true"}
	opts, err := k.clientOpts(slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cl.OptValue(kgo.WithLogger).(kgo.Logger).Log(kgo.LogLevelError, "token request with cs-Secret2 refused")
	if out := buf.String(); strings.Contains(out, "cs-Secret2") || !strings.Contains(out, "token request with [redacted] refused") {
		t.Errorf("logged: %s", out)
	}
}

// tlsKafka starts a kfake cluster listening with TLS (client certificates
// required when mtls) and SASL with a superuser when saslMech is set.
func tlsKafka(t *testing.T, certs *secrettest.Certs, mtls bool, saslMech, user, pass string) *kfake.Cluster {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.TLS(certs.ServerConfig(mtls)), kfake.SeedTopics(1, "auth-test")}
	if saslMech != "" {
		opts = append(opts, kfake.EnableSASL(), kfake.Superuser(saslMech, user, pass))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// produceConsume produces a record transactionally with producerOpts and
// reads it back read_committed with clientOpts: the options every client
// of a capture gets.
func produceConsume(ctx context.Context, k *KafkaConfig) error {
	popts, err := k.producerOpts(discardLogger())
	if err != nil {
		return err
	}
	p, err := kgo.NewClient(append(popts, kgo.TransactionalID("auth-test"), kgo.RequestRetries(2))...)
	if err != nil {
		return err
	}
	defer p.Close()
	if _, _, err := p.ProducerID(ctx); err != nil {
		return k.explainAuth(err)
	}
	if err := p.BeginTransaction(); err != nil {
		return err
	}
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: "auth-test", Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
		return err
	}
	if err := p.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return err
	}
	copts, err := k.clientOpts(discardLogger())
	if err != nil {
		return err
	}
	c, err := kgo.NewClient(append(copts, kgo.ConsumeTopics("auth-test"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		fs := c.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return k.explainAuth(err)
		}
		for _, r := range fs.Records() {
			if string(r.Value) == "v" {
				return nil
			}
		}
	}
}

// TestKafkaSCRAMOverMTLS: a broker that requires client certificates
// (tls.RequireAndVerifyClientCert) and SCRAM-SHA-512: a capture's
// producer and consumer options (kafka.tls.caFile, certFile, keyFile and
// kafka.sasl) produce and read back; without the client certificate the
// broker refuses the connection; with a wrong password the error names
// kafka.sasl.
func TestKafkaSCRAMOverMTLS(t *testing.T) {
	certs := secrettest.New(t)
	c := tlsKafka(t, certs, true, "SCRAM-SHA-512", "capture", "scram-Secret4")
	k := KafkaConfig{Brokers: c.ListenAddrs(), ClientID: "t", Compression: "none", MaxRecordBytes: DefaultMaxRecordBytes,
		TLS:  TLSConfig{Enabled: true, CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile},
		SASL: SASLConfig{Mechanism: SASLScramSHA512, Username: "capture", Password: "scram-Secret4"}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := produceConsume(ctx, &k); err != nil {
		t.Fatalf("mTLS + SCRAM: %v", err)
	}

	t.Run("no client certificate", func(t *testing.T) {
		k := k
		k.TLS.CertFile, k.TLS.KeyFile = "", ""
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := produceConsume(ctx, &k); err == nil {
			t.Fatal("the broker took a client without a certificate")
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		k := k
		k.SASL.Password = "wrong-Secret"
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := produceConsume(ctx, &k)
		if err == nil {
			t.Fatal("the broker took a wrong password")
		}
		t.Logf("wrong password: %v", err)
	})
}

// TestKafkaPlainOverTLS: PLAIN over server-only TLS (Confluent Cloud's
// shape), end to end.
func TestKafkaPlainOverTLS(t *testing.T) {
	certs := secrettest.New(t)
	c := tlsKafka(t, certs, false, "PLAIN", "key", "plain-Secret5")
	k := KafkaConfig{Brokers: c.ListenAddrs(), ClientID: "t", Compression: "none", MaxRecordBytes: DefaultMaxRecordBytes,
		TLS:  TLSConfig{Enabled: true, CAFile: certs.CAFile},
		SASL: SASLConfig{Mechanism: SASLPlain, Username: "key", Password: "plain-Secret5"}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := produceConsume(ctx, &k); err != nil {
		t.Fatal(err)
	}
}

// initialResponse runs k's SASL mechanism's first step for a broker at
// host, as kgo does for each new connection, and returns what it sends.
func initialResponse(t *testing.T, k *KafkaConfig, host string) ([]byte, error) {
	t.Helper()
	m, err := k.saslMechanism()
	if err != nil {
		t.Fatal(err)
	}
	_, msg, err := m.Authenticate(context.Background(), host)
	return msg, err
}

// bearer returns the token of an OAUTHBEARER initial response and its
// extensions (RFC 7628 §3.1).
func bearer(t *testing.T, msg []byte) (string, map[string]string) {
	t.Helper()
	gs2, rest, ok := strings.Cut(string(msg), "\x01")
	if !ok || gs2 != "n,," {
		t.Fatalf("initial response %q", msg)
	}
	kvs := map[string]string{}
	for kv := range strings.SplitSeq(strings.TrimRight(rest, "\x01"), "\x01") {
		key, v, _ := strings.Cut(kv, "=")
		kvs[key] = v
	}
	token, ok := strings.CutPrefix(kvs["auth"], "Bearer ")
	if !ok {
		t.Fatalf("no bearer token in %q", msg)
	}
	delete(kvs, "auth")
	return token, kvs
}

// TestKafkaSASLOAuthBearerTokenCommand: oauthbearer with
// kafka.sasl.tokenCommand runs the command (no shell: its argument with a
// space arrives whole) for each new connection, and sends what it printed,
// trimmed, with the extensions. A failing command's error names the key and
// its stderr. kfake does not speak OAUTHBEARER: the capture's error says
// kafka.sasl.mechanism.
func TestKafkaSASLOAuthBearerTokenCommand(t *testing.T) {
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	script := filepath.Join(dir, "token.sh")
	writeFile(t, script, "#!/bin/sh\n[ \"$1\" = 'a b' ] || { echo \"bad argument: $1\" >&2; exit 3; }\necho run >> "+runs+"\necho \"  tok-$(wc -l < "+runs+" | tr -d ' ')  \"\n")
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	k := KafkaConfig{Brokers: []string{"127.0.0.1:1"}, SASL: SASLConfig{Mechanism: SASLOAuthBearer, TokenCommand: []string{script, "a b"},
		Extensions: map[string]string{"logicalCluster": "lkc-1"}}}
	for i := 1; i <= 3; i++ {
		msg, err := initialResponse(t, &k, "broker:9092")
		if err != nil {
			t.Fatal(err)
		}
		token, ext := bearer(t, msg)
		if want := fmt.Sprintf("tok-%d", i); token != want {
			t.Errorf("connection %d: token %q, want %q", i, token, want)
		}
		if ext["logicalCluster"] != "lkc-1" || len(ext) != 1 {
			t.Errorf("extensions %v", ext)
		}
	}

	k.SASL.TokenCommand = []string{script, "ab"}
	_, err := initialResponse(t, &k, "broker:9092")
	if err == nil || !strings.Contains(err.Error(), "kafka.sasl.tokenCommand: running") || !strings.Contains(err.Error(), "bad argument: ab") {
		t.Errorf("failing command: %v", err)
	}

	t.Run("kfake", func(t *testing.T) {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("PLAIN", "u", "p"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		k := KafkaConfig{Brokers: c.ListenAddrs(), ClientID: "t", Compression: "none", MaxRecordBytes: DefaultMaxRecordBytes,
			SASL: SASLConfig{Mechanism: SASLOAuthBearer, TokenCommand: []string{script, "a b"}}}
		assertRefusedMechanism(t, &k)
	})
}

// assertRefusedMechanism: a broker that does not offer k's mechanism fails
// the capture's first request with an error naming kafka.sasl.mechanism.
func assertRefusedMechanism(t *testing.T, k *KafkaConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := produceConsume(ctx, k)
	if !errors.Is(err, kerr.UnsupportedSaslMechanism) {
		t.Fatalf("error %v, want UNSUPPORTED_SASL_MECHANISM", err)
	}
	for _, want := range []string{"kafka.sasl.mechanism:", "do not offer " + k.SASL.Mechanism} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestKafkaSASLOAuthBearerClientCredentials: oauthbearer with
// kafka.sasl.oauth takes its token from a client-credentials grant (the
// form and the client's credentials checked by the endpoint), keeps it
// while it is valid, and asks again once it is about to expire.
func TestKafkaSASLOAuthBearerClientCredentials(t *testing.T) {
	var grants atomic.Int32
	var expiresIn atomic.Int32
	expiresIn.Store(3600)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.Method != http.MethodPost || r.URL.Path != "/token" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		id, sec, ok := r.BasicAuth()
		if !ok {
			id, sec = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		if r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("scope") != "kafka:write kafka:read" {
			t.Errorf("form %v", r.PostForm)
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		if id != "pgkafka" || sec != "cs-Secret6" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client"}`)
			return
		}
		n := grants.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("jwt-%d", n), "token_type": "Bearer", "expires_in": expiresIn.Load()})
	}))
	defer srv.Close()
	k := KafkaConfig{SASL: SASLConfig{Mechanism: SASLOAuthBearer, OAuth: OAuthConfig{TokenEndpoint: srv.URL + "/token",
		ClientID: "pgkafka", ClientSecret: "cs-Secret6", Scope: "kafka:write  kafka:read"}}}
	m, err := k.saslMechanism()
	if err != nil {
		t.Fatal(err)
	}
	auth := func() string {
		_, msg, err := m.Authenticate(context.Background(), "broker:9092")
		if err != nil {
			t.Fatal(err)
		}
		token, _ := bearer(t, msg)
		return token
	}
	for range 3 {
		if tok := auth(); tok != "jwt-1" {
			t.Errorf("token %q, want the cached jwt-1", tok)
		}
	}
	if n := grants.Load(); n != 1 {
		t.Errorf("%d grants for a valid token, want 1", n)
	}

	// A token that expires within seconds is asked for again each time.
	expiresIn.Store(5)
	k2 := k
	m, err = k2.saslMechanism()
	if err != nil {
		t.Fatal(err)
	}
	first, second := auth(), auth()
	if first == second {
		t.Errorf("an expiring token was reused: %q", first)
	}

	k3 := k
	k3.SASL.OAuth.ClientSecret = "wrong-Secret7"
	_, err = initialResponse(t, &k3, "broker:9092")
	if err == nil || !strings.Contains(err.Error(), "kafka.sasl.oauth.tokenEndpoint") || !strings.Contains(err.Error(), `client "pgkafka"`) {
		t.Errorf("refused grant: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "wrong-Secret7") {
		t.Errorf("the client secret is in the error: %v", err)
	}
}

// TestKafkaSASLAWSMSKIAM: aws_msk_iam signs each connection with the
// credentials of the AWS SDK's default chain (here the environment's), in
// the region of the broker's MSK host name, with the session token. kfake
// does not speak AWS_MSK_IAM: over TLS (which the mechanism requires) the
// capture's error names kafka.sasl.mechanism.
func TestKafkaSASLAWSMSKIAM(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDPGKAFKATEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "aws-Secret8")
	t.Setenv("AWS_SESSION_TOKEN", "session-token-1")
	certs := secrettest.New(t)
	k := KafkaConfig{ClientID: "t", Compression: "none", MaxRecordBytes: DefaultMaxRecordBytes,
		TLS:  TLSConfig{Enabled: true, CAFile: certs.CAFile},
		SASL: SASLConfig{Mechanism: SASLAWSMSKIAM, AWSRegion: "eu-west-1"}}
	var p problems
	k.validateAuth(&p)
	if err := errors.Join(p...); err != nil {
		t.Fatal(err)
	}
	msg, err := initialResponse(t, &k, "b-1.demo.abc123.c2.kafka.us-east-1.amazonaws.com:9098")
	if err != nil {
		t.Fatal(err)
	}
	var signed map[string]string
	if err := json.Unmarshal(msg, &signed); err != nil {
		t.Fatalf("%s: %v", msg, err)
	}
	date := time.Now().UTC().Format("20060102")
	for key, want := range map[string]string{
		"action":               "kafka-cluster:Connect",
		"host":                 "b-1.demo.abc123.c2.kafka.us-east-1.amazonaws.com",
		"x-amz-credential":     "AKIDPGKAFKATEST/" + date + "/us-east-1/kafka-cluster/aws4_request",
		"x-amz-security-token": "session-token-1",
		"user-agent":           "pgkafka",
		"version":              "2020_10_22",
	} {
		if signed[key] != want && !(key == "x-amz-credential" && strings.HasPrefix(signed[key], "AKIDPGKAFKATEST/")) {
			t.Errorf("%s = %q, want %q", key, signed[key], want)
		}
	}
	if len(signed["x-amz-signature"]) != 64 {
		t.Errorf("signature %q", signed["x-amz-signature"])
	}
	if strings.Contains(string(msg), "aws-Secret8") {
		t.Error("the secret key is sent")
	}

	c := tlsKafka(t, certs, false, "PLAIN", "u", "p")
	k.Brokers = c.ListenAddrs()
	assertRefusedMechanism(t, &k)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
