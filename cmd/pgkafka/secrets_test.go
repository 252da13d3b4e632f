package main

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/pgkafka/pgkafka/pipeline"
)

// registryPassword is the password of schemaRegistry.url in these tests,
// "p@ss" written p%40ss in the URL.
const registryPassword = "p@ss-Secret9"

// TestRegistryPasswordHidden: with user:password in schemaRegistry.url and
// the registry down, `pgkafka run` fails naming the registry's host, and
// nothing it prints holds the password; `check`, `discover` and `status`
// do not contact the registry and print no password either.
func TestRegistryPasswordHidden(t *testing.T) {
	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY, v text); INSERT INTO orders VALUES (1, 'a')`)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	down := "http://alice:" + url.QueryEscape(registryPassword) + "@" + host
	path := writeConfig(t, strings.Replace(readFile(t, s.config(t, "postgres", cluster.SuperuserPassword(), ordersBinding)), s.reg.URL(), down, 1))

	for _, cmd := range []string{"run", "check", "discover", "status"} {
		t.Run(cmd, func(t *testing.T) {
			code, out := pgkafka(t, cmd, "-c", path)
			t.Logf("exit %d:\n%s", code, out)
			for _, pw := range []string{registryPassword, url.QueryEscape(registryPassword), url.PathEscape(registryPassword)} {
				if strings.Contains(out, pw) {
					t.Errorf("the registry password %q is printed", pw)
				}
			}
			switch {
			case cmd == "run" && (code != 1 || !strings.Contains(out, host)):
				t.Errorf("run: exit %d, want 1 and an error naming the registry at %s", code, host)
			case cmd != "run" && code != 0:
				t.Errorf("%s: exit %d, want 0", cmd, code)
			}
		})
	}
}

// TestLogRedactsSecrets: the logger of every subcommand, once the
// configuration is loaded, removes its passwords from every line, the
// final error's included, whatever wrote them.
func TestLogRedactsSecrets(t *testing.T) {
	var cfg pipeline.Config
	cfg.Source.Password = "source-Secret1"
	cfg.Kafka.SASL.Password = "sasl-Secret2"
	cfg.SchemaRegistry.URL = "https://alice:" + url.QueryEscape(registryPassword) + "@registry:8081"
	cfg.SchemaRegistry.Password = "basic-Secret3"
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		log, err := newLogger(&buf, false, format, "info")
		if err != nil {
			t.Fatal(err)
		}
		log = redactSecrets(log, &cfg)
		all := fmt.Sprintf("source-Secret1 sasl-Secret2 basic-Secret3 %s %s", registryPassword, cfg.SchemaRegistry.URL)
		log.With("stage", "x").Warn("capture failed; retrying from the last checkpoint", "err", fmt.Errorf("session: %s", all))
		if code := exit(log, fmt.Errorf("unable to GET %q: %s", cfg.SchemaRegistry.URL+"/subjects", all)); code != 1 {
			t.Errorf("exit = %d", code)
		}
		out := buf.String()
		for _, pw := range []string{"source-Secret1", "sasl-Secret2", "basic-Secret3", registryPassword, url.QueryEscape(registryPassword)} {
			if strings.Contains(out, pw) {
				t.Errorf("%s: %q is logged:\n%s", format, pw, out)
			}
		}
		if !strings.Contains(out, "@registry:8081/subjects") || !strings.Contains(out, "capture failed; retrying") {
			t.Errorf("%s: the lines lost what is not secret:\n%s", format, out)
		}
	}
}
