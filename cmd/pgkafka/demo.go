package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"golang.org/x/sync/errgroup"

	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
	"github.com/pgkafka/pgkafka/pipeline"
)

// Demo addresses: the usual ports, or free ones when those are taken.
const (
	demoKafkaPort    = 9092
	demoRegistryAddr = "127.0.0.1:8081"
	demoWriteEvery   = 300 * time.Millisecond
)

// runDemo starts a throwaway PostgreSQL (initdb, as the postgres user when
// root), an in-process Kafka broker and schema registry, the sample shop
// schema under a steady write load, and the capture; it prints each record
// decoded as it arrives, until SIGINT/SIGTERM, then cleans everything up.
func runDemo(ctx context.Context, stdout io.Writer, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	log.Info("starting a throwaway PostgreSQL cluster")
	cluster, err := pgtest.New()
	if err != nil {
		return fmt.Errorf("demo PostgreSQL: %w", err)
	}
	defer func() {
		if err := cluster.Close(); err != nil {
			log.Warn("removing the demo cluster", "err", err)
		}
	}()
	src, err := cluster.SetupDemo(ctx)
	if err != nil {
		return err
	}

	broker, err := kfake.NewCluster(kfake.Ports(demoKafkaPort), kfake.NumBrokers(1))
	if err != nil {
		log.Warn("port 9092 is taken: the demo broker listens on a free port", "err", err)
		if broker, err = kfake.NewCluster(kfake.NumBrokers(1)); err != nil {
			return fmt.Errorf("demo Kafka broker: %w", err)
		}
	}
	defer broker.Close()

	ln, err := net.Listen("tcp", demoRegistryAddr)
	if err != nil {
		log.Warn("port 8081 is taken: the demo schema registry listens on a free port", "err", err)
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return fmt.Errorf("demo schema registry: %w", err)
		}
	}
	registry := &http.Server{Handler: srfake.NewRegistry().Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = registry.Serve(ln) }() // ends with Shutdown below
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := registry.Shutdown(sctx); err != nil {
			log.Warn("stopping the demo schema registry", "err", err)
		}
	}()

	cfg := pipeline.Config{Name: "demo", Source: src}
	cfg.Kafka.Brokers = broker.ListenAddrs()
	cfg.SchemaRegistry.URL = "http://" + ln.Addr().String()
	cfg.SetDefaults()
	runner, err := pipeline.NewRunner(cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pgkafka demo: PostgreSQL at %s (database demo), Kafka at %s, schema registry at %s\n",
		src.Address, strings.Join(cfg.Kafka.Brokers, ","), cfg.SchemaRegistry.URL)
	fmt.Fprintln(stdout, "Streaming the shop's customers and orders under a steady write load; Ctrl-C stops.")

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return runner.Run(context.WithoutCancel(gctx)) })
	g.Go(func() error {
		<-gctx.Done()
		runner.Stop()
		return nil
	})
	g.Go(func() error {
		select {
		case <-runner.Ready():
		case <-gctx.Done():
			return nil
		}
		return pgtest.RunWorkload(gctx, &src, demoWriteEvery)
	})
	g.Go(func() error {
		select {
		case <-runner.Ready():
		case <-gctx.Done():
			return nil
		}
		topics := []string{"demo.public.customers", "demo.public.orders"}
		return pipeline.Tail(gctx, &cfg, topics, log, func(d pipeline.Decoded) error {
			_, err := fmt.Fprintln(stdout, formatRecord(d))
			return err
		})
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	fmt.Fprintln(os.Stderr, "pgkafka demo: stopped and cleaned up")
	return err
}

// formatRecord renders a decoded Debezium record on one line:
// topic, op, key and the row (after, or before for a delete).
func formatRecord(d pipeline.Decoded) string {
	table := d.Topic[strings.LastIndexByte(d.Topic, '.')+1:]
	if d.Value == nil {
		return fmt.Sprintf("%-9s tombstone key=%s", table, compact(d.Key))
	}
	v, _ := d.Value.(map[string]any)
	op, _ := unwrapUnion(v["op"]).(string)
	row := unwrapUnion(v["after"])
	if op == "d" {
		row = unwrapUnion(v["before"])
	}
	lsn := ""
	if src, ok := unwrapUnion(v["source"]).(map[string]any); ok {
		lsn = fmt.Sprint(unwrapUnion(src["lsn"]))
	}
	return fmt.Sprintf("%-9s op=%s lsn=%s key=%s row=%s", table, op, lsn, compact(d.Key), compact(row))
}

// unwrapUnion turns hamba/avro's {"type name": value} union form into value.
func unwrapUnion(v any) any {
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for k, inner := range m {
			if k == "string" || k == "long" || k == "int" || k == "bytes" || k == "double" || k == "float" || k == "boolean" || strings.Contains(k, ".") {
				return inner
			}
		}
	}
	return v
}

func mustRat(s string) *big.Rat {
	r, _ := new(big.Rat).SetString(s)
	return r
}

func compact(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ":" + compact(unwrapUnion(t[k]))
		}
		return "{" + strings.Join(parts, " ") + "}"
	case *big.Rat:
		for n := 0; n < 18; n++ {
			if f := t.FloatString(n); new(big.Rat).SetFrac(t.Num(), t.Denom()).Cmp(mustRat(f)) == 0 {
				return f
			}
		}
		return t.FloatString(18)
	case time.Time:
		return t.UTC().Format(time.RFC3339Nano)
	case []byte:
		return fmt.Sprintf("0x%x", t)
	default:
		b, err := json.Marshal(t)
		if err != nil {
			return fmt.Sprint(t)
		}
		return string(b)
	}
}
