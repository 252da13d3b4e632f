package pipeline_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pgsrc/secret"
	"github.com/pgkafka/pgkafka/pipeline"
)

const columnsSalt = "pepper-0f1e"

func saltedHex(alg, text string) string {
	if alg == "sha512" {
		s := sha512.Sum512([]byte(columnsSalt + text))
		return hex.EncodeToString(s[:])
	}
	s := sha256.Sum256([]byte(columnsSalt + text))
	return hex.EncodeToString(s[:])
}

// TestColumnPolicies: bindings[].columns excludes, hashes, masks and
// truncates columns in backfilled and streamed records, in before images
// and in unchanged TOASTed values once filled; the value schema follows
// (no excluded field, hashed and masked fields strings); none of the
// original values is anywhere in the topic's bytes.
func TestColumnPolicies(t *testing.T) {
	e := newEnv(t, "public.people")
	bigNotes := strings.Repeat("NOTESPII-", 400) // 3.6 KB, stored out of line
	e.db.Exec(t, `CREATE TABLE people (id int PRIMARY KEY, email text, age int NOT NULL, notes text,
			bio varchar(100), secret text, plain text);
		ALTER TABLE people ALTER notes SET STORAGE EXTERNAL;
		INSERT INTO people VALUES (1, 'alice-PII@example.com', 42, '`+bigNotes+`', 'ééééé-TRUNCPII', 'SECRETPII-1', 'p1'),
			(3, NULL, 7, NULL, NULL, NULL, 'p3')`)
	e.cfg.Format.HashSalt = columnsSalt
	e.cfg.Bindings[0].Columns = pipeline.ColumnPolicies{
		Exclude:  []string{"secret"},
		Hash:     map[string]string{"email": "sha256", "age": "sha512"},
		Mask:     map[string]int{"notes": 5},
		Truncate: map[string]int{"bio": 5},
	}

	// At start, against the catalog: an unknown column, a key column.
	for _, tc := range []struct {
		cols pipeline.ColumnPolicies
		want []string
	}{
		{pipeline.ColumnPolicies{Mask: map[string]int{"nope": 3}}, []string{"bindings[0].columns.mask.nope", "public.people", `"nope"`}},
		{pipeline.ColumnPolicies{Exclude: []string{"id"}}, []string{"bindings[0].columns.exclude[0]", `"id"`, "key"}},
		{pipeline.ColumnPolicies{Truncate: map[string]int{"age": 3}}, []string{"bindings[0].columns.truncate.age", "int4"}},
	} {
		cfg := e.cfg
		cfg.Bindings = append([]pipeline.Binding(nil), e.cfg.Bindings...)
		cfg.Bindings[0].Columns = tc.cols
		cfg.SetDefaults()
		r, err := pipeline.NewRunner(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = r.Run(ctx)
		cancel()
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Fatalf("policies %+v: error %v, want it to name %s", tc.cols, err, w)
			}
		}
	}

	e.start(t)
	e.db.Exec(t, `INSERT INTO people VALUES (2, 'bob-PII@example.com', 33, 'short NOTE2PII', 'TRUNC2PII', 'SECRETPII-2', 'p2')`)
	// Leaves the TOASTed notes unchanged: pgoutput does not send it.
	e.db.Exec(t, `UPDATE people SET plain = 'p1b' WHERE id = 1`)
	e.db.Exec(t, `ALTER TABLE people REPLICA IDENTITY FULL; DELETE FROM people WHERE id = 2;
		INSERT INTO people VALUES (9, 'last-PII@example.com', 1, 'x', 'y', 'SECRETPII-9', 'last')`)
	topic := "test.public.people"
	rs := e.consume(t, []string{topic}, 30*time.Second, func(rs []rec) bool {
		return len(rs) > 0 && rs[len(rs)-1].After != nil && rs[len(rs)-1].After["plain"] == "last"
	})
	var ops []string
	for _, r := range rs {
		op := r.Op
		if r.Tombstone {
			op = "tombstone"
		}
		ops = append(ops, op)
	}
	if got, want := strings.Join(ops, " "), "r r c u d tombstone c"; got != want {
		t.Fatalf("records %s, want %s:\n%s", got, want, dump(rs))
	}
	check := func(what string, img map[string]any, want map[string]any) {
		t.Helper()
		if _, ok := img["secret"]; ok {
			t.Errorf("%s: excluded column secret present: %v", what, img)
		}
		for k, v := range want {
			if fmt.Sprint(img[k]) != fmt.Sprint(v) {
				t.Errorf("%s: %s = %#v, want %#v", what, k, img[k], v)
			}
		}
	}
	alice := map[string]any{"id": 1, "email": saltedHex("sha256", "alice-PII@example.com"), "age": saltedHex("sha512", "42"),
		"notes": "*****", "bio": "ééééé", "plain": "p1"}
	check("backfilled row 1", rs[0].After, alice)
	check("backfilled row 3 (nulls)", rs[1].After, map[string]any{"email": nil, "notes": nil, "bio": nil, "age": saltedHex("sha512", "7")})
	bob := map[string]any{"id": 2, "email": saltedHex("sha256", "bob-PII@example.com"), "age": saltedHex("sha512", "33"),
		"notes": "*****", "bio": "TRUNC", "plain": "p2"}
	check("insert", rs[2].After, bob)
	alice["plain"] = "p1b"
	check("update with the TOASTed column unchanged", rs[3].After, alice)
	check("delete's before image", rs[4].Before, bob)
	if len(rs[0].After) != 6 {
		t.Errorf("after image %v: want 6 fields, secret excluded", rs[0].After)
	}

	// The topic's bytes hold none of the original values.
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var raw [][]byte
	for len(raw) < len(rs) && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { raw = append(raw, r.Key, r.Value) })
	}
	if len(raw) < len(rs) {
		t.Fatalf("read %d raw records, want %d", len(raw)/2, len(rs))
	}
	all := bytes.Join(raw, nil)
	for _, pii := range []string{"PII@example.com", "alice-PII", "bob-PII", "NOTESPII", "NOTE2PII", "TRUNCPII", "TRUNC2PII", "SECRETPII"} {
		if bytes.Contains(all, []byte(pii)) {
			t.Errorf("topic bytes hold %q", pii)
		}
	}
	if !bytes.Contains(all, []byte(saltedHex("sha256", "alice-PII@example.com"))) {
		t.Error("topic bytes lack the hashed email: the scan reads nothing")
	}
}

// TestColumnsConfig: bindings[].columns is validated with key paths, and
// format.hashSalt is a secret that errors and logs never hold.
func TestColumnsConfig(t *testing.T) {
	base := func() pipeline.Config {
		var c pipeline.Config
		c.Name = "shop"
		c.Source.Address = "localhost:5432"
		c.Source.Password = "pw"
		c.Kafka.Brokers = []string{"localhost:9092"}
		c.Bindings = []pipeline.Binding{{Resource: pipeline.Resource{Namespace: "public", Stream: "people"}}}
		return c
	}
	for _, tc := range []struct {
		name string
		cols pipeline.ColumnPolicies
		key  []string
		salt string
		want []string // each a problem Validate reports; none: valid
	}{
		{"valid", pipeline.ColumnPolicies{Exclude: []string{"a"}, Hash: map[string]string{"b": "sha256", "c": "sha512"},
			Mask: map[string]int{"d": 4}, Truncate: map[string]int{"e": 0}}, nil, "salt", nil},
		{"unknown algorithm", pipeline.ColumnPolicies{Hash: map[string]string{"email": "md4"}}, nil, "salt",
			[]string{`bindings[0].columns.hash.email: unknown algorithm "md4": use sha256 or sha512`}},
		{"no salt", pipeline.ColumnPolicies{Hash: map[string]string{"email": "sha256"}}, nil, "",
			[]string{"format.hashSalt: required by bindings[0].columns.hash.email"}},
		{"mask 0", pipeline.ColumnPolicies{Mask: map[string]int{"d": 0}}, nil, "", []string{"bindings[0].columns.mask.d: 0"}},
		{"negative truncate", pipeline.ColumnPolicies{Truncate: map[string]int{"e": -1}}, nil, "", []string{"bindings[0].columns.truncate.e: -1"}},
		{"empty exclude", pipeline.ColumnPolicies{Exclude: []string{""}}, nil, "", []string{"bindings[0].columns.exclude[0]: empty"}},
		{"two policies", pipeline.ColumnPolicies{Exclude: []string{"a"}, Mask: map[string]int{"a": 3}}, nil, "",
			[]string{`bindings[0].columns.mask.a: column "a" already has a policy (bindings[0].columns.exclude[0])`}},
		{"binding key", pipeline.ColumnPolicies{Mask: map[string]int{"acct": 3}}, []string{"acct"}, "",
			[]string{`bindings[0].columns.mask.acct: column "acct" is in the binding's key (bindings[0].key[0])`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			c.Bindings[0].Columns = tc.cols
			c.Bindings[0].Key = tc.key
			c.Format.HashSalt = secret.String(tc.salt)
			c.SetDefaults()
			err := c.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %v\nwant a problem %q", err, w)
				}
			}
		})
	}
	c := base()
	c.Format.HashSalt = "pepper-xyzzy"
	if got := c.Redactor().Redact("salt is pepper-xyzzy"); strings.Contains(got, "xyzzy") {
		t.Errorf("format.hashSalt not redacted: %s", got)
	}
}
