package schema

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/pgkafka/pgkafka/pgsrc/secret"
)

// RegistryConfig is the `schemaRegistry` block of the configuration.
type RegistryConfig struct {
	// URL is the base URL of a Confluent-compatible schema registry REST API.
	URL string `koanf:"url"`
	// Username enables HTTP basic authentication when set.
	Username string `koanf:"username"`
	// Password is the basic-authentication password.
	Password secret.String `koanf:"password"`
	// BearerToken is sent as "Authorization: Bearer <token>" with every
	// request; instead of basic authentication.
	BearerToken secret.String `koanf:"bearerToken"`
	// TokenCommand is the program and its arguments (no shell) whose
	// stdout, trimmed, is the bearer token: run at the first request, and
	// again when the registry answers 401 (the token expired).
	TokenCommand []string `koanf:"tokenCommand"`
	// TLS configures https:// URLs: the CA to trust, a client certificate.
	TLS RegistryTLS `koanf:"tls"`
	// OnIncompatible is what a schema change that is not BACKWARD compatible
	// with its subject's latest version does: "stop" (default) stops the
	// capture with an error naming the table, subject and fields; "register"
	// sets the subject's compatibility to NONE and registers it, with a
	// warning.
	OnIncompatible string `koanf:"onIncompatible"`
	// SubjectNameStrategy names the subjects of a topic's schemas: topic
	// (<topic>-key, <topic>-value; the default), record (the record's full
	// name) or topic_record (<topic>-<full name>), which several shapes on
	// one topic need.
	SubjectNameStrategy string `koanf:"subjectNameStrategy"`
}

// RegistryTLS is schemaRegistry.tls. Files are PEM.
type RegistryTLS struct {
	// CAFile holds the certificates that sign the registry's; default the
	// system's.
	CAFile string `koanf:"caFile"`
	// CertFile and KeyFile are the client certificate of mutual TLS.
	CertFile string `koanf:"certFile"`
	KeyFile  string `koanf:"keyFile"`
	// InsecureSkipVerify accepts any certificate of the registry: for
	// tests only, it lets anyone in between read the traffic.
	InsecureSkipVerify bool `koanf:"insecureSkipVerify"`
}

// DefaultRegistryURL is schemaRegistry.url when unset.
const DefaultRegistryURL = "http://localhost:8081"

// SetDefaults fills the fields left empty with their defaults.
func (c *RegistryConfig) SetDefaults() {
	if c.URL == "" {
		c.URL = DefaultRegistryURL
	}
	if c.OnIncompatible == "" {
		c.OnIncompatible = IncompatibleStop.String()
	}
}

// Validate reports every problem, each prefixed with its key path.
func (c *RegistryConfig) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("schemaRegistry.url: required"))
	} else if u, err := url.Parse(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("schemaRegistry.url: %q is not a URL", redactURL(c.URL)))
	} else if u.Scheme != "http" && u.Scheme != "https" {
		errs = append(errs, fmt.Errorf("schemaRegistry.url: %q: want an http:// or https:// URL", u.Redacted()))
	} else if u.Host == "" {
		errs = append(errs, fmt.Errorf("schemaRegistry.url: %q: no host", u.Redacted()))
	}
	if c.Password != "" && c.Username == "" {
		errs = append(errs, errors.New("schemaRegistry.username: required when schemaRegistry.password is set"))
	}
	switch {
	case c.BearerToken != "" && len(c.TokenCommand) > 0:
		errs = append(errs, errors.New("schemaRegistry.bearerToken: set, and so is schemaRegistry.tokenCommand: keep one source of the token"))
	case c.Username != "" && (c.BearerToken != "" || len(c.TokenCommand) > 0):
		errs = append(errs, errors.New("schemaRegistry.username: set with a bearer token (bearerToken or tokenCommand): a request carries one Authorization, keep basic or bearer"))
	}
	if len(c.TokenCommand) > 0 && c.TokenCommand[0] == "" {
		errs = append(errs, errors.New("schemaRegistry.tokenCommand[0]: empty: the program that prints the token"))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("schemaRegistry.tls: certFile and keyFile go together"))
	}
	if c.TLS != (RegistryTLS{}) && strings.HasPrefix(strings.ToLower(c.URL), "http://") {
		errs = append(errs, fmt.Errorf("schemaRegistry.tls: set, but schemaRegistry.url %q is http://: use https://", redactURL(c.URL)))
	}
	if _, err := ParseSubjectNameStrategy(c.SubjectNameStrategy); err != nil {
		errs = append(errs, fmt.Errorf("schemaRegistry.subjectNameStrategy: %w", err))
	}
	if _, err := ParseOnIncompatible(c.OnIncompatible); err != nil {
		errs = append(errs, fmt.Errorf("schemaRegistry.onIncompatible: %w", err))
	}
	return errors.Join(errs...)
}

// Secrets are the strings of c that no message may hold: the basic-auth
// password, the bearer token and, when URL carries a password, URL's userinfo and that
// password, both as written in the configuration and as net/url writes
// them back (escaped) into the URLs that libraries quote in their errors.
func (c *RegistryConfig) Secrets() []secret.String {
	ss := []secret.String{c.Password, c.BearerToken}
	// As written, even when the URL does not parse: the authority between
	// "://" and the path, up to its last '@'.
	if _, rest, ok := strings.Cut(c.URL, "://"); ok {
		authority, _, _ := strings.Cut(rest, "/")
		authority, _, _ = strings.Cut(authority, "?")
		authority, _, _ = strings.Cut(authority, "#")
		if at := strings.LastIndex(authority, "@"); at >= 0 {
			if _, pw, ok := strings.Cut(authority[:at], ":"); ok && pw != "" {
				ss = append(ss, secret.String(authority[:at]), secret.String(pw))
			}
		}
	}
	if u, err := url.Parse(c.URL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			info := u.User.String()
			_, escaped, _ := strings.Cut(info, ":")
			ss = append(ss, secret.String(info), secret.String(pw), secret.String(escaped))
		}
	}
	return ss
}

// redactURL hides any password in a URL for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// FormatConfig is the `format` block of the configuration. Its zero value
// means every default.
type FormatConfig struct {
	// Envelope is the value shape: "debezium" (default) or "flat".
	Envelope string `koanf:"envelope"`
	// DecimalHandling is how numeric columns with a precision are written:
	// "precise" (default) as Avro bytes with logical type decimal(p,s);
	// "string" as their exact text, like unconstrained numerics.
	DecimalHandling string `koanf:"decimalHandling"`
	// NonFiniteDecimal is what a NaN, Infinity or -Infinity numeric becomes
	// under decimalHandling precise, where Avro decimals have no room for it:
	// "fail" (default) stops with an error naming the table and column;
	// "null" writes null in nullable columns and array elements and still
	// fails in non-nullable and key columns.
	NonFiniteDecimal string `koanf:"nonFiniteDecimal"`
	// Tombstones says whether a delete's record is followed by a tombstone
	// (the key with a null value), which compaction needs to remove the
	// key (Debezium's tombstones.on.delete); nil (the key absent) is true.
	Tombstones *bool `koanf:"tombstones"`
	// TransactionMetadata writes a BEGIN and an END record per database
	// transaction to <topicPrefix>.transaction and fills the transaction
	// block of change records (Debezium's provide.transaction.metadata).
	TransactionMetadata bool `koanf:"transactionMetadata"`
	// Encoding is the records' wire form: "avro" (default, Confluent-framed,
	// schemas in the registry) or "json" (Kafka Connect JsonConverter form,
	// no registry; see JSONForm).
	Encoding string `koanf:"encoding"`
	// JSONSchemas says whether JSON records are {"schema", "payload"}
	// (Connect's schemas.enable) or the payload alone; nil (absent) is true.
	JSONSchemas *bool `koanf:"jsonSchemas"`
	// HashSalt is the salt of the columns bindings[].columns.hash hashes
	// (schema.Policy): required when any is; a secret.
	HashSalt secret.String `koanf:"hashSalt"`
}

// TombstonesOn reports whether deletes are followed by tombstones.
func (c *FormatConfig) TombstonesOn() bool { return c.Tombstones == nil || *c.Tombstones }

// DecimalHandling selects how numeric(p,s) columns are written.
type DecimalHandling uint8

const (
	// DecimalPrecise writes numeric(p,s) as bytes with logical type decimal.
	DecimalPrecise DecimalHandling = iota
	// DecimalString writes every numeric as its text form.
	DecimalString
)

// String returns the configuration spelling.
func (d DecimalHandling) String() string {
	switch d {
	case DecimalPrecise:
		return "precise"
	case DecimalString:
		return "string"
	}
	return fmt.Sprintf("DecimalHandling(%d)", uint8(d))
}

// ParseDecimalHandling parses "precise" or "string"; "" is precise.
func ParseDecimalHandling(s string) (DecimalHandling, error) {
	switch s {
	case "", "precise":
		return DecimalPrecise, nil
	case "string":
		return DecimalString, nil
	}
	return 0, fmt.Errorf("unknown decimal handling %q: want precise or string", s)
}

// NonFiniteDecimal selects what a NaN or ±Infinity numeric becomes in a
// decimal column.
type NonFiniteDecimal uint8

const (
	// NonFiniteFail makes the value an error naming the table and column.
	NonFiniteFail NonFiniteDecimal = iota
	// NonFiniteNull writes null where the Avro type allows it.
	NonFiniteNull
)

// String returns the configuration spelling.
func (n NonFiniteDecimal) String() string {
	switch n {
	case NonFiniteFail:
		return "fail"
	case NonFiniteNull:
		return "null"
	}
	return fmt.Sprintf("NonFiniteDecimal(%d)", uint8(n))
}

// ParseNonFiniteDecimal parses "fail" or "null"; "" is fail.
func ParseNonFiniteDecimal(s string) (NonFiniteDecimal, error) {
	switch s {
	case "", "fail":
		return NonFiniteFail, nil
	case "null":
		return NonFiniteNull, nil
	}
	return 0, fmt.Errorf("unknown non-finite decimal policy %q: want fail or null", s)
}

// SetDefaults fills the fields left empty with their defaults.
func (c *FormatConfig) SetDefaults() {
	if c.Envelope == "" {
		c.Envelope = EnvelopeDebezium.String()
	}
	if c.DecimalHandling == "" {
		c.DecimalHandling = DecimalPrecise.String()
	}
	if c.NonFiniteDecimal == "" {
		c.NonFiniteDecimal = NonFiniteFail.String()
	}
	if c.Encoding == "" {
		c.Encoding = EncodingAvro.String()
	}
}

// Validate reports every problem, each prefixed with its key path.
func (c *FormatConfig) Validate() error {
	_, err := c.parse()
	return err
}

// ParsedEnvelope returns Envelope parsed; call after Validate.
func (c *FormatConfig) ParsedEnvelope() (Envelope, error) { return ParseEnvelope(c.Envelope) }

// format is a FormatConfig parsed: what a Codec needs.
type format struct {
	envelope  Envelope
	decimal   DecimalHandling
	nonFinite NonFiniteDecimal
	encoding  Encoding
	schemas   bool // JSON records carry their schema
}

// parse parses every key, "" meaning the default, and reports every problem
// with its key path.
func (c *FormatConfig) parse() (format, error) {
	var f format
	var errs []error
	var err error
	env := c.Envelope
	if env == "" {
		env = EnvelopeDebezium.String()
	}
	if f.envelope, err = ParseEnvelope(env); err != nil {
		errs = append(errs, fmt.Errorf("format.envelope: %w", err))
	}
	if f.decimal, err = ParseDecimalHandling(c.DecimalHandling); err != nil {
		errs = append(errs, fmt.Errorf("format.decimalHandling: %w", err))
	}
	if f.nonFinite, err = ParseNonFiniteDecimal(c.NonFiniteDecimal); err != nil {
		errs = append(errs, fmt.Errorf("format.nonFiniteDecimal: %w", err))
	}
	if f.encoding, err = ParseEncoding(c.Encoding); err != nil {
		errs = append(errs, fmt.Errorf("format.encoding: %w", err))
	}
	f.schemas = c.JSONSchemasOn()
	return f, errors.Join(errs...)
}
