package pipeline_test

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pipeline"
)

// TestJSONFlatRoutedNoSchemas: the flat envelope in JSON without schemas,
// two shards routed to one topic of 3 partitions: keys are the bare JSON
// of the key columns plus __dbz__physicalTableIdentifier, partitioned by
// murmur2 of those bytes; values the bare flat record; deletes followed by
// tombstones. python3 -m json.tool reads every key and value.
func TestJSONFlatRoutedNoSchemas(t *testing.T) {
	e := newEnv(t, "public.orders_1", "public.orders_2")
	off := false
	e.cfg.Format.Encoding, e.cfg.Format.JSONSchemas, e.cfg.Format.Envelope = "json", &off, "flat"
	e.cfg.Kafka.Topics.Partitions = 3
	e.cfg.Kafka.TopicRoutes = []pipeline.TopicRoute{{Match: `public\.orders_\d+`, Topic: "test.orders"}}
	e.db.Exec(t, `CREATE TABLE orders_1 (id int PRIMARY KEY, v text); CREATE TABLE orders_2 (id int PRIMARY KEY, v text)`)
	e.start(t)
	for i := range 10 {
		e.db.Exec(t, fmt.Sprintf(`INSERT INTO orders_1 VALUES (%d, 'a'); INSERT INTO orders_2 VALUES (%d, 'b')`, i, i))
	}
	e.db.Exec(t, `DELETE FROM orders_2 WHERE id = 3`)
	rs := e.consume(t, []string{"test.orders"}, 30*time.Second, atLeast(22))
	part := kgo.StickyKeyPartitioner(nil).ForTopic("test.orders")
	var deletes, tombstones int
	for _, r := range rs {
		if want := int32(part.Partition(&kgo.Record{Key: r.RawKey}, 3)); r.Partition != want {
			t.Errorf("key %s in partition %d, murmur2 says %d", r.RawKey, r.Partition, want)
		}
		table := fmt.Sprint(r.Key["__dbz__physicalTableIdentifier"])
		if want := fmt.Sprintf(`{"id":%v,"__dbz__physicalTableIdentifier":"%s"}`, r.Key["id"], table); string(r.RawKey) != want || !strings.HasPrefix(table, "test.public.orders_") {
			t.Errorf("key %s, want %s", r.RawKey, want)
		}
		switch {
		case r.Tombstone:
			tombstones++
		case r.Value["__deleted"] == "true":
			deletes++
			if r.Op != "d" || table != "test.public.orders_2" || fmt.Sprint(r.Value["id"]) != "3" {
				t.Errorf("delete %v key %s", r.Value, r.RawKey)
			}
		default:
			if _, ok := r.Value["schema"]; ok || r.Op != "c" || r.Value["__lsn"] == nil || len(r.Value) != 5 {
				t.Errorf("flat value %v", r.Value)
			}
		}
	}
	if deletes != 1 || tombstones != 1 || len(rs) != 22 {
		t.Errorf("%d records, %d deletes, %d tombstones; want 22, 1, 1:\n%s", len(rs), deletes, tombstones, dump(rs))
	}
	var lines bytes.Buffer
	for _, r := range rs {
		lines.Write(r.RawKey)
		lines.WriteByte('\n')
	}
	tool := exec.Command("python3", "-m", "json.tool", "--json-lines")
	tool.Stdin = &lines
	if out, err := tool.CombinedOutput(); err != nil {
		t.Errorf("python3 -m json.tool on the keys: %v\n%s", err, out)
	}
}
