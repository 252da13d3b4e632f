// Command benchstack runs a Kafka broker (kfake, one broker on TCP
// 127.0.0.1) and a schema registry (srfake, over HTTP) in a process of
// their own, for BenchmarkDeployment (cmd/pgkafka): pgkafka and the
// benchmark's clients reach them over the loopback as they would a
// deployment's, and their CPU and memory are not the benchmark's.
//
// It prints one JSON line on stdout once both listen,
//
//	{"brokers":["127.0.0.1:40123"],"registry":"http://127.0.0.1:40124"}
//
// and runs until its stdin closes (the parent ended, even killed) or it
// gets SIGTERM or SIGINT; then it closes both and exits 0.
//
// It is not part of the pgkafka binary.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// addresses is the line printed on stdout.
type addresses struct {
	Brokers  []string `json:"brokers"`
	Registry string   `json:"registry"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchstack:", err)
		os.Exit(1)
	}
}

func run() error {
	broker, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return fmt.Errorf("starting kfake: %w", err)
	}
	defer broker.Close()
	registry := srfake.New()
	defer registry.Close()

	line, err := json.Marshal(addresses{Brokers: broker.ListenAddrs(), Registry: registry.URL()})
	if err != nil {
		return err
	}
	if _, err := fmt.Printf("%s\n", line); err != nil {
		return fmt.Errorf("printing the addresses: %w", err)
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	select {
	case <-sig:
	case <-eof:
	}
	return nil
}
