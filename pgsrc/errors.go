package pgsrc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgkafka/pgkafka/pgsrc/tunnel"
)

// Sentinels. Branch on them with errors.Is.
var (
	// ErrWALLevel: the server's wal_level is not logical.
	ErrWALLevel = errors.New("wal_level is not logical")
	// ErrNoReplication: the role has neither REPLICATION nor rds_replication.
	ErrNoReplication = errors.New("role may not replicate")
	// ErrTableNotFound: a bound table does not exist or is not readable.
	ErrTableNotFound = errors.New("table not found")
	// ErrSlotInvalidated: the replication slot lost WAL it needed
	// (wal_status = 'lost'); it must be dropped and the tables backfilled anew.
	ErrSlotInvalidated = errors.New("replication slot invalidated")
	// ErrSlotMismatch: a slot of the configured name exists for another
	// plugin or database.
	ErrSlotMismatch = errors.New("replication slot belongs to another plugin or database")
	// ErrSlotActive: another connection streams from the slot (a previous
	// instance not yet gone, or another consumer).
	ErrSlotActive = errors.New("replication slot in use")
	// ErrNotPermitted: a setup step needs a privilege the role lacks.
	ErrNotPermitted = errors.New("not permitted")
)

// SQLSTATE codes this package branches on.
const (
	codeInvalidPassword       = "28P01"
	codeInvalidAuthorization  = "28000"
	codeInvalidCatalogName    = "3D000"
	codeTooManyConnections    = "53300"
	codeObjectInUse           = "55006"
	codeInsufficientPrivilege = "42501"
	codeDuplicateObject       = "42710"
	codeDuplicateTable        = "42P07"
	codeUniqueViolation       = "23505"
	codeInvalidSchemaName     = "3F000"
	codeAdminShutdown         = "57P01"
	codeCrashShutdown         = "57P02"
	codeCannotConnectNow      = "57P03"
	codeConfigLimitExceeded   = "53400"
)

// PrerequisiteError says which prerequisite is not met and the exact SQL or
// setting that meets it.
type PrerequisiteError struct {
	// Check names the prerequisite ("wal_level", "replication", "publication", ...).
	Check string
	// Problem says what is wrong.
	Problem string
	// Fix is the SQL or setting that fixes it, to be run by a superuser or
	// the owner of the objects involved.
	Fix string
	// Err is the sentinel or the server error behind the problem, if any.
	Err error
}

func (e *PrerequisiteError) Error() string {
	return fmt.Sprintf("prerequisite %s: %s; to fix it, run as a superuser or the owner:\n%s",
		e.Check, e.Problem, indent(e.Fix))
}

// Unwrap returns the sentinel or server error.
func (e *PrerequisiteError) Unwrap() error { return e.Err }

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n    ")
}

// TableNotFoundError: a table asked for does not exist, is not a table, or
// is not readable by the user.
type TableNotFoundError struct {
	Table TableRef
	// User is the role that looked, when known.
	User string
}

func (e *TableNotFoundError) Error() string {
	user := e.User
	if user == "" {
		user = "<user>"
	}
	return fmt.Sprintf("table %s does not exist or is not readable: check the binding (resource.namespace %q, resource.stream %q) or run %s",
		e.Table, e.Table.Schema, e.Table.Name, GrantSelectSQL(e.Table, user))
}

// Is makes errors.Is(err, ErrTableNotFound) hold.
func (e *TableNotFoundError) Is(target error) bool { return target == ErrTableNotFound }

// redactedError carries a message of our own, free of secrets, over the
// original error, which stays reachable with errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// connectError explains a failed connection in terms of the configuration
// keys to change. The message never holds the password.
func (c *Config) connectError(err error) error {
	at := c.Address
	var msg string
	var pgErr *pgconn.PgError
	var netErr net.Error
	var dnsErr *net.DNSError
	var tunnelErr *tunnel.Error
	switch {
	case errors.As(err, &tunnelErr):
		msg = fmt.Sprintf("cannot reach PostgreSQL at %s (source.address) through the SSH tunnel: %s", at, tunnelErr.Error())
	case errors.As(err, &pgErr):
		switch pgErr.Code {
		case codeInvalidPassword:
			msg = fmt.Sprintf("password authentication failed for user %q at %s: %s", c.User, at, c.passwordAdvice())
		case codeInvalidAuthorization:
			msg = fmt.Sprintf("PostgreSQL at %s refused user %q on database %q: %s: add a pg_hba.conf line for this host, user and database, or run ALTER ROLE %s WITH LOGIN;",
				at, c.User, c.Database, pgErr.Message, quoteIdent(c.User))
		case codeInvalidCatalogName:
			msg = fmt.Sprintf("database %q does not exist at %s: check source.database", c.Database, at)
		case codeTooManyConnections:
			msg = fmt.Sprintf("PostgreSQL at %s has no connection left for user %q: %s: close idle sessions or raise max_connections", at, c.User, pgErr.Message)
		case codeCannotConnectNow, codeAdminShutdown:
			msg = fmt.Sprintf("PostgreSQL at %s is not accepting connections: %s", at, pgErr.Message)
		default:
			msg = fmt.Sprintf("connecting to PostgreSQL at %s as user %q, database %q: %s (SQLSTATE %s)", at, c.User, c.Database, pgErr.Message, pgErr.Code)
		}
	case errors.As(err, &dnsErr):
		msg = fmt.Sprintf("cannot reach PostgreSQL at %s (source.address): %s", at, dnsErr.Error())
	case errors.As(err, &netErr), errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err):
		detail := err.Error()
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			detail = opErr.Error()
		} else if netErr != nil && netErr.Timeout() || pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) {
			detail = "timed out"
		}
		msg = fmt.Sprintf("cannot reach PostgreSQL at %s (source.address): %s", at, detail)
	default:
		msg = fmt.Sprintf("connecting to PostgreSQL at %s as user %q, database %q: %s", at, c.User, c.Database, err.Error())
	}
	return &redactedError{msg: c.redact(msg), err: err}
}

// redact removes the password from a message, should a server or driver
// ever echo it.
func (c *Config) redact(s string) string {
	if len(c.Password) < 3 {
		return s
	}
	return strings.ReplaceAll(s, string(c.Password), c.Password.String())
}

// IsUndefinedTable reports an error of PostgreSQL's saying a table named
// in a statement does not exist (it was dropped, or renamed).
func IsUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == codeUndefinedTable
}

// IsRetryable reports whether err is transient: a lost or refused
// connection, a timeout, a server shutting down or starting up, too many
// connections. Callers must check their own ctx first: a cancelled ctx is
// not retryable, but a deadline may look like a timeout.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, ErrSlotInvalidated) || errors.Is(err, ErrSlotMismatch) {
		return false
	}
	// A tunnel whose configuration is at fault (a refused key or host
	// key) fails the same way at each attempt; a lost one is retried.
	var tunnelErr *tunnel.Error
	if errors.As(err, &tunnelErr) {
		return tunnelErr.Retryable()
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case codeAdminShutdown, codeCrashShutdown, codeCannotConnectNow, codeTooManyConnections,
			codeObjectInUse: // the slot is still held by a previous instance

			return true
		}
		return strings.HasPrefix(pgErr.Code, "08") // connection_exception
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var connectErr *pgconn.ConnectError
	return errors.As(err, &connectErr)
}

// isCode reports whether err is a server error with one of the codes.
func isCode(err error, codes ...string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	for _, c := range codes {
		if pgErr.Code == c {
			return true
		}
	}
	return false
}

// passwordAdvice says what to check when the server refused the password.
func (c *Config) passwordAdvice() string {
	switch c.Auth {
	case AuthCommand:
		return "check what source.authCommand prints (the password or token of this user, on stdout) and source.user"
	case AuthAWSIAM:
		return "check that the role has rds_iam (GRANT rds_iam TO " + quoteIdent(c.User) + "), that the AWS identity may rds-db:connect as it, source.awsRegion and source.user"
	default:
		return "check source.password (and source.user)"
	}
}
