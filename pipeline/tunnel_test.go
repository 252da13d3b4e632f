package pipeline_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"golang.org/x/crypto/ssh"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
	"github.com/pgkafka/pgkafka/pgsrc/secret"
	"github.com/pgkafka/pgkafka/pgsrc/tunnel"
	"github.com/pgkafka/pgkafka/pipeline"
)

// TestTunnelCaptureSurvivesBastionRestart captures a database that only an
// SSH bastion reaches (PostgreSQL in the bastion's network namespace, on
// its loopback): the backfill and the stream go through the tunnel; the
// bastion is killed mid-capture (every connection through it cut) while a
// writer inserts, and started again; the capture retries, reconnects
// through a new SSH connection and ends with every row exactly once.
func TestTunnelCaptureSurvivesBastionRestart(t *testing.T) {
	b := pgtest.StartBastion(t)
	c := pgtest.Start(t, pgtest.WithBastion(b))
	db := c.NewDatabase(t)
	broker, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	reg := srfake.New()
	t.Cleanup(reg.Close)
	e := &env{db: db, broker: broker, reg: reg}
	e.cfg.Name = "test"
	e.cfg.Source = db.SourceConfig(pgtest.Superuser, c.SuperuserPassword())
	e.cfg.Kafka.Brokers = broker.ListenAddrs()
	e.cfg.SchemaRegistry.URL = reg.URL()
	e.cfg = withBindings(e.cfg, "public.items")
	e.cfg.Source.Advanced.BackfillChunkSize = 50
	db.Exec(t, `CREATE TABLE items (id int PRIMARY KEY, v text);
		INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 500) g`)
	e.start(t)

	// A writer inserts one row at a time, through the tunnel too,
	// reconnecting after the bastion's death.
	src := e.cfg.Source
	ctx, stopWriter := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		id := 1000
		for ctx.Err() == nil {
			func() {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				conn, err := pgsrc.Connect(cctx, &src)
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					return
				}
				defer conn.Close(context.Background())
				for ctx.Err() == nil {
					id++
					if _, err := conn.Exec(ctx, `INSERT INTO items VALUES ($1, $2)`, id, fmt.Sprint("w", id)); err != nil {
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
		}
	}()
	time.Sleep(time.Second)
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	stopWriter()
	wg.Wait()

	want := pgRows(t, db, `SELECT id, v FROM items`, "id")
	if len(want) < 600 {
		t.Fatalf("the writer inserted only %d rows", len(want)-500)
	}
	topic := "test.public.items"
	rs := e.consume(t, []string{topic}, 90*time.Second, func(rs []rec) bool { return len(state(rs, topic)) >= len(want) })
	time.Sleep(2 * time.Second) // room for a duplicate to show
	rs = e.consume(t, []string{topic}, 30*time.Second, atLeast(len(rs)))
	sameRows(t, state(rs, topic), want)
	seen := map[string]int{}
	for _, r := range rs {
		k := r.Op + " " + sortedMap(r.Key)
		if seen[k]++; seen[k] > 1 {
			t.Errorf("record %s twice", k)
		}
	}
	if len(rs) != len(want) {
		t.Errorf("%d records for %d rows (500 backfilled, the rest inserted once each)", len(rs), len(want))
	}
}

// TestTunnelErrorsRetryable: an SSH server out of reach is retried like a
// database out of reach; a tunnel whose configuration is at fault is not.
func TestTunnelErrorsRetryable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	_ = ln.Close()
	_, pemKey, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(pemKey, "")
	if err != nil {
		t.Fatal(err)
	}
	src := pgsrc.Config{Address: "db.internal:5432", Password: "pw"}
	src.SetDefaults()
	src.NetworkTunnel.SSHForwarding = tunnel.Config{SSHEndpoint: "ssh://u@" + closed,
		PrivateKey: secret.String(pem.EncodeToMemory(block)), InsecureIgnoreHostKey: true}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pgsrc.Connect(ctx, &src)
	if err == nil || !pipeline.Retryable(err) {
		t.Errorf("SSH server out of reach: %v; want a retryable error", err)
	}
	src.NetworkTunnel.SSHForwarding.PrivateKey = "garbage"
	_, err = pgsrc.Connect(ctx, &src)
	if err == nil || pipeline.Retryable(err) {
		t.Errorf("a private key that does not parse: %v; want an error not retried", err)
	}
}
