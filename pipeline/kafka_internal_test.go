package pipeline

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKgoLoggerHidesSASLPassword: the logger every Kafka client of pgkafka
// gets (clientOpts) removes kafka.sasl.password from kgo's messages and
// values, should kgo or a broker's answer ever hold it.
func TestKgoLoggerHidesSASLPassword(t *testing.T) {
	const pw = "sasl-Secret5"
	var buf strings.Builder
	k := KafkaConfig{Brokers: []string{"127.0.0.1:1"}, ClientID: "t",
		SASL: SASLConfig{Mechanism: "scram-sha-256", Username: "alice", Password: pw}}
	opts, err := k.clientOpts(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	log, ok := cl.OptValue(kgo.WithLogger).(kgo.Logger)
	if !ok {
		t.Fatalf("the client has no logger of ours: %T", cl.OptValue(kgo.WithLogger))
	}
	log.Log(kgo.LogLevelError, "authenticating alice:"+pw, "err", errors.New("broker said: bad password "+pw), "broker", "b1:"+pw, "n", 3)
	out := buf.String()
	if strings.Contains(out, pw) {
		t.Errorf("the SASL password is logged: %s", out)
	}
	for _, want := range []string{`msg="authenticating alice:[redacted]"`, `err="broker said: bad password [redacted]"`, "broker=b1:[redacted]", "n=3"} {
		if !strings.Contains(out, want) {
			t.Errorf("log %s lacks %s", out, want)
		}
	}
}
