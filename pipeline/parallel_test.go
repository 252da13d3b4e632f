package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgkafka/pgkafka/offsets"
)

// TestParallelBackfills backfills three tables two at a time, in small
// chunks, while a writer updates, inserts and deletes rows of all three:
// the backfills overlap in time, each table ends at its state with the
// per-key invariant, and Kafka transactions keep committing while the
// windows of the two tables overlap (the gate), rather than one
// transaction holding the whole backfill.
func TestParallelBackfills(t *testing.T) {
	tables := []string{"pa", "pb", "pc"}
	e := newEnv(t, "public.pa", "public.pb", "public.pc")
	e.cfg.Source.Advanced.BackfillChunkSize = 40
	e.cfg.Source.Advanced.BackfillParallelism = 2
	e.cfg.Kafka.TransactionWindow = 20 * time.Millisecond
	const rows = 3000
	for _, tb := range tables {
		e.db.Exec(t, fmt.Sprintf(`CREATE TABLE %s (k text, n int, v int NOT NULL, PRIMARY KEY (k, n));
			INSERT INTO %[1]s SELECT 'k' || (g %% 7), g, 0 FROM generate_series(1, %d) g`, tb, rows))
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	var once sync.Once
	stopWriter := func() error {
		var err error
		once.Do(func() { close(stop); err = <-done })
		return err
	}
	defer stopWriter() // before the connection's cleanup, should the test fail early
	conn := e.db.Conn(t)
	go func() {
		next := rows + 1
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			tb := tables[i%len(tables)]
			var err error
			switch i % 7 {
			case 0:
				_, err = conn.Exec(context.Background(), `INSERT INTO `+tb+` VALUES ('k' || $1::int % 7, $1, 0)`, next)
				next++
			case 1:
				_, err = conn.Exec(context.Background(), `DELETE FROM `+tb+` WHERE n = $1`, 1+rand.IntN(rows))
			default:
				_, err = conn.Exec(context.Background(), `UPDATE `+tb+` SET v = v + 1 WHERE n % 53 = $1`, rand.IntN(53))
			}
			if err != nil {
				done <- err
				return
			}
			// A writer paced so that the capture, slowed down by the race
			// detector, keeps up with it.
			time.Sleep(time.Millisecond)
		}
	}()
	rn := e.start(t)
	if err := stopWriter(); err != nil {
		t.Fatal(err)
	}

	// The backfills ran two at a time: at least two overlapped.
	prog := rn.r.BackfillProgress()
	if len(prog) != len(tables) {
		t.Fatalf("progress of %d tables, want %d: %+v", len(prog), len(tables), prog)
	}
	overlap := false
	for i, a := range prog {
		if !a.Done || a.Rows < rows/2 {
			t.Errorf("progress of %s: %+v", a.Table, a)
		}
		for _, b := range prog[i+1:] {
			if a.Started.Before(b.Started.Add(b.Elapsed)) && b.Started.Before(a.Started.Add(a.Elapsed)) {
				overlap = true
			}
		}
	}
	if !overlap {
		t.Errorf("no two backfills overlapped in time: %+v", prog)
	}

	topics := make([]string, len(tables))
	want := map[string]map[string]map[string]any{}
	for i, tb := range tables {
		topics[i] = "test.public." + tb
		want[topics[i]] = pgRows(t, e.db, `SELECT k, n, v FROM `+tb, "k", "n")
	}
	giveUp := time.Now().Add(60 * time.Second)
	rs := e.consume(t, topics, 2*time.Minute, func(rs []rec) bool {
		if time.Now().After(giveUp) {
			return true
		}
		for _, tp := range topics {
			if fmt.Sprint(stringify(state(rs, tp))) != fmt.Sprint(stringify(want[tp])) {
				return false
			}
		}
		return true
	})
	rn.stop(t)
	for _, tp := range topics {
		sameRows(t, state(rs, tp), want[tp])
		if reads := checkPerKey(t, rs, tp); reads < rows/2 {
			t.Errorf("%s: only %d rows came by backfill", tp, reads)
		}
	}

	// Checkpoints committed while two tables were still backfilling: the
	// overlapping windows did not hold one transaction open.
	both := 0
	cps := checkpoints(t, e)
	for _, cp := range cps {
		n := 0
		for _, st := range cp.Tables {
			if st.State == offsets.StateBackfilling {
				n++
			}
		}
		if n >= 2 {
			both++
		}
	}
	t.Logf("%d checkpoints, %d with two tables backfilling", len(cps), both)
	if both < 3 {
		t.Errorf("%d committed checkpoints with two tables backfilling, want several", both)
	}
}

// checkpoints reads every committed checkpoint of the offsets topic.
func checkpoints(t *testing.T, e *env) []offsets.Checkpoint {
	t.Helper()
	cfg := e.cfg
	cfg.SetDefaults()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.broker.ListenAddrs()...), kgo.ConsumeTopics(cfg.Kafka.OffsetsTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []offsets.Checkpoint
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		// Until a poll of a second brings nothing more after something.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		for it := fs.RecordIter(); !it.Done(); n++ {
			r := it.Next()
			var cp offsets.Checkpoint
			if err := json.Unmarshal(r.Value, &cp); err != nil {
				t.Fatalf("checkpoint at offset %d: %v", r.Offset, err)
			}
			out = append(out, cp)
		}
		if n == 0 && len(out) > 0 {
			break
		}
	}
	if len(out) == 0 {
		t.Fatal("no checkpoint in the offsets topic after 30s")
	}
	return out
}
