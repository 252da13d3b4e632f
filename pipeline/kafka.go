package pipeline

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pgsrc/secret"
)

// Producer sizing: kgo blocks Produce once this much is buffered, which is
// what bounds the producer's memory.
const (
	maxBufferedRecords = 16 << 10
	maxBufferedBytes   = 32 << 20
	maxBatchBytes      = 1 << 20
)

// clientOpts returns the kgo options shared by every Kafka client pgkafka
// opens: the session's, and those of the status and tail commands.
func (k *KafkaConfig) clientOpts(log *slog.Logger) ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(k.Brokers...),
		kgo.ClientID(k.ClientID),
		kgo.WithLogger(kgoLogger{log: log, red: secret.NewRedactor(k.SASL.Password, k.SASL.OAuth.ClientSecret)}),
	}
	if k.TLS.Enabled || k.TLS.CAFile != "" || k.TLS.CertFile != "" {
		tc, err := k.TLS.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	mech, err := k.saslMechanism()
	if err != nil {
		return nil, err
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}

// producerOpts adds the producer's settings to clientOpts.
func (k *KafkaConfig) producerOpts(log *slog.Logger) ([]kgo.Opt, error) {
	opts, err := k.clientOpts(log)
	if err != nil {
		return nil, err
	}
	var codec kgo.CompressionCodec
	switch k.Compression {
	case "none":
		codec = kgo.NoCompression()
	case "gzip":
		codec = kgo.GzipCompression()
	case "snappy":
		codec = kgo.SnappyCompression()
	case "lz4":
		codec = kgo.Lz4Compression()
	case "zstd":
		codec = kgo.ZstdCompression()
	}
	return append(opts,
		kgo.ProducerBatchCompression(codec),
		kgo.ProducerLinger(k.Linger),
		// A batch holds a record of kafka.maxRecordBytes; the buffer two.
		kgo.ProducerBatchMaxBytes(int32(max(maxBatchBytes, k.MaxRecordBytes+batchOverheadBytes))),
		kgo.MaxBufferedRecords(maxBufferedRecords),
		kgo.MaxBufferedBytes(max(maxBufferedBytes, 2*(k.MaxRecordBytes+batchOverheadBytes))),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(keyPartitioner{kgo.StickyKeyPartitioner(nil)}),
	), nil
}

func (t *TLSConfig) config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in by the operator
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.caFile: no PEM certificate in %s", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.certFile/keyFile: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// keyPartitioner hashes keys with Kafka's murmur2 (so Kafka Streams and
// Flink co-partition with us) and spreads null keys round-robin.
type keyPartitioner struct{ keyed kgo.Partitioner }

func (p keyPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	return &topicPartitioner{keyed: p.keyed.ForTopic(topic)}
}

type topicPartitioner struct {
	keyed kgo.TopicPartitioner
	next  int
}

func (p *topicPartitioner) RequiresConsistency(r *kgo.Record) bool { return r.Key != nil }

func (p *topicPartitioner) Partition(r *kgo.Record, n int) int {
	if r.Key != nil {
		return p.keyed.Partition(r, n)
	}
	p.next++
	return p.next % n
}

// createTopics creates the missing topics with kafka.topics' settings.
// Existing topics are left as they are.
func createTopics(ctx context.Context, adm *kadm.Client, cfg TopicsConfig, topics []string, log *slog.Logger) error {
	if len(topics) == 0 {
		return nil
	}
	configs := make(map[string]*string, len(cfg.Config))
	for k, v := range cfg.Config {
		configs[k] = &v
	}
	resp, err := adm.CreateTopics(ctx, cfg.Partitions, cfg.ReplicationFactor, configs, topics...)
	if err != nil {
		return fmt.Errorf("creating topics %v: %w", topics, err)
	}
	var errs []error
	for _, t := range resp.Sorted() {
		switch {
		case t.Err == nil:
			log.Info("topic created", "topic", t.Topic, "partitions", cfg.Partitions)
		case errors.Is(t.Err, kerr.TopicAlreadyExists):
		default:
			errs = append(errs, fmt.Errorf("creating topic %q: %w (%s)", t.Topic, t.Err, t.ErrMessage))
		}
	}
	return errors.Join(errs...)
}

// kgoLogger bridges kgo's logger to slog. kgo knows the SASL password (and
// the client secret): its messages and values go out without them (red).
type kgoLogger struct {
	log *slog.Logger
	red *secret.Redactor
}

func (l kgoLogger) Level() kgo.LogLevel {
	ctx := context.Background()
	switch {
	case l.log.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelDebug
	case l.log.Enabled(ctx, slog.LevelInfo):
		return kgo.LogLevelWarn // kgo's info is chatty: keep it for debug
	case l.log.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	}
	return kgo.LogLevelError
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var lv slog.Level
	switch level {
	case kgo.LogLevelError:
		lv = slog.LevelError
	case kgo.LogLevelWarn:
		lv = slog.LevelWarn
	case kgo.LogLevelInfo:
		lv = slog.LevelInfo
	default:
		lv = slog.LevelDebug
	}
	if !l.red.Empty() {
		msg = l.red.Redact(msg)
		redacted := make([]any, len(keyvals))
		for i, v := range keyvals {
			redacted[i] = l.red.Value(slog.AnyValue(v)).Any()
		}
		keyvals = redacted
	}
	l.log.Log(context.Background(), lv, msg, keyvals...)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
