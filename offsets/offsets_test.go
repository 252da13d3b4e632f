package offsets_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/offsets"
)

func TestCheckpointJSON(t *testing.T) {
	at := time.Date(2026, 11, 25, 8, 0, 0, 123456000, time.UTC)
	c := &offsets.Checkpoint{
		LSN: 0x16B3748, CommitTime: at, UpdatedAt: at.Add(time.Second),
		Partial: &offsets.Partial{CommitLSN: 0x1700000, Xid: 771, Changes: 50000},
		Tables: map[string]offsets.TableState{
			"public.orders": {State: offsets.StateStreaming},
			"public.items":  {State: offsets.StateBackfilling, Cursor: json.RawMessage(`[42,"x"]`)},
			"public.repair": {State: offsets.StateBackfilling, Where: `"id" IN ('1'::integer)`, Purge: true, PurgeKeys: []string{"Ag=="}},
		},
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"version":1`, `"lsn":"0/16B3748"`, `"commitLsn":"0/1700000"`, `"changes":50000`, `"state":"backfilling"`, `"cursor":[42,"x"]`, `"purgeAfterBackfill":true`, `"purgeKeys":["Ag=="]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	var back offsets.Checkpoint
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(&back)
	if string(again) != string(b) {
		t.Fatalf("round trip:\n%s\n%s", b, again)
	}
	for _, bad := range []string{`{"version":2,"lsn":"0/1"}`, `{"version":1,"lsn":"nope"}`, `{"version":1,"lsn":"0/1","partial":{"commitLsn":"0/2","changes":0}}`, `[`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// TestCheckpointDroppedTable: a dropped table's state keeps its relation
// ID and the position the drop committed before; a checkpoint written
// before those fields existed reads as it did, with them zero.
func TestCheckpointDroppedTable(t *testing.T) {
	c := &offsets.Checkpoint{LSN: 0x2000, Tables: map[string]offsets.TableState{
		"public.gone": {State: offsets.StateDropped, OID: 16390, DroppedAt: 0x1F00},
		"public.kept": {State: offsets.StateStreaming, OID: 16400},
	}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"public.gone":{"state":"dropped","oid":16390,"droppedAt":"0/1F00"}`, `"public.kept":{"state":"streaming","oid":16400}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	var back offsets.Checkpoint
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Tables["public.gone"]; got.State != offsets.StateDropped || got.OID != 16390 || got.DroppedAt != 0x1F00 || !got.DropCaptured(back.LSN) {
		t.Errorf("dropped state read back as %+v", got)
	}
	if (offsets.TableState{State: offsets.StateDropped, DroppedAt: 0x2001}).DropCaptured(0x2000) {
		t.Error("a drop past the checkpoint counts as captured")
	}

	old := `{"version":1,"lsn":"0/16B3748","tables":{"public.orders":{"state":"streaming"},"public.items":{"state":"backfilling","cursor":[42,"x"]}},"updatedAt":"2026-11-25T08:00:01Z"}`
	var oc offsets.Checkpoint
	if err := json.Unmarshal([]byte(old), &oc); err != nil {
		t.Fatalf("a checkpoint of the earlier form: %v", err)
	}
	if o, i := oc.Tables["public.orders"], oc.Tables["public.items"]; o.State != offsets.StateStreaming || o.OID != 0 || i.State != offsets.StateBackfilling || string(i.Cursor) != `[42,"x"]` {
		t.Errorf("earlier checkpoint read as %+v", oc.Tables)
	}
	for _, bad := range []string{`{"version":1,"lsn":"0/1","tables":{"t":{"state":"dropped"}}}`, `{"version":1,"lsn":"0/1","tables":{"t":{"state":"dropped","droppedAt":"x"}}}`} {
		if err := json.Unmarshal([]byte(bad), &oc); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func newBroker(t *testing.T) (*kfake.Cluster, []kgo.Opt) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
}

// txWrite writes records in one transaction of producer id, committed or not.
func txWrite(t *testing.T, opts []kgo.Opt, id string, commit bool, recs ...*kgo.Record) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append(opts, kgo.TransactionalID(id))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if commit {
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
		cl.Close()
	}
	return cl // open transaction: the caller closes
}

func cpRecord(t *testing.T, name string, lsn uint64) *kgo.Record {
	t.Helper()
	c := &offsets.Checkpoint{LSN: pglogrepl.LSN(lsn)}
	r, err := c.Record("offs", name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLoad(t *testing.T) {
	_, opts := newBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()

	if c, err := offsets.Load(ctx, opts, "offs", "shop"); err != nil || c != nil {
		t.Fatalf("missing topic: %v %v", c, err)
	}
	created, err := offsets.EnsureTopic(ctx, kadm.NewClient(adm), "offs", 1)
	if err != nil || !created {
		t.Fatalf("EnsureTopic: %v %v", created, err)
	}
	if created, err := offsets.EnsureTopic(ctx, kadm.NewClient(adm), "offs", 1); err != nil || created {
		t.Fatalf("EnsureTopic again: %v %v", created, err)
	}
	cfgs, err := kadm.NewClient(adm).DescribeTopicConfigs(ctx, "offs")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := cfgs.On("offs", nil); err != nil || !strings.Contains(configValue(v, "cleanup.policy"), "compact") {
		t.Errorf("offsets topic cleanup.policy %q (%v)", configValue(v, "cleanup.policy"), err)
	}
	if c, err := offsets.Load(ctx, opts, "offs", "shop"); err != nil || c != nil {
		t.Fatalf("empty topic: %v %v", c, err)
	}

	txWrite(t, opts, "shop", true, cpRecord(t, "shop", 100), cpRecord(t, "other", 900))
	txWrite(t, opts, "shop", true, cpRecord(t, "shop", 200))
	txWrite(t, opts, "other", true, cpRecord(t, "other", 950))
	// An aborted transaction and one still open: neither counts.
	aborted := txWrite(t, opts, "shop-aborted", false, cpRecord(t, "shop", 300))
	if err := aborted.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	aborted.Close()
	open := txWrite(t, opts, "shop-open", false, cpRecord(t, "shop", 400))

	c, err := offsets.Load(ctx, opts, "offs", "shop")
	if err != nil || c == nil || c.LSN != 200 {
		t.Fatalf("Load: %+v %v, want LSN 0/C8", c, err)
	}
	if c, err := offsets.Load(ctx, opts, "offs", "other"); err != nil || c == nil || c.LSN != 950 {
		t.Fatalf("Load other: %+v %v", c, err)
	}

	// Nothing past an open transaction is visible: pgkafka fences (and so
	// aborts) its predecessor's before it loads.
	if err := open.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	open.Close()

	// A tombstone resets.
	txWrite(t, opts, "shop", true, &kgo.Record{Topic: "offs", Key: []byte("shop")})
	if c, err := offsets.Load(ctx, opts, "offs", "shop"); err != nil || c != nil {
		t.Fatalf("after a tombstone: %+v %v", c, err)
	}
	// Garbage is an error that says what to do.
	txWrite(t, opts, "shop", true, &kgo.Record{Topic: "offs", Key: []byte("shop"), Value: []byte("{")})
	if _, err := offsets.Load(ctx, opts, "offs", "shop"); !errors.Is(err, offsets.ErrUnreadable) || !strings.Contains(err.Error(), "tombstone") {
		t.Fatalf("garbage checkpoint: %v", err)
	}
}

func TestEnsureTopicRefusesPartitions(t *testing.T) {
	_, opts := newBroker(t)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, "offs"); err != nil {
		t.Fatal(err)
	}
	if _, err := offsets.EnsureTopic(ctx, adm, "offs", 1); !errors.Is(err, offsets.ErrUnreadable) || !strings.Contains(err.Error(), "3 partitions") {
		t.Fatalf("EnsureTopic on 3 partitions: %v", err)
	}
}

func configValue(rc kadm.ResourceConfig, key string) string {
	for _, c := range rc.Configs {
		if c.Key == key && c.Value != nil {
			return *c.Value
		}
	}
	return ""
}

// TestCheckpointPartialEvents: a partial mark keeps the per-table record
// counts of transaction metadata; one written before them (or with the
// option off) reads with none, and writes back the same.
func TestCheckpointPartialEvents(t *testing.T) {
	c := &offsets.Checkpoint{LSN: 0x2000, Partial: &offsets.Partial{CommitLSN: 0x3000, Xid: 9, Changes: 5,
		Events: map[string]int64{"public.a": 3, "s2.b": 2}}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"partial":{"commitLsn":"0/3000","xid":9,"changes":5,"events":{"public.a":3,"s2.b":2}}`; !strings.Contains(string(b), want) {
		t.Fatalf("%s lacks %s", b, want)
	}
	var back offsets.Checkpoint
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Partial.Events; len(got) != 2 || got["public.a"] != 3 || got["s2.b"] != 2 {
		t.Fatalf("events read back as %v", got)
	}
	clone := back.Clone()
	clone.Partial.Events["public.a"] = 99
	if back.Partial.Events["public.a"] != 3 {
		t.Error("Clone shares the partial mark's events")
	}
	old := `{"version":1,"lsn":"0/2000","partial":{"commitLsn":"0/3000","xid":9,"changes":5},"updatedAt":"2026-01-01T00:00:00Z"}`
	if err := json.Unmarshal([]byte(old), &back); err != nil {
		t.Fatalf("a checkpoint without events: %v", err)
	}
	if back.Partial == nil || back.Partial.Changes != 5 || back.Partial.Events != nil {
		t.Fatalf("a checkpoint without events read as %+v", back.Partial)
	}
	if again, _ := json.Marshal(&back); string(again) != old {
		t.Fatalf("a checkpoint without events written back as\n%s\nnot\n%s", again, old)
	}
	bad := `{"version":1,"lsn":"0/1","partial":{"commitLsn":"0/2","changes":1,"events":{"public.a":-1}}}`
	if err := json.Unmarshal([]byte(bad), &back); err == nil {
		t.Errorf("%s accepted", bad)
	}
}
