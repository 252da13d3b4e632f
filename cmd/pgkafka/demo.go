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

	"github.com/pgkafka/pgkafka/pgsrc"
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
	full, err := fullIdentity(ctx, &src)
	if err != nil {
		return err
	}
	p := &demoPrinter{out: stdout, full: full, header: demoHeader(src.Address, cfg.Kafka.Brokers, cfg.SchemaRegistry.URL)}
	if _, err := io.WriteString(stdout, p.header); err != nil {
		return err
	}

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
		return pipeline.Tail(gctx, &cfg, topics, log, p.print)
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	fmt.Fprintln(os.Stderr, "pgkafka demo: stopped and cleaned up")
	return err
}

// demoHeaderEvery is how many records the demo prints between two
// prints of its header, so that the addresses and the kcat command stay
// on the screen.
const demoHeaderEvery = 30

// demoHeader says where everything is and how to read the topics with a
// client pgkafka did not write.
func demoHeader(pg string, brokers []string, registry string) string {
	return fmt.Sprintf("pgkafka demo: PostgreSQL at %s (database demo), Kafka at %s, schema registry at %s\n"+
		"  streaming the shop's customers and orders under a steady write load; Ctrl-C stops\n"+
		"  read them yourself: kcat -b %s -C -t demo.public.orders -o beginning -X isolation.level=read_committed -s value=avro -r %s\n"+
		"  (-s and -r need a kcat built with Avro, as Confluent's; Debian's is not: drop them to see the raw records)\n",
		pg, strings.Join(brokers, ","), registry, brokers[0], registry)
}

// fullIdentity reports, by table name, whether the demo's tables have
// REPLICA IDENTITY FULL: only then does a delete carry the old row.
func fullIdentity(ctx context.Context, src *pgsrc.Config) (map[string]bool, error) {
	conn, err := pgsrc.Connect(ctx, src)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT relname, relreplident = 'f' FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')`)
	if err != nil {
		return nil, fmt.Errorf("demo: reading the tables' replica identity: %w", err)
	}
	full := map[string]bool{}
	for rows.Next() {
		var name string
		var f bool
		if err := rows.Scan(&name, &f); err != nil {
			return nil, err
		}
		full[name] = f
	}
	return full, rows.Err()
}

// demoPrinter prints decoded records, one a line, and the header again
// every demoHeaderEvery records.
type demoPrinter struct {
	out     io.Writer
	full    map[string]bool
	header  string
	printed int
}

func (p *demoPrinter) print(d pipeline.Decoded) error {
	if p.printed > 0 && p.printed%demoHeaderEvery == 0 {
		if _, err := io.WriteString(p.out, p.header); err != nil {
			return err
		}
	}
	p.printed++
	_, err := fmt.Fprintln(p.out, formatRecord(d, p.full))
	return err
}

// formatRecord renders a decoded Debezium record on one line: topic, op,
// key and the row. A delete shows its key, and its old row only when the
// table has REPLICA IDENTITY FULL: otherwise PostgreSQL sends only the
// key, and the other fields of "before" hold no data.
func formatRecord(d pipeline.Decoded, full map[string]bool) string {
	table := d.Topic[strings.LastIndexByte(d.Topic, '.')+1:]
	if d.Value == nil {
		return fmt.Sprintf("%-9s tombstone key=%s (compaction removes the key)", table, compact(d.Key))
	}
	v, _ := d.Value.(map[string]any)
	op, _ := unwrapUnion(v["op"]).(string)
	lsn := ""
	if src, ok := unwrapUnion(v["source"]).(map[string]any); ok {
		lsn = fmt.Sprint(unwrapUnion(src["lsn"]))
	}
	if op == "d" {
		if !full[table] {
			return fmt.Sprintf("%-9s op=d lsn=%s key=%s deleted (the old row is sent only with REPLICA IDENTITY FULL)", table, lsn, compact(d.Key))
		}
		return fmt.Sprintf("%-9s op=d lsn=%s key=%s deleted row=%s", table, lsn, compact(d.Key), compact(unwrapUnion(v["before"])))
	}
	return fmt.Sprintf("%-9s op=%s lsn=%s key=%s row=%s", table, op, lsn, compact(d.Key), compact(unwrapUnion(v["after"])))
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
