package offsets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrUnreadable reports an offsets topic whose checkpoint cannot be used.
var ErrUnreadable = errors.New("offsets topic unreadable")

// Record returns c as the record of name in topic. It is produced inside
// the Kafka transaction of the data it covers, after that data.
func (c *Checkpoint) Record(topic, name string) (*kgo.Record, error) {
	v, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding the checkpoint: %w", err)
	}
	return &kgo.Record{Topic: topic, Key: []byte(name), Value: v}, nil
}

// EnsureTopic creates the offsets topic when missing: one partition,
// cleanup.policy=compact. An existing topic must have one partition.
func EnsureTopic(ctx context.Context, adm *kadm.Client, topic string, replicationFactor int16) (created bool, err error) {
	compact := "compact"
	resp, err := adm.CreateTopic(ctx, 1, replicationFactor, map[string]*string{"cleanup.policy": &compact}, topic)
	if err == nil {
		err = resp.Err
	}
	switch {
	case err == nil:
		return true, nil
	case !errors.Is(err, kerr.TopicAlreadyExists):
		return false, fmt.Errorf("creating offsets topic %q: %w", topic, err)
	}
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return false, fmt.Errorf("describing offsets topic %q: %w", topic, err)
	}
	if n := len(md.Topics[topic].Partitions); n != 1 {
		return false, fmt.Errorf("%w: topic %q has %d partitions; it must have one (kafka.offsetsTopic)", ErrUnreadable, topic, n)
	}
	return false, nil
}

// Load reads topic as a read_committed consumer up to its last stable
// offset and returns the latest checkpoint of name, or nil when there is
// none (or its latest record is a tombstone: a reset). opts connect to the
// cluster (no consumer options).
func Load(ctx context.Context, opts []kgo.Opt, topic, name string) (*Checkpoint, error) {
	admCl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	ends, err := kadm.NewClient(admCl).ListCommittedOffsets(ctx, topic)
	admCl.Close()
	if err != nil {
		return nil, fmt.Errorf("listing the end of offsets topic %q: %w", topic, err)
	}
	end, ok := ends.Lookup(topic, 0)
	if !ok || errors.Is(end.Err, kerr.UnknownTopicOrPartition) {
		return nil, nil
	}
	if end.Err != nil {
		return nil, fmt.Errorf("listing the end of offsets topic %q: %w", topic, end.Err)
	}
	if end.Offset <= 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // the last offsets are commit markers
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var latest []byte
	found := false
	for next := int64(0); next < end.Offset; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading offsets topic %q (at offset %d of %d): %w", topic, next, end.Offset, err)
		}
		for _, fe := range fs.Errors() {
			return nil, fmt.Errorf("reading offsets topic %q: %w", topic, fe.Err)
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			next = r.Offset + 1
			if r.Offset >= end.Offset || r.Attrs.IsControl() || string(r.Key) != name {
				continue
			}
			latest, found = r.Value, true
		}
	}
	if !found || latest == nil {
		return nil, nil
	}
	var c Checkpoint
	if err := json.Unmarshal(latest, &c); err != nil {
		return nil, fmt.Errorf("%w: the checkpoint of %q in %q: %v (inspect it with a Kafka consumer; to start over, produce a tombstone for key %q)", ErrUnreadable, name, topic, err, name)
	}
	return &c, nil
}
