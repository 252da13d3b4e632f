package pgsrc

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrLeaseLost reports that this instance no longer holds the lease of its
// capture: its session on the source ended (a restart, a lost connection,
// an operator's pg_terminate_backend), so another instance may hold it now.
var ErrLeaseLost = errors.New("lease lost")

// leaseClass is the first key of every lease's advisory lock, "pgkf" in
// ASCII; the second is a hash of the capture's name. The two-key form of
// the advisory lock functions has a key space of its own (objsubid 2 in
// pg_locks), apart from the one-key form Setup uses.
const leaseClass int32 = 0x70676b66

// Keepalive settings of the lease's connection, so that the server ends
// the session of an instance whose host or network died within about 25 s
// (Linux's default is two hours), releasing the lease for a standby. They
// are settings of the server's socket, ignored on a Unix socket.
const (
	leaseKeepaliveIdle     = "10"
	leaseKeepaliveInterval = "5"
	leaseKeepaliveCount    = "3"
)

// Lease is the right to run the capture of one name: a session-level
// advisory lock on the source database, held on a connection of its own
// for as long as the instance runs. PostgreSQL releases it when that
// session ends, however it ends (the process killed, the host gone), so a
// standby waiting on the same lock takes over then, and never while the
// active instance lives. Its methods are safe for concurrent use.
type Lease struct {
	mu   sync.Mutex
	conn *pgx.Conn
	name string
	key  int32
}

// LeaseHolder is the session holding a lease, as pg_stat_activity shows it.
type LeaseHolder struct {
	PID         int32
	Application string
	Client      string // the client's address, "local" for a Unix socket
	Since       time.Time
}

func (h LeaseHolder) String() string {
	if h.PID == 0 {
		return "a session that has just ended"
	}
	return fmt.Sprintf("server process %d (application %q, client %s, connected %s)", h.PID, h.Application, h.Client, h.Since.UTC().Format(time.RFC3339))
}

// leaseKey is the second key of the advisory lock of name: FNV-1a, kept
// non-negative so that it reads the same as pg_locks.objid (an oid).
func leaseKey(name string) int32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int32(h.Sum32() & 0x7fffffff)
}

// TryLease takes the lease of the capture name if no session holds it. It
// returns a nil Lease and the holder when another session does.
func TryLease(ctx context.Context, cfg *Config, name string) (*Lease, *LeaseHolder, error) {
	l, err := openLease(ctx, cfg, name)
	if err != nil {
		return nil, nil, err
	}
	var ok bool
	if err := l.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, leaseClass, l.key).Scan(&ok); err != nil {
		l.conn.Close(context.WithoutCancel(ctx))
		return nil, nil, fmt.Errorf("taking the lease of capture %q (pg_try_advisory_lock(%d, %d)): %w", name, leaseClass, l.key, err)
	}
	if ok {
		return l, nil, nil
	}
	holder, err := l.holder(ctx)
	l.conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return nil, nil, err
	}
	return nil, &holder, nil
}

// WaitLease takes the lease of the capture name, waiting while another
// session holds it (until ctx ends).
func WaitLease(ctx context.Context, cfg *Config, name string) (*Lease, error) {
	l, err := openLease(ctx, cfg, name)
	if err != nil {
		return nil, err
	}
	if _, err := l.conn.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`, leaseClass, l.key); err != nil {
		l.conn.Close(context.WithoutCancel(ctx))
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, fmt.Errorf("waiting for the lease of capture %q (pg_advisory_lock(%d, %d)): %w", name, leaseClass, l.key, err)
	}
	return l, nil
}

func openLease(ctx context.Context, cfg *Config, name string) (*Lease, error) {
	cc, err := cfg.ConnConfig(ctx, false)
	if err != nil {
		return nil, err
	}
	cc.RuntimeParams["tcp_keepalives_idle"] = leaseKeepaliveIdle
	cc.RuntimeParams["tcp_keepalives_interval"] = leaseKeepaliveInterval
	cc.RuntimeParams["tcp_keepalives_count"] = leaseKeepaliveCount
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, cfg.connectError(err)
	}
	return &Lease{conn: conn, name: name, key: leaseKey(name)}, nil
}

// holder reads who holds the lock (a zero LeaseHolder if it was released
// in between).
func (l *Lease) holder(ctx context.Context) (LeaseHolder, error) {
	var h LeaseHolder
	err := l.conn.QueryRow(ctx, `
		SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'), a.backend_start
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid`, leaseClass, l.key).
		Scan(&h.PID, &h.Application, &h.Client, &h.Since)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return h, fmt.Errorf("reading the holder of the lease of capture %q from pg_locks: %w", l.name, err)
	}
	return h, nil
}

// Check returns nil while this session still holds the lease, and an error
// wrapping ErrLeaseLost once it does not, or its connection failed.
func (l *Lease) Check(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var held bool
	err := l.conn.QueryRow(ctx, `
		SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
			AND objsubid = 2 AND classid = $1::bigint::oid AND objid = $2::bigint::oid)`, leaseClass, l.key).Scan(&held)
	switch {
	case err != nil:
		return fmt.Errorf("%w: the lease of capture %q: its session on the source failed: %w", ErrLeaseLost, l.name, err)
	case !held:
		return fmt.Errorf("%w: the lease of capture %q is no longer held by this instance's session", ErrLeaseLost, l.name)
	}
	return nil
}

// PID is the server process of the lease's session.
func (l *Lease) PID() uint32 { return l.conn.PgConn().PID() }

// Close ends the lease's session, which releases the lease.
func (l *Lease) Close(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn.Close(ctx)
}

// LeaseState is who holds the lease of a capture name and how many
// standbys wait for it, as pg_locks shows them.
type LeaseState struct {
	Active   *LeaseHolder // nil when no instance holds it
	Standbys int
}

// Lease reads the state of the lease of the capture name.
func (c *Catalog) Lease(ctx context.Context, name string) (LeaseState, error) {
	var st LeaseState
	rows, err := c.conn.Query(ctx, `
		SELECT l.granted, a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'), a.backend_start
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.objsubid = 2
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid`, leaseClass, leaseKey(name))
	if err != nil {
		return st, fmt.Errorf("reading the lease of capture %q from pg_locks: %w", name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var granted bool
		var h LeaseHolder
		if err := rows.Scan(&granted, &h.PID, &h.Application, &h.Client, &h.Since); err != nil {
			return st, fmt.Errorf("reading the lease of capture %q from pg_locks: %w", name, err)
		}
		if granted {
			st.Active = &h
		} else {
			st.Standbys++
		}
	}
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("reading the lease of capture %q from pg_locks: %w", name, err)
	}
	return st, nil
}
