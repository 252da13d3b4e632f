package pipeline_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/pipeline"
)

// TestShapesReadByApacheAvro reads the records of the downstream shapes
// with kcat and the Apache Avro reference implementation (python3-avro),
// no code of ours on the read side: two shards routed to one topic (their
// keys carrying the table), their columns hashed and masked, and a table
// keyed by a chosen column (bindings[].key).
func TestShapesReadByApacheAvro(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is needed (make deps installs it):", err)
	}
	python := "/usr/bin/python3"
	e := newEnv(t, "public.s_1", "public.s_2", "public.acct")
	e.db.Exec(t, `CREATE TABLE s_1 (id int PRIMARY KEY, email text, v text); CREATE TABLE s_2 (id int PRIMARY KEY, email text, v text);
		CREATE TABLE acct (id int PRIMARY KEY, account int NOT NULL); ALTER TABLE acct REPLICA IDENTITY FULL`)
	e.cfg.Kafka.TopicRoutes = []pipeline.TopicRoute{{Match: `public\.s_\d`, Topic: "test.shards"}}
	e.cfg.Format.HashSalt = "pepper"
	for i := range 2 {
		e.cfg.Bindings[i].Columns = pipeline.ColumnPolicies{Hash: map[string]string{"email": "sha256"}, Mask: map[string]int{"v": 3}}
	}
	e.cfg.Bindings[2].Key = []string{"account"}
	e.start(t)
	e.db.Exec(t, `INSERT INTO s_1 VALUES (1, 'ann@example.com', 'secret-1'); INSERT INTO s_2 VALUES (1, 'bob@example.com', 'secret-2');
		INSERT INTO acct VALUES (1, 42)`)
	e.consume(t, []string{"test.shards", "test.public.acct"}, 30*time.Second, atLeast(3))

	read := func(topic string) []map[string]map[string]any {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		raw, err := exec.CommandContext(ctx, kcat, "-C", "-b", strings.Join(e.broker.ListenAddrs(), ","), "-t", topic,
			"-o", "beginning", "-e", "-q", "-f", "%K %S\n%k%s").Output()
		if err != nil {
			t.Fatalf("kcat %s: %v", topic, err)
		}
		py := exec.CommandContext(ctx, python, "testdata/avro_decode.py", e.reg.URL())
		py.Stdin = bytes.NewReader(raw)
		var stderr bytes.Buffer
		py.Stderr = &stderr
		out, err := py.Output()
		if err != nil {
			t.Fatalf("python3-avro on %s: %v\n%s", topic, err, stderr.String())
		}
		var recs []map[string]map[string]any
		for d := json.NewDecoder(bytes.NewReader(out)); d.More(); {
			var r map[string]map[string]any
			if err := d.Decode(&r); err != nil {
				t.Fatalf("%v in %s", err, out)
			}
			recs = append(recs, r)
		}
		return recs
	}
	digest := func(s string) string {
		h := sha256.Sum256([]byte("pepper" + s))
		return hex.EncodeToString(h[:])
	}
	var got []string
	for _, r := range read("test.shards") {
		after, _ := r["value"]["after"].(map[string]any)
		got = append(got, fmt.Sprintf("%v|%v|%v|%v", r["key"]["__dbz__physicalTableIdentifier"], r["key"]["id"], after["email"], after["v"]))
	}
	sort.Strings(got)
	want := []string{
		fmt.Sprintf("test.public.s_1|1|%s|***", digest("ann@example.com")),
		fmt.Sprintf("test.public.s_2|1|%s|***", digest("bob@example.com")),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("routed, hashed and masked records as python3-avro reads them:\n%v\nwant\n%v", got, want)
	}
	acct := read("test.public.acct")
	if len(acct) != 1 || fmt.Sprint(acct[0]["key"]) != "map[account:42]" {
		t.Errorf("the records of a table keyed by bindings[].key as python3-avro reads them: %v", acct)
	}
}
