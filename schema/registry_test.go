package schema

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pgkafka/pgkafka/pgsrc/secret"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

func TestRegister(t *testing.T) {
	fake := srfake.New()
	t.Cleanup(fake.Close)
	var posts atomic.Int32
	fake.Intercept(func(_ http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/versions") {
			posts.Add(1)
		}
		return false
	})
	reg, err := NewRegistry(RegistryConfig{URL: fake.URL()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	keyed := mustCodec(t, testTable(orderColumns(), []int{0}), EnvelopeDebezium)
	if _, err := reg.Register(ctx, keyed); err != nil {
		t.Fatal(err)
	}
	keySS, ok := fake.GetSchema("shop.public.orders-key", 1)
	if !ok || keySS.Schema.Schema != keyed.KeySchema() || keySS.Type != sr.TypeAvro {
		t.Fatalf("key subject: %v %+v", ok, keySS)
	}
	valSS, ok := fake.GetSchema("shop.public.orders-value", 1)
	if !ok || valSS.Schema.Schema != keyed.ValueSchema() {
		t.Fatalf("value subject: %v %+v", ok, valSS)
	}
	b, err := keyed.AppendKey(nil, datums("1", "eu", "", "1.00"))
	if err != nil {
		t.Fatal(err)
	}
	unframe(t, b, keySS.ID)
	b, err = keyed.AppendValue(nil, &Event{Op: OpCreate, After: datums("1", "eu", "", "1.00"), TxID: -1, LSN: -1})
	if err != nil {
		t.Fatal(err)
	}
	unframe(t, b, valSS.ID)
	if keySS.ID == valSS.ID {
		t.Errorf("key and value share id %d", keySS.ID)
	}
	if n := posts.Load(); n != 2 {
		t.Errorf("%d registrations, want 2", n)
	}

	// The same schemas again, in a new codec: served from the cache.
	again := mustCodec(t, testTable(orderColumns(), []int{0}), EnvelopeDebezium)
	if _, err := reg.Register(ctx, again); err != nil {
		t.Fatal(err)
	}
	if n := posts.Load(); n != 2 {
		t.Errorf("re-registering cost %d requests", n-2)
	}
	if again.keyHdr != keyed.keyHdr || again.valueHdr != keyed.valueHdr {
		t.Error("cached ids differ")
	}

	// A new column: a new value version (and the same key id).
	cols := append(orderColumns(), Column{Name: "added", Type: typ("text"), Nullable: true})
	changed := mustCodec(t, testTable(cols, []int{0}), EnvelopeDebezium)
	if _, err := reg.Register(ctx, changed); err != nil {
		t.Fatal(err)
	}
	if v2, ok := fake.GetSchema("shop.public.orders-value", 2); !ok || v2.ID == valSS.ID {
		t.Errorf("value version 2: %v %+v", ok, v2)
	}
	if changed.keyHdr != keyed.keyHdr {
		t.Error("unchanged key got a new id")
	}

	// Keyless: only the value subject.
	tbl := testTable(orderColumns(), nil)
	tbl.Topic = "shop.public.log"
	keyless := mustCodec(t, tbl, EnvelopeFlat)
	if _, err := reg.Register(ctx, keyless); err != nil {
		t.Fatal(err)
	}
	if fake.SubjectExists("shop.public.log-key") || !fake.SubjectExists("shop.public.log-value") {
		t.Error("keyless table: wrong subjects")
	}
}

func TestRegisterErrors(t *testing.T) {
	fake := srfake.New(srfake.WithAuth("Basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))))
	t.Cleanup(fake.Close)
	ctx := context.Background()
	c := mustCodec(t, testTable(orderColumns(), []int{0}), EnvelopeDebezium)

	reg, err := NewRegistry(RegistryConfig{URL: fake.URL(), Username: "alice", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Register(ctx, c); err != nil {
		t.Fatalf("with credentials: %v", err)
	}

	bad, err := NewRegistry(RegistryConfig{URL: fake.URL(), Username: "alice", Password: "wrong-pw"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Register(ctx, c)
	if err == nil {
		t.Fatal("bad password accepted")
	}
	for _, want := range []string{"shop.public.orders-key", fake.URL()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	t.Log(err)
	if strings.Contains(err.Error(), "wrong-pw") {
		t.Errorf("error %q leaks the password", err)
	}
}

func TestRegistryConfig(t *testing.T) {
	var c RegistryConfig
	c.SetDefaults()
	if c.URL != DefaultRegistryURL || c.Validate() != nil {
		t.Errorf("defaults: %+v %v", c, c.Validate())
	}
	tests := []struct {
		cfg  RegistryConfig
		want []string
	}{
		{RegistryConfig{URL: "ftp://x"}, []string{"schemaRegistry.url: "}},
		{RegistryConfig{URL: "http://"}, []string{"schemaRegistry.url: ", "no host"}},
		{RegistryConfig{URL: "::bad"}, []string{"schemaRegistry.url: "}},
		{RegistryConfig{URL: "http://bob:hunter2@h:8081", Password: "x"}, []string{"schemaRegistry.username: required"}},
		{RegistryConfig{URL: "ftp://bob:hunter2@h", Password: "x"}, []string{"schemaRegistry.url: ", "schemaRegistry.username: "}},
	}
	for _, tt := range tests {
		t.Run(tt.cfg.URL, func(t *testing.T) {
			err := tt.cfg.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("%q leaks a password", err)
			}
		})
	}
	if _, err := NewRegistry(RegistryConfig{URL: "ftp://x"}); err == nil {
		t.Error("NewRegistry accepted ftp://")
	}

	var f FormatConfig
	f.SetDefaults()
	if env, err := f.ParsedEnvelope(); f.Validate() != nil || err != nil || env != EnvelopeDebezium {
		t.Errorf("format defaults: %+v", f)
	}
	f.Envelope = "avro"
	if err := f.Validate(); err == nil || !strings.HasPrefix(err.Error(), "format.envelope: ") {
		t.Errorf("format.envelope avro: %v", err)
	}
}

func TestSecret(t *testing.T) {
	s := secret.String("hunter2")
	var buf strings.Builder
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "password", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %q %#v", s, s, s, s), fmt.Sprintf("%+v", RegistryConfig{Password: s}), fmt.Sprintf("%#v", RegistryConfig{Password: s}), buf.String()} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("secret leaked: %s", out)
		}
	}
	if secret.String("").String() != "" {
		t.Error("empty secret prints something")
	}
}

func TestCheckBackward(t *testing.T) {
	base := mustCodec(t, testTable(orderColumns(), []int{0}), EnvelopeDebezium)
	tests := []struct {
		name   string
		add    Column
		wantOK bool
	}{
		{"nullable column", Column{Name: "added", Type: typ("text"), Nullable: true}, true},
		{"not null column", Column{Name: "added", Type: typ("text")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := mustCodec(t, testTable(append(orderColumns(), tt.add), []int{0}), EnvelopeDebezium)
			err := CheckBackward(base.ValueSchema(), next.ValueSchema())
			if (err == nil) != tt.wantOK {
				t.Errorf("CheckBackward: %v, want ok %v", err, tt.wantOK)
			}
			if err := CheckBackward(base.KeySchema(), next.KeySchema()); err != nil {
				t.Errorf("same key: %v", err)
			}
		})
	}
	if err := CheckBackward("{", base.ValueSchema()); err == nil {
		t.Error("bad JSON accepted")
	}
}
