package pipeline_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/pipeline"
)

// TestBindingKey: bindings[].key keys the records by the chosen column in
// place of the primary key, backfilled and streamed; a change of its value
// is a delete of the old key and a create of the new one; a table whose
// deletes would not carry the column is refused at start, naming the key
// path and the fix.
func TestBindingKey(t *testing.T) {
	e := newEnv(t, "public.acct")
	e.db.Exec(t, `CREATE TABLE acct (id int PRIMARY KEY, account int NOT NULL, v text);
		INSERT INTO acct VALUES (1, 10, 'a'), (2, 20, 'b')`)
	e.cfg.Bindings[0].Key = []string{"account"}

	cfg := e.cfg
	cfg.SetDefaults()
	r, err := pipeline.NewRunner(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = r.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "bindings[0].key") || !strings.Contains(err.Error(), "REPLICA IDENTITY FULL") || !strings.Contains(err.Error(), `"account"`) {
		t.Fatalf("a binding key its deletes do not carry: %v", err)
	}

	e.db.Exec(t, `ALTER TABLE acct REPLICA IDENTITY FULL`)
	e.start(t)
	e.db.Exec(t, `INSERT INTO acct VALUES (3, 10, 'c'); UPDATE acct SET v = 'a2' WHERE id = 1;
		UPDATE acct SET account = 30 WHERE id = 2; DELETE FROM acct WHERE id = 3; INSERT INTO acct VALUES (9, 90, 'last')`)
	rs := e.consume(t, []string{"test.public.acct"}, 30*time.Second, func(rs []rec) bool {
		return len(rs) > 0 && fmt.Sprint(rs[len(rs)-1].Key) == "map[account:90]"
	})
	var got []string
	for _, r := range rs {
		op := r.Op
		if r.Tombstone {
			op = "tombstone"
		}
		got = append(got, fmt.Sprintf("%s%v", op, r.Key["account"]))
	}
	want := "[r10 r20 c10 u10 d20 tombstone20 c30 d10 tombstone10 c90]"
	if fmt.Sprint(got) != want {
		t.Fatalf("records (op and key) %v, want %s", got, want)
	}
	for _, r := range rs {
		if len(r.Key) != 1 {
			t.Errorf("key %v: want the account column alone", r.Key)
		}
	}
}
