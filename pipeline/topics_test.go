package pipeline_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/pipeline"
)

// TestTopicClashAtRunTime: without bindings, the tables "t x" and t_x
// (of the publication, or readable when there is none) go to one default
// topic. The session refuses them before it touches Kafka, with an error
// naming both tables and the topic, which a retry would not mend.
func TestTopicClashAtRunTime(t *testing.T) {
	for _, tc := range []struct{ name, publication string }{
		{"publication tables", `CREATE PUBLICATION flow_publication FOR TABLE "t x", t_x`},
		{"readable tables", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.db.Exec(t, `CREATE TABLE "t x" (id int PRIMARY KEY); CREATE TABLE t_x (id int PRIMARY KEY)`)
			if tc.publication != "" {
				e.db.Exec(t, tc.publication)
			}
			cfg := e.cfg
			cfg.SetDefaults()
			r, err := pipeline.NewRunner(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = r.Run(ctx)
			var clash *pipeline.TopicClashError
			if !errors.As(err, &clash) {
				t.Fatalf("Run = %v, want a *TopicClashError", err)
			}
			for _, want := range []string{`"public.t x"`, `"public.t_x"`, `topic "test.public.t_x"`, "set bindings[].target of one of them"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the error lacks %q: %v", want, err)
				}
			}
			if pipeline.Retryable(err) {
				t.Errorf("Retryable(%v) = true", err)
			}
			cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			topics, err := kadm.NewClient(cl).ListTopics(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if names := topics.Names(); len(names) > 0 {
				t.Errorf("topics created before the clash was found: %v", names)
			}
		})
	}
}
