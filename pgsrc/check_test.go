package pgsrc_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

var (
	orders = pgsrc.TableRef{Schema: "public", Name: "orders"}
	events = pgsrc.TableRef{Schema: "public", Name: "events"}
	items  = pgsrc.TableRef{Schema: "public", Name: "items"}
	wmRef  = pgsrc.TableRef{Schema: "public", Name: "flow_watermarks"}
)

const setupSchema = `
CREATE TABLE orders (id bigint PRIMARY KEY, note text);
CREATE TABLE events (id int, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE items (id int PRIMARY KEY);
`

// ownerDB is a database owned by a REPLICATION role "capture" that owns
// the tables too: the role may set everything up.
func ownerDB(t *testing.T) (*pgtest.DB, pgsrc.Config) {
	t.Helper()
	db := pgCluster(t).NewDatabase(t)
	db.CreateRole(t, "capture", "capture-pw", "LOGIN", "REPLICATION")
	db.Exec(t, setupSchema+`
ALTER TABLE orders OWNER TO capture;
ALTER TABLE events OWNER TO capture;
ALTER TABLE items OWNER TO capture;
ALTER DATABASE `+pgx.Identifier{db.Name}.Sanitize()+` OWNER TO capture;`)
	return db, db.SourceConfig("capture", "capture-pw")
}

func captureLog() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

func TestSetupCreatesEverything(t *testing.T) {
	ctx := testContext(t)
	db, cfg := ownerDB(t)
	log, buf := captureLog()
	if err := pgsrc.Setup(ctx, &cfg, []pgsrc.TableRef{orders, events}, log); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"created watermarks table", "table=public.flow_watermarks",
		"created publication", "publication=flow_publication", "table=public.orders", "table=public.events",
		"created replication slot", "slot=flow_slot",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, buf)
		}
	}
	conn := db.Conn(t)
	var viaRoot bool
	if err := conn.QueryRow(ctx, `SELECT pubviaroot FROM pg_publication WHERE pubname = 'flow_publication'`).Scan(&viaRoot); err != nil || !viaRoot {
		t.Errorf("publish_via_partition_root = %v, %v", viaRoot, err)
	}
	assertPublication(t, conn, events, wmRef, orders)
	var plugin, database string
	if err := conn.QueryRow(ctx, `SELECT plugin, database FROM pg_replication_slots WHERE slot_name = 'flow_slot'`).Scan(&plugin, &database); err != nil ||
		plugin != "pgoutput" || database != db.Name {
		t.Errorf("slot: plugin %q, database %q, %v", plugin, database, err)
	}

	// Idempotent: the second run creates nothing.
	log, buf = captureLog()
	if err := pgsrc.Setup(ctx, &cfg, []pgsrc.TableRef{orders, events}, log); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if strings.Contains(buf.String(), "created") || strings.Contains(buf.String(), "added") {
		t.Errorf("second run changed something:\n%s", buf)
	}

	results, err := pgsrc.Check(ctx, &cfg, []pgsrc.TableRef{orders, events})
	if err != nil {
		t.Fatal(err)
	}
	names := assertAllOK(t, results)
	for _, want := range []string{"connection", "wal_level", "replication", "watermarks_table", "publication", "slot", "wal_senders", "table public.orders", "table public.events"} {
		if !slices.Contains(names, want) {
			t.Errorf("Check lacks %q: %v", want, names)
		}
	}

	// A table added to the bindings is added to the publication.
	log, buf = captureLog()
	if err := pgsrc.Setup(ctx, &cfg, []pgsrc.TableRef{orders, events, items}, log); err != nil {
		t.Fatal(err)
	}
	assertPublication(t, conn, events, wmRef, items, orders)
	if !strings.Contains(buf.String(), `msg="added table to publication" publication=flow_publication table=public.items`) {
		t.Errorf("log lacks the added table:\n%s", buf)
	}

	// No bindings: the publication's tables.
	if err := pgsrc.Setup(ctx, &cfg, nil, nil); err != nil {
		t.Fatal(err)
	}
	assertPublication(t, conn, events, wmRef, items, orders)
}

func TestSetupAddsToHandMadePublication(t *testing.T) {
	ctx := testContext(t)
	db, cfg := ownerDB(t)
	// Made by hand without publish_via_partition_root, holding a table the
	// bindings do not name: setup keeps it and fixes the rest.
	db.Exec(t, `SET ROLE capture; CREATE PUBLICATION flow_publication FOR TABLE items; RESET ROLE`)
	if err := pgsrc.Setup(ctx, &cfg, []pgsrc.TableRef{orders, events}, nil); err != nil {
		t.Fatal(err)
	}
	assertPublication(t, db.Conn(t), events, wmRef, items, orders)
}

func TestSetupWithoutReplication(t *testing.T) {
	ctx := testContext(t)
	db := pgCluster(t).NewDatabase(t)
	db.CreateRole(t, "norepl", "pw", "LOGIN")
	// PostgreSQL 15's default, made explicit for the older servers, where
	// anyone may create tables in public: norepl may not create the
	// watermarks table.
	db.Exec(t, setupSchema+`GRANT SELECT ON orders TO norepl; REVOKE CREATE ON SCHEMA public FROM PUBLIC`)
	cfg := db.SourceConfig("norepl", "pw")
	err := pgsrc.Setup(ctx, &cfg, []pgsrc.TableRef{orders}, nil)
	var pe *pgsrc.PrerequisiteError
	if !errors.As(err, &pe) || pe.Check != "replication" || !errors.Is(err, pgsrc.ErrNoReplication) {
		t.Fatalf("err = %v, want a replication PrerequisiteError", err)
	}
	if want := `ALTER ROLE "norepl" WITH REPLICATION;`; !strings.Contains(pe.Fix, want) || !strings.Contains(err.Error(), want) {
		t.Errorf("fix %q lacks %q", pe.Fix, want)
	}

	results, err := pgsrc.Check(ctx, &cfg, []pgsrc.TableRef{orders, items})
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]pgsrc.CheckResult{}
	for _, r := range results {
		if !r.OK {
			failed[r.Name] = r
		}
	}
	for _, name := range []string{"replication", "slot", "watermarks_table", "publication", "table public.items"} {
		if _, ok := failed[name]; !ok {
			t.Errorf("check %s passed, want failed; results %+v", name, results)
		}
	}
	for name, r := range failed {
		if r.Fix == "" {
			t.Errorf("failed check %s has no fix", name)
		}
	}
	if fix := failed["table public.items"].Fix; !strings.Contains(fix, `GRANT SELECT ON TABLE "public"."items" TO "norepl";`) {
		t.Errorf("table fix = %q", fix)
	}
	if fix := failed["watermarks_table"].Fix; !strings.Contains(fix, `CREATE TABLE IF NOT EXISTS "public"."flow_watermarks" (slot TEXT PRIMARY KEY, watermark TEXT);`) {
		t.Errorf("watermarks fix = %q", fix)
	}
}

func TestSetupPublicationNotPermitted(t *testing.T) {
	ctx := testContext(t)
	db := pgCluster(t).NewDatabase(t)
	db.CreateRole(t, "capture2", "pw", "LOGIN", "REPLICATION")
	db.Exec(t, setupSchema+`
CREATE TABLE flow_watermarks (slot TEXT PRIMARY KEY, watermark TEXT);
GRANT ALL PRIVILEGES ON TABLE flow_watermarks TO capture2;
GRANT SELECT ON orders, items TO capture2;`)
	cfg := db.SourceConfig("capture2", "pw")

	results, err := pgsrc.Check(ctx, &cfg, []pgsrc.TableRef{orders})
	if err != nil {
		t.Fatal(err)
	}
	wantFix := `CREATE PUBLICATION "flow_publication" FOR TABLE "public"."orders", "public"."flow_watermarks" WITH (publish_via_partition_root = true);`
	for _, r := range results {
		if r.OK != (r.Name != "publication") {
			t.Errorf("check %+v", r)
		}
		if r.Name == "publication" && r.Fix != wantFix {
			t.Errorf("publication fix = %q, want %q", r.Fix, wantFix)
		}
	}

	err = pgsrc.Setup(ctx, &cfg, []pgsrc.TableRef{orders}, nil)
	var pe *pgsrc.PrerequisiteError
	if !errors.As(err, &pe) || pe.Check != "publication" || !errors.Is(err, pgsrc.ErrNotPermitted) || !strings.Contains(err.Error(), wantFix) {
		t.Fatalf("err = %v, want a publication PrerequisiteError with %s", err, wantFix)
	}

	// Made by the owner, it then lacks a table the role may not add.
	db.Exec(t, wantFix)
	err = pgsrc.Setup(ctx, &cfg, []pgsrc.TableRef{orders, items}, nil)
	if want := `ALTER PUBLICATION "flow_publication" ADD TABLE "public"."items";`; !errors.As(err, &pe) || !strings.Contains(pe.Fix, want) {
		t.Fatalf("err = %v, want a fix with %s", err, want)
	}
	if err := pgsrc.Setup(ctx, &cfg, []pgsrc.TableRef{orders}, nil); err != nil {
		t.Fatalf("after the owner's fix: %v", err)
	}
}

func TestSetupSlotOfOtherPlugin(t *testing.T) {
	ctx := testContext(t)
	db, cfg := ownerDB(t)
	db.Exec(t, `SELECT pg_create_logical_replication_slot('flow_slot', 'test_decoding')`)
	err := pgsrc.Setup(ctx, &cfg, []pgsrc.TableRef{orders}, nil)
	if !errors.Is(err, pgsrc.ErrSlotMismatch) || !strings.Contains(err.Error(), `pg_drop_replication_slot('flow_slot')`) {
		t.Fatalf("err = %v, want ErrSlotMismatch with the fix", err)
	}
	results, err := pgsrc.Check(ctx, &cfg, []pgsrc.TableRef{orders})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Name == "slot" && (r.OK || !strings.Contains(r.Fix, "slotName")) {
			t.Errorf("slot check = %+v", r)
		}
	}
}

func TestSetupWALLevelReplica(t *testing.T) {
	ctx := testContext(t)
	c := pgtest.Start(t, pgtest.WithSetting("wal_level", "replica"), pgtest.WithSetting("max_wal_senders", "10"))
	db := c.NewDatabase(t)
	cfg := db.SourceConfig(pgtest.Superuser, c.SuperuserPassword())
	err := pgsrc.Setup(ctx, &cfg, nil, nil)
	var pe *pgsrc.PrerequisiteError
	if !errors.Is(err, pgsrc.ErrWALLevel) || !errors.As(err, &pe) || !strings.Contains(pe.Fix, "ALTER SYSTEM SET wal_level = logical;") ||
		!strings.Contains(err.Error(), "rds.logical_replication = 1") {
		t.Fatalf("err = %v, want ErrWALLevel with the fix", err)
	}
	results, err := pgsrc.Check(ctx, &cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := results[1]; r.Name != "wal_level" || r.OK || r.Detail != "wal_level is replica" {
		t.Errorf("wal_level check = %+v", r)
	}
}

func TestConnectErrors(t *testing.T) {
	ctx := testContext(t)
	db := pgCluster(t).NewDatabase(t)
	db.CreateRole(t, "someone", "right-password", "LOGIN")

	t.Run("wrong password", func(t *testing.T) {
		const secret = "Wr0ng-Passw0rd-xyzzy"
		cfg := db.SourceConfig("someone", secret)
		_, err := pgsrc.Connect(ctx, &cfg)
		if err == nil {
			t.Fatal("connected with a wrong password")
		}
		for _, want := range []string{`password authentication failed for user "someone"`, "source.password", cfg.Address} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q holds the password", err)
		}
		if pgsrc.IsRetryable(err) {
			t.Error("a wrong password is retryable")
		}
		if _, err := pgsrc.Check(ctx, &cfg, nil); err == nil || !strings.Contains(err.Error(), "source.password") {
			t.Errorf("Check: err = %v", err)
		}
	})
	t.Run("missing database", func(t *testing.T) {
		cfg := db.SourceConfig("someone", "right-password")
		cfg.Database = "no_such_db"
		_, err := pgsrc.Connect(ctx, &cfg)
		if err == nil || !strings.Contains(err.Error(), `database "no_such_db" does not exist`) || !strings.Contains(err.Error(), "source.database") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		cfg := db.SourceConfig("someone", "right-password")
		cfg.Address = addr
		start := time.Now()
		_, err = pgsrc.Connect(ctx, &cfg)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("took %v", took)
		}
		if err == nil || !strings.Contains(err.Error(), "cannot reach PostgreSQL at "+addr+" (source.address)") {
			t.Errorf("err = %v", err)
		}
		if !pgsrc.IsRetryable(err) {
			t.Errorf("unreachable is not retryable: %v", err)
		}
		_, err = pgsrc.ConnectReplication(ctx, &cfg)
		if err == nil || !strings.Contains(err.Error(), addr) {
			t.Errorf("replication: err = %v", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		cfg := db.SourceConfig("someone", "right-password")
		cfg.Address = "192.0.2.1:5432" // TEST-NET-1: never answers
		tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := pgsrc.Connect(tctx, &cfg)
		if err == nil || !strings.Contains(err.Error(), "cannot reach PostgreSQL at 192.0.2.1:5432 (source.address)") {
			t.Errorf("err = %v", err)
		}
	})
}

func assertPublication(t *testing.T, conn *pgx.Conn, want ...pgsrc.TableRef) {
	t.Helper()
	got, ok, err := pgsrc.PublicationTables(context.Background(), conn, "flow_publication")
	if err != nil || !ok || !slices.Equal(got, want) {
		t.Errorf("publication tables = %v (exists %v, %v), want %v", got, ok, err, want)
	}
}

func assertAllOK(t *testing.T, results []pgsrc.CheckResult) []string {
	t.Helper()
	var names []string
	for _, r := range results {
		names = append(names, r.Name)
		if !r.OK || r.Fix != "" {
			t.Errorf("check %s failed: %s (fix %q)", r.Name, r.Detail, r.Fix)
		}
	}
	return names
}

// TestCheckSaysHowTablesAreKeyed: check tells a table keyed by its primary
// key, one keyed by its replica identity index (whose records carry that
// key, not a null one) and one without a key.
func TestCheckSaysHowTablesAreKeyed(t *testing.T) {
	ctx := testContext(t)
	db, cfg := ownerDB(t)
	db.Exec(t, `CREATE TABLE ident (id int NOT NULL, v text);
CREATE UNIQUE INDEX ident_id ON ident (id);
ALTER TABLE ident REPLICA IDENTITY USING INDEX ident_id;
CREATE TABLE loose (v text);
ALTER TABLE ident OWNER TO capture; ALTER TABLE loose OWNER TO capture;`)
	results, err := pgsrc.Check(ctx, &cfg, []pgsrc.TableRef{orders, {Schema: "public", Name: "ident"}, {Schema: "public", Name: "loose"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"table public.orders": "primary key (id)",
		"table public.ident":  "no primary key, keyed by its replica identity index (id)",
		"table public.loose":  "no primary key: records get a null key",
	}
	for _, r := range results {
		if w, ok := want[r.Name]; ok {
			if !strings.Contains(r.Detail, w) {
				t.Errorf("%s: %q, want it to say %q", r.Name, r.Detail, w)
			}
			delete(want, r.Name)
		}
	}
	for name := range want {
		t.Errorf("no result for %s", name)
	}
}
