package pgtest

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pgsrc/secret"
)

// opTimeout bounds each helper operation.
const opTimeout = 30 * time.Second

// DB is a database of its own for one test, dropped at the end of it.
type DB struct {
	// Name is the database name.
	Name string

	cluster *Cluster
	admin   *pgx.Conn // superuser connection used by Exec

	mu    sync.Mutex
	roles []string // dropped after the database
}

// NewDatabase creates a database with a unique name. At the end of tb its
// backends are terminated, its replication slots dropped, the database
// dropped, and the roles made with CreateRole dropped.
func (c *Cluster) NewDatabase(tb testing.TB) *DB {
	tb.Helper()
	return c.newDatabase(tb, "")
}

// NewDatabaseEncoded is NewDatabase with a server encoding other than the
// cluster's UTF8 (LATIN1, SQL_ASCII, ...), from template0 (the cluster's
// locale is C, which takes any encoding).
func (c *Cluster) NewDatabaseEncoded(tb testing.TB, encoding string) *DB {
	tb.Helper()
	return c.newDatabase(tb, " ENCODING "+quoteLiteral(encoding)+" TEMPLATE template0")
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (c *Cluster) newDatabase(tb testing.TB, with string) *DB {
	tb.Helper()
	c.mu.Lock()
	c.dbSeq++
	name := fmt.Sprintf("t%d_%s", c.dbSeq, slug(tb.Name()))
	c.mu.Unlock()
	if len(name) > 63 {
		name = name[:63]
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := c.superExec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+with); err != nil {
		tb.Fatalf("creating database %s: %v", name, err)
	}
	db := &DB{Name: name, cluster: c}
	tb.Cleanup(func() {
		if err := db.drop(); err != nil {
			tb.Errorf("dropping database %s: %v", name, err)
		}
	})
	admin, err := c.connect(ctx, c.DSN(name))
	if err != nil {
		tb.Fatalf("connecting to database %s: %v", name, err)
	}
	db.admin = admin
	return db
}

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

func slug(s string) string {
	return strings.Trim(nonWord.ReplaceAllString(strings.ToLower(s), "_"), "_")
}

// superExec runs statements on the postgres database as the superuser.
func (c *Cluster) superExec(ctx context.Context, sql string, args ...any) error {
	conn, err := c.connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, sql, args...)
	if cerr := conn.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

func (d *DB) drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if d.admin != nil {
		if err := d.admin.Close(ctx); err != nil {
			return err
		}
	}
	conn, err := d.cluster.connect(ctx, d.cluster.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
		d.Name); err != nil {
		return fmt.Errorf("terminating backends: %w", err)
	}
	// A terminated walsender releases its slot a moment later.
	for attempt := 0; ; attempt++ {
		_, err := conn.Exec(ctx,
			`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, d.Name)
		if err == nil {
			break
		}
		if attempt == 50 {
			return fmt.Errorf("dropping replication slots: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.Name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return err
	}
	d.mu.Lock()
	roles := d.roles
	d.mu.Unlock()
	for _, r := range roles {
		if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize()); err != nil {
			return fmt.Errorf("dropping role %s: %w", r, err)
		}
	}
	return nil
}

// DSN is a key/value connection string for the superuser to this database.
func (d *DB) DSN() string { return d.cluster.DSN(d.Name) }

// Cluster is the cluster holding the database.
func (d *DB) Cluster() *Cluster { return d.cluster }

// Exec runs sql as the superuser in this database and fails tb on error.
// Without args, sql may hold several statements.
func (d *DB) Exec(tb testing.TB, sql string, args ...any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.admin.Exec(ctx, sql, args...); err != nil {
		tb.Fatalf("in database %s: %s: %v", d.Name, sql, err)
	}
}

// Conn opens a superuser connection to this database, closed at the end
// of tb.
func (d *DB) Conn(tb testing.TB) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	conn, err := d.cluster.connect(ctx, d.DSN())
	if err != nil {
		tb.Fatalf("connecting to database %s: %v", d.Name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := conn.Close(ctx); err != nil {
			tb.Errorf("closing connection to %s: %v", d.Name, err)
		}
	})
	return conn
}

var roleAttr = regexp.MustCompile(`^[A-Za-z]+( [A-Za-z0-9]+)*$`)

// CreateRole creates a cluster-wide role with a password and the given
// attributes (e.g. "LOGIN", "REPLICATION"); grants are left to the test.
// The role is dropped after the database, at the end of the test that
// created the database. Role names are cluster-wide: tests running in
// parallel must use different names.
func (d *DB) CreateRole(tb testing.TB, name, password string, attrs ...string) {
	tb.Helper()
	for _, a := range attrs {
		if !roleAttr.MatchString(a) {
			tb.Fatalf("creating role %s: attribute %q is not a keyword", name, a)
		}
	}
	sql := fmt.Sprintf("CREATE ROLE %s WITH %s PASSWORD '%s'", pgx.Identifier{name}.Sanitize(),
		strings.Join(attrs, " "), strings.ReplaceAll(password, "'", "''"))
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.admin.Exec(ctx, sql); err != nil {
		tb.Fatalf("creating role %s: %v", name, err)
	}
	d.roles = append(d.roles, name)
}

// SourceConfig is a source configuration, defaults set, for this database
// as user.
func (d *DB) SourceConfig(user, password string) pgsrc.Config {
	cfg := pgsrc.Config{
		Address:  d.cluster.Address(),
		Database: d.Name,
		User:     user,
		Password: secret.String(password),
	}
	cfg.Advanced.SSLMode = "disable"
	if d.cluster.bastion != nil {
		cfg.NetworkTunnel.SSHForwarding = d.cluster.bastion.Tunnel()
	}
	cfg.SetDefaults()
	return cfg
}
