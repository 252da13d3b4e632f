package pgsrc

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pgkafka/pgkafka/pgsrc/secret"
	"github.com/pgkafka/pgkafka/pgsrc/tunnel"
)

// Config is the `source` block of the configuration. Its keys, meanings and
// defaults are those of the Estuary PostgreSQL capture specification.
type Config struct {
	// Address is the host or host:port of the database. Required.
	Address string `koanf:"address"`
	// Database is the logical database to capture from.
	Database string `koanf:"database"`
	// User is the role to authenticate as.
	User string `koanf:"user"`
	// Password is the role's password. Required with auth: password.
	Password secret.String `koanf:"password"`
	// Auth is how connections authenticate: password (the default, with
	// Password), aws_iam (an RDS IAM token built for each new connection,
	// for AWSRegion) or command (what AuthCommand prints, run for each new
	// connection).
	Auth string `koanf:"auth"`
	// AuthCommand is the program and its arguments (no shell) that auth:
	// command runs for each new connection; what it prints on stdout,
	// trimmed, is the password.
	AuthCommand []string `koanf:"authCommand"`
	// AWSRegion is the AWS region of the database, for auth: aws_iam.
	AWSRegion string `koanf:"awsRegion"`
	// Advanced holds the options most users never change.
	Advanced Advanced `koanf:"advanced"`
	// NetworkTunnel is the optional SSH tunnel every connection to the
	// database goes through.
	NetworkTunnel NetworkTunnel `koanf:"networkTunnel"`
}

// NetworkTunnel is the `source.networkTunnel` block.
type NetworkTunnel struct {
	// SSHForwarding reaches the database through an SSH server (which
	// resolves and dials source.address), when any of its keys is set.
	SSHForwarding tunnel.Config `koanf:"sshForwarding"`
}

// sshForwardingKey is the key path of source.networkTunnel.sshForwarding.
const sshForwardingKey = "source.networkTunnel.sshForwarding"

// Secrets are the strings of the block that no log line or error may
// hold: source.password and the tunnel's private key and passphrase.
func (c *Config) Secrets() []secret.String {
	t := &c.NetworkTunnel.SSHForwarding
	return []secret.String{c.Password, t.PrivateKey, t.PrivateKeyPassphrase}
}

// Advanced is the `source.advanced` block.
type Advanced struct {
	// BackfillChunkSize is the number of rows read by one backfill query.
	BackfillChunkSize int `koanf:"backfill_chunk_size"`
	// BackfillParallelism is how many tables are backfilled at once, each
	// on a connection of its own.
	BackfillParallelism int `koanf:"backfill_parallelism"`
	// PublicationName is the publication to replicate from: any name
	// PostgreSQL takes (upper case, spaces and quotes kept as written).
	PublicationName string `koanf:"publicationName"`
	// SlotName is the replication slot to replicate from: lower-case
	// letters, digits and _, as PostgreSQL requires of slot names.
	SlotName string `koanf:"slotName"`
	// WatermarksTable is the <schema>.<table> used for watermark writes,
	// each part as written (neither may hold a dot).
	WatermarksTable string `koanf:"watermarksTable"`
	// SkipBackfills is a comma-separated list of <schema>.<table> not to backfill.
	SkipBackfills string `koanf:"skip_backfills"`
	// BackfillMode says which tables are backfilled and what follows
	// (Debezium's snapshot.mode): "initial" (the tables new to the
	// checkpoint, then stream), "never" (none: every table streams from
	// the slot's start, as if listed in skip_backfills; requests of
	// `pgkafka backfill` are still honoured) or "initial_only" (backfill
	// the tables that need it, then stop).
	BackfillMode string `koanf:"backfillMode"`
	// OnSlotLost says what `pgkafka run` does when the slot is gone or
	// invalidated (wal_status lost) while a checkpoint exists: "fail"
	// (stop, saying how to start over) or "rebackfill" (create a new slot,
	// backfill every table again, and at the end of each table's backfill
	// remove from its topic the keys the table no longer has).
	OnSlotLost string `koanf:"onSlotLost"`
	// SSLMode overrides libpq's sslmode: disable, allow, prefer, require,
	// verify-ca or verify-full.
	SSLMode string `koanf:"sslmode"`
	// HeartbeatInterval is how often a row is written to the watermarks
	// table, so the slot advances even when only other databases of the
	// server write. 0 disables heartbeats; nil (the key absent) is
	// DefaultHeartbeatInterval. A pointer, so that SetDefaults tells an
	// explicit 0 from a key never set; read it with Heartbeat.
	HeartbeatInterval *time.Duration `koanf:"heartbeatInterval"`
	// PgoutputBinary chooses pgoutput's binary mode (PostgreSQL 14+), where
	// the server sends each value in its type's send format: "on", "off",
	// or "auto" (on when every published column has a type pgkafka decodes
	// in binary and every key column one it renders as text).
	PgoutputBinary string `koanf:"pgoutputBinary"`
	// MaxSlotLagBytes is the WAL the server may keep for the slot (from
	// its restart LSN to the current position) before `pgkafka run` warns,
	// at each check of the slot; 0 disables the warning. The lag is also
	// in metrics (pgkafka_slot_retained_bytes).
	MaxSlotLagBytes int64 `koanf:"maxSlotLagBytes"`
}

// DefaultHeartbeatInterval is source.advanced.heartbeatInterval when the
// key is absent.
const DefaultHeartbeatInterval = time.Minute

// Heartbeat is how often heartbeats are written: the configured interval,
// DefaultHeartbeatInterval when none is, 0 when they are disabled.
func (a *Advanced) Heartbeat() time.Duration {
	if a.HeartbeatInterval == nil {
		return DefaultHeartbeatInterval
	}
	return *a.HeartbeatInterval
}

// The values of source.advanced.pgoutputBinary.
const (
	BinaryOff  = "off"
	BinaryOn   = "on"
	BinaryAuto = "auto"
)

// The values of source.advanced.backfillMode.
const (
	BackfillInitial     = "initial"
	BackfillNever       = "never"
	BackfillInitialOnly = "initial_only"
)

// The values of source.advanced.onSlotLost.
const (
	SlotLostFail       = "fail"
	SlotLostRebackfill = "rebackfill"
)

// SetDefaults fills the fields left empty with the specification's defaults.
// A zero HeartbeatInterval is left as it is (heartbeats off): only a nil
// one is empty.
func (c *Config) SetDefaults() {
	if c.Database == "" {
		c.Database = "postgres"
	}
	if c.User == "" {
		c.User = "flow_capture"
	}
	a := &c.Advanced
	if c.Auth == "" {
		c.Auth = AuthPassword
	}
	if a.BackfillChunkSize == 0 {
		a.BackfillChunkSize = 4096
	}
	if a.BackfillParallelism == 0 {
		a.BackfillParallelism = 2
	}
	if a.PublicationName == "" {
		a.PublicationName = "flow_publication"
	}
	if a.SlotName == "" {
		a.SlotName = "flow_slot"
	}
	if a.WatermarksTable == "" {
		a.WatermarksTable = "public.flow_watermarks"
	}
	if a.HeartbeatInterval == nil {
		// A value of its own: a loader decodes the user's value into it.
		d := DefaultHeartbeatInterval
		a.HeartbeatInterval = &d
	}
	if a.PgoutputBinary == "" {
		a.PgoutputBinary = BinaryOff
	}
	if a.BackfillMode == "" {
		a.BackfillMode = BackfillInitial
	}
	if a.OnSlotLost == "" {
		a.OnSlotLost = SlotLostFail
	}
}

var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// Validate reports every problem of the block at once, each prefixed with
// its key path.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("source.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Address == "" {
		bad("address", "required: the host or host:port of the database")
	} else if strings.Contains(c.Address, "/") {
		bad("address", "%q is not host or host:port", c.Address)
	} else if _, port, err := net.SplitHostPort(c.Address); err == nil && port == "" {
		bad("address", "%q has an empty port", c.Address)
	}
	if c.Database == "" {
		bad("database", "must not be empty")
	}
	if c.User == "" {
		bad("user", "must not be empty")
	}
	switch c.Auth {
	case AuthPassword, "": // "": SetDefaults not called
		if c.Password == "" {
			bad("password", "required (set it in the file or in PGKAFKA_SOURCE__PASSWORD)")
		}
	case AuthAWSIAM, AuthCommand:
		if c.Password != "" {
			bad("password", "set, but source.auth %s makes the password of each connection: remove one of them", c.Auth)
		}
	default:
		bad("auth", "%q is not one of %s, %s, %s", c.Auth, AuthPassword, AuthAWSIAM, AuthCommand)
	}
	switch {
	case c.Auth == AuthCommand && (len(c.AuthCommand) == 0 || c.AuthCommand[0] == ""):
		bad("authCommand", "required with source.auth command: the program and its arguments that print the password, e.g. [gcloud, sql, generate-login-token]")
	case c.Auth != AuthCommand && len(c.AuthCommand) > 0:
		bad("authCommand", "set, but source.auth is %q: set source.auth to command, or remove it", c.Auth)
	}
	switch {
	case c.Auth == AuthAWSIAM && c.AWSRegion == "":
		bad("awsRegion", "required with source.auth aws_iam: the AWS region of the database, e.g. us-east-1")
	case c.Auth != AuthAWSIAM && c.AWSRegion != "":
		bad("awsRegion", "set, but source.auth is %q: set source.auth to aws_iam, or remove it", c.Auth)
	}
	if err := c.NetworkTunnel.SSHForwarding.Validate(sshForwardingKey); err != nil {
		errs = append(errs, err)
	}
	a := c.Advanced
	if a.BackfillChunkSize < 1 {
		bad("advanced.backfill_chunk_size", "must be at least 1, got %d", a.BackfillChunkSize)
	}
	if a.BackfillParallelism < 1 || a.BackfillParallelism > 64 {
		bad("advanced.backfill_parallelism", "must be between 1 and 64, got %d", a.BackfillParallelism)
	}
	if err := checkName(a.PublicationName); err != nil {
		bad("advanced.publicationName", "%v", err)
	}
	if !validSlotName(a.SlotName) {
		bad("advanced.slotName", "%q is not a valid slot name (lower-case letters, digits and _, at most 63 bytes)", a.SlotName)
	}
	if _, err := ParseTableRef(a.WatermarksTable); err != nil {
		bad("advanced.watermarksTable", "%v", err)
	}
	for _, t := range c.SkipBackfillTables() {
		if _, _, err := SplitTableName(t); err != nil {
			bad("advanced.skip_backfills", "%v", err)
		}
	}
	if a.MaxSlotLagBytes < 0 {
		bad("advanced.maxSlotLagBytes", "%d is negative (0 disables the warning)", a.MaxSlotLagBytes)
	}
	if d := a.Heartbeat(); d < 0 {
		bad("advanced.heartbeatInterval", "%s is negative (0s disables heartbeats)", d)
	}
	switch a.PgoutputBinary {
	case BinaryOff, BinaryOn, BinaryAuto:
	default:
		bad("advanced.pgoutputBinary", "%q is not one of auto, on, off", a.PgoutputBinary)
	}
	switch a.BackfillMode {
	case BackfillInitial, BackfillNever, BackfillInitialOnly, "": // "": SetDefaults not called
	default:
		bad("advanced.backfillMode", "%q is not one of %s, %s, %s", a.BackfillMode, BackfillInitial, BackfillNever, BackfillInitialOnly)
	}
	switch a.OnSlotLost {
	case SlotLostFail, SlotLostRebackfill, "": // "": SetDefaults not called
	default:
		bad("advanced.onSlotLost", "%q is not one of %s, %s", a.OnSlotLost, SlotLostFail, SlotLostRebackfill)
	}
	if a.SSLMode != "" && !slices.Contains(sslModes, a.SSLMode) {
		bad("advanced.sslmode", "%q is not one of %s", a.SSLMode, strings.Join(sslModes, ", "))
	}
	return errors.Join(errs...)
}

// Watermarks is the watermarks table: source.advanced.watermarksTable,
// parsed. Validate rejects a value that does not parse (and SetDefaults
// fills an empty one with one that does), so callers handle no error:
// calling Watermarks on a Config that Validate rejects for that key is a
// programmer error, and it panics.
func (c *Config) Watermarks() TableRef {
	t, err := ParseTableRef(c.Advanced.WatermarksTable)
	if err != nil {
		panic("pgsrc: Config.Watermarks on a configuration Validate rejects: source.advanced.watermarksTable: " + err.Error())
	}
	return t
}

// SkipBackfillTables returns the tables of skip_backfills, trimmed.
func (c *Config) SkipBackfillTables() []string {
	var out []string
	for _, t := range strings.Split(c.Advanced.SkipBackfills, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// SplitTableName splits "<schema>.<table>" into its two parts, each a
// name as written (case, spaces and quotes kept; no dot).
func SplitTableName(name string) (schema, table string, err error) {
	schema, table, ok := strings.Cut(name, ".")
	if !ok || schema == "" || table == "" || strings.Contains(table, ".") {
		return "", "", fmt.Errorf("%q must be fully qualified as <schema>.<table>", name)
	}
	for _, part := range []string{schema, table} {
		if err := checkName(part); err != nil {
			return "", "", fmt.Errorf("%q: %w", name, err)
		}
	}
	return schema, table, nil
}

// maxNameBytes is the longest name PostgreSQL keeps (NAMEDATALEN - 1): it
// truncates longer ones, which the catalog then knows under another name.
const maxNameBytes = 63

// checkName accepts what PostgreSQL takes as a (quoted) identifier: 1 to
// 63 bytes of UTF-8 without NUL. Case, spaces and quotes are kept: pgkafka
// quotes every name it sends.
func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("must not be empty")
	case len(s) > maxNameBytes:
		return fmt.Errorf("%q is %d bytes long: PostgreSQL names hold at most %d", s, len(s), maxNameBytes)
	case !utf8.ValidString(s) || strings.ContainsRune(s, 0):
		return fmt.Errorf("%q is not a PostgreSQL name: UTF-8 text without NUL", s)
	}
	return nil
}

func validSlotName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
