package pgtest_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

func TestCluster(t *testing.T) {
	c := pgtest.Start(t, pgtest.WithSetting("application_name", "pgtest's"))
	if c.Host() != "127.0.0.1" || c.Port() == 0 || c.SuperuserPassword() == "" || c.BinDir() == "" {
		t.Fatalf("cluster accessors: host %q port %d bin %q", c.Host(), c.Port(), c.BinDir())
	}
	db := c.NewDatabase(t)
	db.Exec(t, `CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)`)
	db.CreateRole(t, "pgtest_reader", "s3cret", "LOGIN")
	db.Exec(t, `GRANT SELECT ON t TO pgtest_reader`)

	ctx := context.Background()
	var walLevel, appName string
	conn := db.Conn(t)
	if err := conn.QueryRow(ctx, `SELECT current_setting('wal_level'), current_setting('application_name')`).Scan(&walLevel, &appName); err != nil {
		t.Fatal(err)
	}
	if walLevel != "logical" {
		t.Errorf("wal_level = %q, want logical", walLevel)
	}
	var versionNum int
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&versionNum); err != nil {
		t.Fatal(err)
	}
	if c.Major() != versionNum/10000 {
		t.Errorf("Major() = %d, the server's server_version_num is %d", c.Major(), versionNum)
	}

	var ranNewer, ranSame bool
	t.Run("SkipBelowNewer", func(t *testing.T) { c.SkipBelow(t, c.Major()+1, "a later feature"); ranNewer = true })
	t.Run("SkipBelowSame", func(t *testing.T) { c.SkipBelow(t, c.Major(), "this version's feature"); ranSame = true })
	if ranNewer || !ranSame {
		t.Errorf("SkipBelow on PostgreSQL %d: a test of a PostgreSQL %d feature ran: %v, of a PostgreSQL %d one: %v; want false, true",
			c.Major(), c.Major()+1, ranNewer, c.Major(), ranSame)
	}

	cfg := db.SourceConfig("pgtest_reader", "s3cret")
	if err := cfg.Validate(); err != nil {
		t.Fatalf("SourceConfig is not valid: %v", err)
	}
	rc, err := pgx.ConnectConfig(ctx, mustConnConfig(t, &cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close(ctx)
	var n int
	if err := rc.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("count = %d, %v; want 2", n, err)
	}

	// A wrong password is refused over TCP (scram-sha-256).
	bad := db.SourceConfig("pgtest_reader", "wrong")
	if _, err := pgx.ConnectConfig(ctx, mustConnConfig(t, &bad)); err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("wrong password: err = %v", err)
	}
}

func TestWithSettingOverrides(t *testing.T) {
	c := pgtest.Start(t, pgtest.WithSetting("wal_level", "replica"))
	conn, err := pgx.Connect(context.Background(), c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var walLevel string
	if err := conn.QueryRow(context.Background(), `SHOW wal_level`).Scan(&walLevel); err != nil {
		t.Fatal(err)
	}
	if walLevel != "replica" {
		t.Errorf("wal_level = %q, want replica", walLevel)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func mustConnConfig(t *testing.T, cfg interface {
	ConnConfig(context.Context, bool) (*pgx.ConnConfig, error)
}) *pgx.ConnConfig {
	t.Helper()
	cc, err := cfg.ConnConfig(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// TestReapsOrphans: a cluster whose owner died without closing it (a
// killed test run) is stopped and removed by the next New.
func TestReapsOrphans(t *testing.T) {
	orphan, err := pgtest.New()
	if err != nil {
		t.Fatal(err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(orphan.LogFile())
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	pgtest.Start(t)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the orphan's directory %s is still there (%v)", dir, err)
	}
	if conn, err := net.DialTimeout("tcp", orphan.Address(), time.Second); err == nil {
		conn.Close()
		t.Errorf("the orphan still listens on %s", orphan.Address())
	}
}
