package pipeline

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/schema"
)

// Decoded is a record read back from Kafka, key and value decoded (nil
// for a null key or a tombstone).
type Decoded struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       any
	Value     any
}

// Tail reads topics from their start as a read_committed consumer and hands
// each record, decoded with its writer schema from the registry, to fn,
// until ctx ends (nil) or fn or a fetch fails. It serves the demo and
// operators' spot checks. Neither its errors nor its log lines hold a
// password of cfg.
func Tail(ctx context.Context, cfg *Config, topics []string, log *slog.Logger, fn func(Decoded) error) error {
	red := cfg.Redactor()
	return red.Error(cfg.Kafka.explainAuth(tail(ctx, cfg, topics, slog.New(red.Handler(log.Handler())), fn)))
}

func tail(ctx context.Context, cfg *Config, topics []string, log *slog.Logger, fn func(Decoded) error) error {
	opts, err := cfg.Kafka.clientOpts(log)
	if err != nil {
		return err
	}
	opts = append(opts,
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka consumer: %w", err)
	}
	defer client.Close()
	if cfg.Format.JSON() {
		return errJSONTail
	}
	dec, err := schema.NewDecoder(cfg.SchemaRegistry)
	if err != nil {
		return err
	}
	for {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		for _, fe := range fetches.Errors() {
			return fmt.Errorf("fetching %s[%d]: %w", fe.Topic, fe.Partition, fe.Err)
		}
		for it := fetches.RecordIter(); !it.Done(); {
			r := it.Next()
			d := Decoded{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
			if d.Key, err = dec.Decode(ctx, r.Key); err != nil {
				return fmt.Errorf("key at %s[%d]@%d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			if d.Value, err = dec.Decode(ctx, r.Value); err != nil {
				return fmt.Errorf("value at %s[%d]@%d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			if err := fn(d); err != nil {
				return err
			}
		}
	}
}
