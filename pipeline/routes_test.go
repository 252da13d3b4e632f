package pipeline_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pgkafka/pgkafka/pipeline"
)

// TestTopicRoutes: two shards of one logical table go to the route's
// topic, keyed by their key and the table they come from (equal ids stay
// two keys), under one schema named after the topic, their source block
// naming each shard; backfilled and streamed alike. With the record
// subject strategy, the subjects are the records' full names.
func TestTopicRoutes(t *testing.T) {
	for _, strategy := range []string{"", "record"} {
		t.Run("subjects="+strategy, func(t *testing.T) {
			e := newEnv(t, "public.orders_1", "public.orders_2")
			e.db.Exec(t, `CREATE TABLE orders_1 (id int PRIMARY KEY, v text); CREATE TABLE orders_2 (id int PRIMARY KEY, v text);
				INSERT INTO orders_1 VALUES (1, 'one-1'); INSERT INTO orders_2 VALUES (1, 'two-1')`)
			e.cfg.Kafka.TopicRoutes = []pipeline.TopicRoute{{Match: `public\.orders_\d+`, Topic: "test.orders"}}
			e.cfg.SchemaRegistry.SubjectNameStrategy = strategy
			e.start(t)
			e.db.Exec(t, `INSERT INTO orders_1 VALUES (2, 'one-2'); INSERT INTO orders_2 VALUES (2, 'two-2')`)
			rs := e.consume(t, []string{"test.orders"}, 30*time.Second, atLeast(4))
			var got []string
			for _, r := range rs {
				table := fmt.Sprint(r.Source["table"])
				if want := "test.public." + table; r.Key["__dbz__physicalTableIdentifier"] != want {
					t.Errorf("record of %s keyed %v, want __dbz__physicalTableIdentifier %q", table, r.Key, want)
				}
				got = append(got, fmt.Sprintf("%s/%s/%v/%v", r.Op, table, r.Key["id"], r.After["v"]))
			}
			sort.Strings(got)
			if want := "[c/orders_1/2/one-2 c/orders_2/2/two-2 r/orders_1/1/one-1 r/orders_2/1/two-1]"; fmt.Sprint(got) != want {
				t.Fatalf("records %v, want %s", got, want)
			}

			cl, err := sr.NewClient(sr.URLs(e.reg.URL()))
			if err != nil {
				t.Fatal(err)
			}
			subjects, err := cl.Subjects(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			subjects = slices.DeleteFunc(subjects, func(s string) bool { return strings.Contains(s, "message") })
			sort.Strings(subjects)
			want := "[test.orders-key test.orders-value]"
			if strategy == "record" {
				want = "[test.orders.Envelope test.orders.Key]"
			}
			if fmt.Sprint(subjects) != want {
				t.Fatalf("subjects %v, want %s", subjects, want)
			}
			for _, s := range subjects {
				versions, err := cl.SubjectVersions(context.Background(), s)
				if err != nil {
					t.Fatal(err)
				}
				if len(versions) != 1 {
					t.Errorf("subject %s has %d versions: the shards' schemas differ", s, len(versions))
				}
			}
		})
	}
}

// TestTopicRouteValidation: a bad route is a configuration error naming
// its key path; routed tables may share the topic, others may not.
func TestTopicRouteValidation(t *testing.T) {
	cfg := pipeline.Config{Name: "x"}
	cfg.Source.Address, cfg.Source.Password = "h:5432", "pw"
	cfg.Kafka.TopicRoutes = []pipeline.TopicRoute{{Match: `public\.(orders`, Topic: "bad topic"}}
	cfg.SetDefaults()
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "kafka.topicRoutes[0].match") || !strings.Contains(err.Error(), "kafka.topicRoutes[0].topic") {
		t.Fatalf("Validate() = %v", err)
	}
	cfg.Kafka.TopicRoutes = []pipeline.TopicRoute{{Match: `public\.orders_\d+`, Topic: "shop.orders"}}
	cfg.Bindings = []pipeline.Binding{
		{Resource: pipeline.Resource{Namespace: "public", Stream: "orders_1", SyncMode: "incremental"}},
		{Resource: pipeline.Resource{Namespace: "public", Stream: "orders_2", SyncMode: "incremental"}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("two routed tables: %v", err)
	}
	cfg.Bindings = append(cfg.Bindings, pipeline.Binding{Resource: pipeline.Resource{Namespace: "public", Stream: "other", SyncMode: "incremental"}, Target: "shop.orders"})
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "bindings[2]") {
		t.Fatalf("a table bound to the route's topic: %v", err)
	}
}
