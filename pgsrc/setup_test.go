package pgsrc_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

// TestSetupConcurrent starts several captures' Setup at once on a fresh
// database: each its own slot, all the same publication and watermarks
// table, each binding a table of its own and one they share. PostgreSQL's
// CREATE TABLE IF NOT EXISTS, CREATE PUBLICATION and ALTER PUBLICATION ...
// ADD TABLE fail with unique_violation or duplicate_object when another
// session runs them at the same moment; every Setup must succeed anyway
// and the publication end up with every table. Repeated on fresh
// databases, since the race does not show every time.
func TestSetupConcurrent(t *testing.T) {
	const instances, rounds = 6, 6
	for round := range rounds {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			ctx := testContext(t)
			db := pgCluster(t).NewDatabase(t)
			want := []pgsrc.TableRef{orders, wmRef}
			db.Exec(t, `CREATE TABLE orders (id bigint PRIMARY KEY)`)
			for i := range instances {
				name := fmt.Sprintf("own_%d", i)
				db.Exec(t, `CREATE TABLE `+name+` (id int PRIMARY KEY)`)
				want = append(want, pgsrc.TableRef{Schema: "public", Name: name})
			}
			slices.SortFunc(want, func(a, b pgsrc.TableRef) int { return strings.Compare(a.String(), b.String()) })

			start := make(chan struct{})
			errs := make([]error, instances)
			var wg sync.WaitGroup
			for i := range instances {
				cfg := db.SourceConfig(pgtest.Superuser, pgCluster(t).SuperuserPassword())
				cfg.Advanced.SlotName = fmt.Sprintf("slot_%d", i)
				tables := []pgsrc.TableRef{orders, {Schema: "public", Name: fmt.Sprintf("own_%d", i)}}
				wg.Go(func() {
					<-start
					errs[i] = pgsrc.Setup(ctx, &cfg, tables, nil)
				})
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("Setup of instance %d: %v", i, err)
				}
			}
			conn := db.Conn(t)
			assertPublication(t, conn, want...)
			var slots int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = current_database()`).Scan(&slots); err != nil || slots != instances {
				t.Errorf("%d slots (%v), want %d", slots, err, instances)
			}
		})
	}
}

// TestSetupAfterConcurrentCreate: a session that does not take Setup's
// lock (a script, an older pgkafka) creates the watermarks table or the
// publication in a transaction that commits while Setup creates the same:
// Setup's statement fails with unique_violation or duplicate_object, and
// Setup reads the catalog again and goes on.
func TestSetupAfterConcurrentCreate(t *testing.T) {
	for _, tc := range []struct{ name, sql, waits string }{
		{"watermarks table", `CREATE TABLE public.flow_watermarks (slot TEXT PRIMARY KEY, watermark TEXT)`, "CREATE TABLE%"},
		{"publication", `CREATE PUBLICATION flow_publication FOR TABLE public.orders WITH (publish_via_partition_root = true)`, "CREATE PUBLICATION%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			db := pgCluster(t).NewDatabase(t)
			db.Exec(t, `CREATE TABLE orders (id bigint PRIMARY KEY)`)
			other, watch := db.Conn(t), db.Conn(t)
			tx, err := other.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, tc.sql); err != nil {
				t.Fatal(err)
			}
			cfg := db.SourceConfig(pgtest.Superuser, pgCluster(t).SuperuserPassword())
			done := make(chan error, 1)
			go func() { done <- pgsrc.Setup(ctx, &cfg, []pgsrc.TableRef{orders}, nil) }()
			// Setup's statement waits for the other transaction to end.
			for {
				var waiting bool
				if err := watch.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_stat_activity
					WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1)`, tc.waits).Scan(&waiting); err != nil {
					t.Fatal(err)
				}
				if waiting {
					break
				}
				select {
				case err := <-done:
					t.Fatalf("Setup ended before it met the other transaction: %v", err)
				case <-time.After(20 * time.Millisecond):
				}
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("Setup: %v", err)
			}
			assertPublication(t, watch, wmRef, orders)
		})
	}
}
