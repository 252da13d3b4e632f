package pgsrc

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgkafka/pgkafka/pgsrc/tunnel"
)

// ConnectTimeout bounds how long one connection attempt may take.
const ConnectTimeout = 15 * time.Second

// ConnConfig builds the pgx configuration of a new connection to the
// source. replication asks for a logical replication connection
// (replication=database). The password (source.password, or the one
// source.auth makes for this connection) is set on the parsed
// configuration, never written into a string, so no parse error can echo
// it.
//
// With source.networkTunnel.sshForwarding set, the connection goes through
// the SSH tunnel (one SSH connection shared by all the process's
// connections): the SSH server resolves and dials source.address.
func (c *Config) ConnConfig(ctx context.Context, replication bool) (*pgx.ConnConfig, error) {
	host, port := c.Address, "5432"
	if h, p, err := net.SplitHostPort(c.Address); err == nil {
		host, port = h, p
	}
	var b strings.Builder
	kv := func(k, v string) {
		v = strings.ReplaceAll(v, `\`, `\\`)
		v = strings.ReplaceAll(v, `'`, `\'`)
		fmt.Fprintf(&b, "%s='%s' ", k, v)
	}
	kv("host", host)
	kv("port", port)
	kv("dbname", c.Database)
	kv("user", c.User)
	kv("connect_timeout", fmt.Sprint(int(ConnectTimeout/time.Second)))
	kv("application_name", "pgkafka")
	if c.Advanced.SSLMode != "" {
		kv("sslmode", c.Advanced.SSLMode)
	}
	cfg, err := pgx.ParseConfig(b.String())
	if err != nil {
		return nil, fmt.Errorf("source.address %q: %w", c.Address, err)
	}
	if cfg.Password, err = c.credential(ctx); err != nil {
		return nil, err
	}
	// Values reach us in their text form: pin the formats they are parsed in.
	cfg.RuntimeParams["DateStyle"] = "ISO, YMD"
	cfg.RuntimeParams["TimeZone"] = "UTC"
	cfg.RuntimeParams["IntervalStyle"] = "iso_8601"
	cfg.RuntimeParams["extra_float_digits"] = "3"
	cfg.RuntimeParams["bytea_output"] = "hex"
	// Avro strings are UTF-8: the server converts from the database's
	// encoding (pgoutput's values too), whatever the role's setting.
	cfg.RuntimeParams["client_encoding"] = "UTF8"
	if replication {
		cfg.RuntimeParams["replication"] = "database"
	}
	if t := &c.NetworkTunnel.SSHForwarding; t.Enabled() {
		d, err := tunnel.NewDialer(t, sshForwardingKey)
		if err != nil {
			return nil, err
		}
		cfg.DialFunc = d.DialContext
		// The SSH server resolves the host (a private name may resolve
		// only there): pass it on as written.
		cfg.LookupFunc = func(_ context.Context, host string) ([]string, error) { return []string{host}, nil }
	}
	return cfg, nil
}

// Connect opens a regular connection to the source database. Errors name the
// address, database and user, never the password.
func Connect(ctx context.Context, c *Config) (*pgx.Conn, error) {
	cfg, err := c.ConnConfig(ctx, false)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, c.connectError(err)
	}
	return conn, nil
}

// ConnectReplication opens a logical replication connection.
func ConnectReplication(ctx context.Context, c *Config) (*pgconn.PgConn, error) {
	cfg, err := c.ConnConfig(ctx, true)
	if err != nil {
		return nil, err
	}
	conn, err := pgconn.ConnectConfig(ctx, &cfg.Config)
	if err != nil {
		return nil, c.connectError(err)
	}
	return conn, nil
}

// tunnelEndpoint is the tunnel's user@host:port, for messages.
func tunnelEndpoint(t *tunnel.Config) string {
	if ep, err := tunnel.ParseEndpoint(t.SSHEndpoint); err == nil {
		return ep.String()
	}
	return "(source.networkTunnel.sshForwarding.sshEndpoint)"
}
