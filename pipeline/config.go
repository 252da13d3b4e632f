package pipeline

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pgkafka/pgkafka/pgsrc"
	"github.com/pgkafka/pgkafka/pgsrc/secret"
	"github.com/pgkafka/pgkafka/schema"
)

// Config is the whole configuration file (DESIGN §1 Configuration).
type Config struct {
	// Name is the connector's name: transactional id, offsets key and
	// source.name in records. Required.
	Name string `koanf:"name"`
	// Source is the PostgreSQL side, with the Estuary capture's keys.
	Source pgsrc.Config `koanf:"source"`
	// Bindings are the captured tables. Empty: every table of the
	// publication, or every readable table when the publication is missing.
	Bindings []Binding `koanf:"bindings"`
	// Kafka is the destination cluster.
	Kafka KafkaConfig `koanf:"kafka"`
	// SchemaRegistry is the Confluent-compatible registry.
	SchemaRegistry schema.RegistryConfig `koanf:"schemaRegistry"`
	// Format is the record format.
	Format schema.FormatConfig `koanf:"format"`
	// ShutdownTimeout bounds a soft stop (SIGTERM): past it, the open
	// Kafka transaction is aborted and pgkafka exits.
	ShutdownTimeout time.Duration `koanf:"shutdownTimeout"`
	// Metrics serves Prometheus metrics.
	Metrics MetricsConfig `koanf:"metrics"`
	// Messages is the capture of logical decoding messages.
	Messages MessagesConfig `koanf:"messages"`
	// Toast configures the TOAST reconciler (toast.go).
	Toast ToastConfig `koanf:"toast"`
}

// Secrets are the strings of c that no log line or error may hold:
// the source's (pgsrc.Config.Secrets: its password, the SSH tunnel's
// private key and passphrase), kafka.sasl.password,
// kafka.sasl.oauth.clientSecret, the schema registry's
// (schema.RegistryConfig.Secrets) and format.hashSalt.
func (c *Config) Secrets() []secret.String {
	return append(append(c.Source.Secrets(), c.Kafka.SASL.Password, c.Kafka.SASL.OAuth.ClientSecret, c.Format.HashSalt), c.SchemaRegistry.Secrets()...)
}

// Redactor removes c's Secrets from text.
func (c *Config) Redactor() *secret.Redactor { return secret.NewRedactor(c.Secrets()...) }

// MessagesConfig is the `messages` block: logical decoding messages
// (pg_logical_emit_message, PostgreSQL 14+) written to the topic
// <kafka.topicPrefix>.message in Debezium's form.
type MessagesConfig struct {
	// Enabled captures them; default true (nil before SetDefaults). On a
	// server older than 14 it has no effect.
	Enabled *bool `koanf:"enabled"`
	// PrefixIncludeList, when set, captures only the messages whose prefix
	// one of these regular expressions matches in full (Debezium's
	// message.prefix.include.list).
	PrefixIncludeList []string `koanf:"prefixIncludeList"`
	// PrefixExcludeList leaves out the messages whose prefix one of these
	// regular expressions matches in full (message.prefix.exclude.list).
	// Only one of the two lists may be set.
	PrefixExcludeList []string `koanf:"prefixExcludeList"`
}

// On reports whether messages are captured.
func (m *MessagesConfig) On() bool { return m.Enabled == nil || *m.Enabled }

// prefixRegexps compiles the prefix list at key; each expression must
// match a whole prefix.
func prefixRegexps(key string, list []string) ([]*regexp.Regexp, error) {
	out := make([]*regexp.Regexp, 0, len(list))
	var errs []error
	for i, expr := range list {
		re, err := regexp.Compile(`^(?:` + expr + `)$`)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %q is not a regular expression (RE2 syntax, matched against the whole prefix): %v", key, i, expr, err))
			continue
		}
		out = append(out, re)
	}
	return out, errors.Join(errs...)
}

// ToastConfig is the `toast` block: how unchanged TOASTed values are filled.
// It is not under source.advanced, which holds the Estuary capture's keys
// and is pgsrc's: the reconciler is the pipeline's.
type ToastConfig struct {
	// CacheBytes bounds the cache of the last large value seen per table,
	// key and column (least recently used out first); 0 disables it, and
	// every unchanged value not in the old tuple is read from the database.
	CacheBytes int64 `koanf:"cacheBytes"`
	// Unavailable is the policy for an unchanged value that no path
	// recovers (the row is gone from the database) in a column whose type
	// cannot carry Debezium's marker: "fail" stops the capture with the
	// table and column; "null" writes null in nullable columns (and still
	// fails in the others). String, bytea, arrays of those and hstore carry
	// the marker under both.
	Unavailable string `koanf:"unavailable"`
}

// DefaultToastCacheBytes is toast.cacheBytes's default: a quarter of the
// 128 MB the process is meant to stay under.
const DefaultToastCacheBytes = 32 << 20

// MetricsConfig is the `metrics` block.
type MetricsConfig struct {
	// Address is where `pgkafka run` serves /metrics (Prometheus text
	// format) and /healthz, host:port; empty serves nothing.
	Address string `koanf:"address"`
	// Pprof also serves Go's profiles on /debug/pprof/ at Address (CPU,
	// heap, goroutines, traces): for finding where a capture spends its
	// time. Off by default; the profiles show no values, but whoever
	// reaches the address may take them.
	Pprof bool `koanf:"pprof"`
}

// Binding is one captured table.
type Binding struct {
	Resource Resource `koanf:"resource"`
	// Target is the Kafka topic; default <kafka.topicPrefix>.<namespace>.<stream>.
	Target string `koanf:"target"`
	// Key are the columns of the records' Kafka key (and partitioning),
	// in place of the table's primary key (keys.go); empty: the table's.
	Key []string `koanf:"key"`
	// Columns are the binding's column policies (columns.go): columns
	// excluded, hashed, masked or truncated.
	Columns ColumnPolicies `koanf:"columns"`
	// Outbox makes the table an outbox (outbox.go): its inserts are
	// events routed by a column, not change records.
	Outbox *OutboxConfig `koanf:"outbox"`
}

// Resource names the table of a binding.
type Resource struct {
	Namespace string `koanf:"namespace"`
	Stream    string `koanf:"stream"`
	// SyncMode must be "incremental" (the default).
	SyncMode string `koanf:"syncMode"`
}

// KafkaConfig is the `kafka` block.
type KafkaConfig struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string `koanf:"brokers"`
	// TopicPrefix prefixes default topic names and Avro namespaces; default: name.
	TopicPrefix string `koanf:"topicPrefix"`
	// OffsetsTopic is the compacted topic of checkpoints.
	OffsetsTopic string `koanf:"offsetsTopic"`
	// ClientID is the Kafka client id; default "pgkafka-<name>".
	ClientID string `koanf:"clientId"`
	// Compression is none, gzip, snappy, lz4 or zstd.
	Compression string `koanf:"compression"`
	// Linger is how long the producer waits to fill a batch.
	Linger time.Duration `koanf:"linger"`
	// TransactionWindow is how long at most a Kafka transaction gathers
	// PostgreSQL transactions before it commits (it commits only between
	// two, and sooner when no more wait).
	TransactionWindow time.Duration `koanf:"transactionWindow"`
	// MaxTransactionRecords caps the records of one Kafka transaction: a
	// PostgreSQL transaction larger than that is split across several, the
	// checkpoint recording how far into it they are.
	MaxTransactionRecords int `koanf:"maxTransactionRecords"`
	// TransactionTimeout is the broker-side timeout of a Kafka transaction.
	TransactionTimeout time.Duration `koanf:"transactionTimeout"`
	// MaxRecordBytes is the largest record (key and value) pgkafka
	// produces; the producer's batches are sized to hold one. Keep it at
	// or below the broker's message.max.bytes and the topics'
	// max.message.bytes.
	MaxRecordBytes int `koanf:"maxRecordBytes"`
	// OversizedRecords is what a record larger than MaxRecordBytes does:
	// "fail" stops the capture naming its table, key and LSN; "skip" drops
	// it, logged and counted; "dlq" writes in its place a small record
	// naming them to DLQTopic.
	OversizedRecords string `koanf:"oversizedRecords"`
	// DLQTopic is the dead-letter topic of oversizedRecords: dlq; default
	// <topicPrefix>.dlq.
	DLQTopic string `koanf:"dlqTopic"`
	// Topics configures the topics pgkafka creates.
	Topics TopicsConfig `koanf:"topics"`
	// TopicRoutes send the records of the tables a regular expression
	// matches to one topic (routes.go).
	TopicRoutes []TopicRoute `koanf:"topicRoutes"`
	// Headers are the Kafka headers records carry (headers.go): any of op,
	// table, lsn, txId, commitTime; none by default.
	Headers []string `koanf:"headers"`
	// TLS enables TLS to the brokers.
	TLS TLSConfig `koanf:"tls"`
	// SASL authenticates to the brokers.
	SASL SASLConfig `koanf:"sasl"`
}

// TopicsConfig is applied to the topics pgkafka creates (never to existing ones).
type TopicsConfig struct {
	Partitions int32 `koanf:"partitions"`
	// ReplicationFactor -1 takes the broker's default.
	ReplicationFactor int16             `koanf:"replicationFactor"`
	Config            map[string]string `koanf:"config"`
}

// TLSConfig enables TLS. Files are PEM.
type TLSConfig struct {
	Enabled            bool   `koanf:"enabled"`
	CAFile             string `koanf:"caFile"`
	CertFile           string `koanf:"certFile"`
	KeyFile            string `koanf:"keyFile"`
	InsecureSkipVerify bool   `koanf:"insecureSkipVerify"`
}

// SASL mechanisms, the values of kafka.sasl.mechanism.
const (
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
	// SASLOAuthBearer sends a token that TokenCommand prints or that an
	// OAuth 2.0 client-credentials endpoint (OAuth) grants.
	SASLOAuthBearer = "oauthbearer"
	// SASLAWSMSKIAM signs each connection with AWS credentials from the
	// AWS SDK's default chain (Amazon MSK's IAM access control).
	SASLAWSMSKIAM = "aws_msk_iam"
)

// SASLConfig authenticates to the brokers: PLAIN or SCRAM with Username
// and Password, OAUTHBEARER with a token (TokenCommand or OAuth), or
// AWS_MSK_IAM.
type SASLConfig struct {
	// Mechanism is plain, scram-sha-256, scram-sha-512, oauthbearer or
	// aws_msk_iam; empty disables SASL.
	Mechanism string `koanf:"mechanism"`
	// Username and Password are those of plain and SCRAM.
	Username string        `koanf:"username"`
	Password secret.String `koanf:"password"`
	// TokenCommand is, for oauthbearer, the program and its arguments (no
	// shell) run for each new broker connection (and re-authentication):
	// what it prints on stdout, trimmed, is the token.
	TokenCommand []string `koanf:"tokenCommand"`
	// OAuth is, for oauthbearer, the OAuth 2.0 client-credentials grant
	// whose token is sent; one of TokenCommand and OAuth.
	OAuth OAuthConfig `koanf:"oauth"`
	// Extensions are oauthbearer's SASL extensions (RFC 7628), e.g.
	// Confluent Cloud's logicalCluster and identityPoolId.
	Extensions map[string]string `koanf:"extensions"`
	// AWSRegion is, for aws_msk_iam, the region of the AWS SDK's
	// credential chain (its STS calls); default the SDK's (AWS_REGION,
	// the profile). The signature's region is the one in the broker's
	// host name, as MSK names brokers.
	AWSRegion string `koanf:"awsRegion"`
}

// OAuthConfig is kafka.sasl.oauth: an OAuth 2.0 client-credentials grant
// (RFC 6749 §4.4). Its token is kept until shortly before it expires.
type OAuthConfig struct {
	// TokenEndpoint is the token URL (https://; http:// is taken too, for
	// an endpoint on the loopback).
	TokenEndpoint string `koanf:"tokenEndpoint"`
	// ClientID and ClientSecret identify pgkafka to the endpoint.
	ClientID     string        `koanf:"clientId"`
	ClientSecret secret.String `koanf:"clientSecret"`
	// Scope is the space-separated scopes asked for; empty asks for none.
	Scope string `koanf:"scope"`
}

// SetDefaults fills every unset field with its default (and Complete's).
// Loaders call it before applying the user's values, then Complete.
func (c *Config) SetDefaults() {
	c.Source.SetDefaults()
	c.SchemaRegistry.SetDefaults()
	c.Format.SetDefaults()
	k := &c.Kafka
	if k.Brokers == nil {
		// nil only: an empty list the user wrote (brokers: []) stays
		// empty, and Validate refuses it.
		k.Brokers = []string{"localhost:9092"}
	}
	if k.OffsetsTopic == "" {
		k.OffsetsTopic = "pgkafka-offsets"
	}
	if k.Compression == "" {
		k.Compression = "lz4"
	}
	if k.Linger == 0 {
		k.Linger = 5 * time.Millisecond
	}
	if k.TransactionWindow == 0 {
		k.TransactionWindow = 100 * time.Millisecond
	}
	if k.MaxTransactionRecords == 0 {
		k.MaxTransactionRecords = 100_000
	}
	if k.TransactionTimeout == 0 {
		k.TransactionTimeout = time.Minute
	}
	if k.MaxRecordBytes == 0 {
		k.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if k.OversizedRecords == "" {
		k.OversizedRecords = OversizedFail
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.Messages.Enabled == nil {
		on := true
		c.Messages.Enabled = &on
	}
	if c.Toast.CacheBytes == 0 {
		c.Toast.CacheBytes = DefaultToastCacheBytes
	}
	if c.Toast.Unavailable == "" {
		c.Toast.Unavailable = "fail"
	}
	if k.Topics.Partitions == 0 {
		k.Topics.Partitions = 1
	}
	if k.Topics.ReplicationFactor == 0 {
		k.Topics.ReplicationFactor = -1
	}
	c.Complete()
}

// Complete fills the defaults that derive from other keys or apply to
// list elements: kafka.topicPrefix and kafka.clientId from name, each
// binding's syncMode.
func (c *Config) Complete() {
	k := &c.Kafka
	if k.TopicPrefix == "" {
		k.TopicPrefix = c.Name
	}
	if k.ClientID == "" && c.Name != "" {
		k.ClientID = "pgkafka-" + c.Name
	}
	for i := range c.Bindings {
		if c.Bindings[i].Resource.SyncMode == "" {
			c.Bindings[i].Resource.SyncMode = "incremental"
		}
	}
	c.completeOutboxes()
}

var compressions = []string{"none", "gzip", "snappy", "lz4", "zstd"}
var saslMechanisms = []string{SASLPlain, SASLScramSHA256, SASLScramSHA512, SASLOAuthBearer, SASLAWSMSKIAM}

// Validate reports every problem of the configuration at once, each with
// its key path, block by block.
func (c *Config) Validate() error {
	var p problems
	if c.Name == "" {
		p.add("name", "required: the connector's name (transactional id and offsets key)")
	} else if !validTopicName(c.Name) {
		p.add("name", "%q may hold only letters, digits, '.', '_' and '-'", c.Name)
	}
	p = append(p, c.Source.Validate(), c.SchemaRegistry.Validate(), c.Format.Validate())
	if a := c.Metrics.Address; a != "" {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			p.add("metrics.address", "%q is not host:port (for example \":9187\" or \"127.0.0.1:9187\")", a)
		}
	} else if c.Metrics.Pprof {
		p.add("metrics.pprof", "true needs metrics.address, where the profiles are served")
	}
	c.Toast.validate(&p)
	c.Kafka.validateRoutes(&p) // before the bindings, whose topics routes may choose
	c.validateBindings(&p)
	c.validateColumns(&p)
	c.validateOutboxes(&p)
	c.Kafka.validateProducer(&p)
	if c.ShutdownTimeout <= 0 {
		p.add("shutdownTimeout", "must be positive, got %s", c.ShutdownTimeout)
	}
	c.Kafka.Topics.validate(&p)
	c.Kafka.validateAuth(&p)
	c.validateMessages(&p)
	return errors.Join(p...)
}

// problems are the problems Validate finds; nil entries are none.
type problems []error

// add is a problem with the value at key.
func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
}

// validate checks the toast block.
func (t *ToastConfig) validate(p *problems) {
	if t.CacheBytes < 0 {
		p.add("toast.cacheBytes", "must not be negative, got %d (0 disables the cache)", t.CacheBytes)
	}
	if u := t.Unavailable; u != "fail" && u != "null" {
		p.add("toast.unavailable", "%q is not one of fail, null", u)
	}
}

// validateBindings checks each binding, that no table is bound twice, and
// that no two bindings go to one topic (or to topics Kafka cannot hold
// together), whether by target or by default name.
func (c *Config) validateBindings(p *problems) {
	seen := map[string]int{}
	topics := map[string]int{} // topicKey -> binding
	for i, b := range c.Bindings {
		key := fmt.Sprintf("bindings[%d]", i)
		r := b.Resource
		if r.Namespace == "" {
			p.add(key+".resource.namespace", "required: the table's schema")
		}
		if r.Stream == "" {
			p.add(key+".resource.stream", "required: the table's name")
		}
		if r.SyncMode != "incremental" {
			p.add(key+".resource.syncMode", "%q is not supported: use incremental", r.SyncMode)
		}
		for k, col := range b.Key {
			if col == "" {
				p.add(fmt.Sprintf("%s.key[%d]", key, k), "empty: name a column")
			} else if slices.Index(b.Key, col) < k {
				p.add(fmt.Sprintf("%s.key[%d]", key, k), "column %q is listed twice", col)
			}
		}
		if b.Target != "" && !validTopicName(b.Target) {
			p.add(key+".target", "%q is not a valid Kafka topic name (letters, digits, '.', '_', '-', at most 249)", b.Target)
		}
		if r.Namespace == "" || r.Stream == "" {
			continue
		}
		t := r.Namespace + "." + r.Stream
		if j, dup := seen[t]; dup {
			p.add(key+".resource", "table %s is bound twice (also bindings[%d])", t, j)
			continue
		}
		seen[t] = i
		topic := c.bindingTopic(b)
		j, clash := topics[topicKey(topic)]
		if !clash {
			topics[topicKey(topic)] = i
			continue
		}
		other := c.Bindings[j]
		if rt := c.route(r.ref()); rt != nil && rt == c.route(other.Resource.ref()) {
			continue // a route's tables share its topic by design
		}
		if b.Target != "" && other.Target != "" && b.Target == other.Target {
			p.add(key+".target", "topic %q is also the target of bindings[%d]", b.Target, j)
			continue
		}
		clashErr := &TopicClashError{
			Tables: [2]pgsrc.TableRef{other.Resource.ref(), r.ref()},
			Topics: [2]string{c.bindingTopic(other), topic},
		}
		p.add(fmt.Sprintf("bindings[%d]", i), "%s: set bindings[%d].target or bindings[%d].target to another topic", clashErr.clash(), j, i)
	}
}

func (r Resource) ref() pgsrc.TableRef { return pgsrc.TableRef{Schema: r.Namespace, Name: r.Stream} }

// bindingTopic is the topic of a binding: its target or the table's
// default topic.
func (c *Config) bindingTopic(b Binding) string {
	return c.TopicFor(b.Resource.ref())
}

// checkTopics returns a *TopicClashError (several joined) when two of
// tables go to one topic, or to topics Kafka cannot hold together: a
// session checks the tables it captures before it creates their topics.
// Validate has refused such bindings already; tables found at run time
// (without bindings, the publication's) are checked here.
func (c *Config) checkTopics(tables []pgsrc.TableRef) error {
	var errs []error
	byKey := make(map[string]int, len(tables))
	for i, t := range tables {
		topic := c.TopicFor(t)
		j, clash := byKey[topicKey(topic)]
		if !clash {
			byKey[topicKey(topic)] = i
			continue
		}
		if r := c.route(t); r != nil && r == c.route(tables[j]) {
			continue // a route's tables share its topic by design
		}
		errs = append(errs, &TopicClashError{Tables: [2]pgsrc.TableRef{tables[j], t}, Topics: [2]string{c.TopicFor(tables[j]), topic}})
	}
	return errors.Join(errs...)
}

// topicKey is what Kafka tells topics apart by: it refuses to create a
// topic whose name differs from an existing one's only by '.' against '_'
// (the two are the same in its metric names).
func topicKey(topic string) string { return strings.ReplaceAll(topic, ".", "_") }

// validateProducer checks the kafka block's brokers, topic names and
// producer settings.
func (k *KafkaConfig) validateProducer(p *problems) {
	if _, err := parseHeaders(k.Headers); err != nil {
		*p = append(*p, err)
	}
	if len(k.Brokers) == 0 {
		p.add("kafka.brokers", "empty: list at least one host:port (or leave the key out for localhost:9092)")
	}
	for i, b := range k.Brokers {
		if b == "" || !strings.Contains(b, ":") {
			p.add(fmt.Sprintf("kafka.brokers[%d]", i), "%q is not host:port", b)
		}
	}
	if k.TopicPrefix != "" && !validTopicName(k.TopicPrefix) {
		p.add("kafka.topicPrefix", "%q may hold only letters, digits, '.', '_' and '-'", k.TopicPrefix)
	}
	if !validTopicName(k.OffsetsTopic) {
		p.add("kafka.offsetsTopic", "%q is not a valid Kafka topic name", k.OffsetsTopic)
	}
	if !slices.Contains(compressions, k.Compression) {
		p.add("kafka.compression", "%q is not one of %s", k.Compression, strings.Join(compressions, ", "))
	}
	if k.Linger < 0 || k.Linger > time.Minute {
		p.add("kafka.linger", "%s is outside 0s..1m", k.Linger)
	}
	if k.TransactionWindow <= 0 || k.TransactionWindow > time.Minute {
		p.add("kafka.transactionWindow", "%s is outside (0s, 1m]", k.TransactionWindow)
	}
	if k.MaxTransactionRecords < 1 {
		p.add("kafka.maxTransactionRecords", "must be at least 1, got %d", k.MaxTransactionRecords)
	}
	if k.TransactionTimeout < time.Second || k.TransactionTimeout > 15*time.Minute {
		p.add("kafka.transactionTimeout", "%s is outside [1s, 15m] (the broker's transaction.max.timeout.ms is 15m by default)", k.TransactionTimeout)
	}
	if k.MaxRecordBytes < 1024 || k.MaxRecordBytes > maxMaxRecordBytes {
		p.add("kafka.maxRecordBytes", "%d is outside [1024, %d]", k.MaxRecordBytes, maxMaxRecordBytes)
	}
	if !slices.Contains(oversizedPolicies, k.OversizedRecords) {
		p.add("kafka.oversizedRecords", "%q is not one of %s", k.OversizedRecords, strings.Join(oversizedPolicies, ", "))
	}
	if k.DLQTopic != "" && !validTopicName(k.DLQTopic) {
		p.add("kafka.dlqTopic", "%q is not a valid Kafka topic name", k.DLQTopic)
	}
}

// validate checks the kafka.topics block.
func (t *TopicsConfig) validate(p *problems) {
	if t.Partitions < 1 {
		p.add("kafka.topics.partitions", "must be at least 1, got %d", t.Partitions)
	}
	if t.ReplicationFactor < -1 || t.ReplicationFactor == 0 {
		p.add("kafka.topics.replicationFactor", "must be -1 (broker default) or at least 1, got %d", t.ReplicationFactor)
	}
}

// validateAuth checks the kafka.sasl and kafka.tls blocks: each key is
// required by its mechanism and refused by the others.
func (k *KafkaConfig) validateAuth(p *problems) {
	s := &k.SASL
	m := s.Mechanism
	if m != "" && !slices.Contains(saslMechanisms, m) {
		p.add("kafka.sasl.mechanism", "%q is not one of %s", m, strings.Join(saslMechanisms, ", "))
		m = "?" // the other keys are not checked against an unknown mechanism
	}
	userPass := m == SASLPlain || m == SASLScramSHA256 || m == SASLScramSHA512
	switch {
	case userPass && s.Username == "":
		p.add("kafka.sasl.username", "required with kafka.sasl.mechanism %s", m)
	case m != "?" && !userPass && s.Username != "":
		p.add("kafka.sasl.username", "set, but kafka.sasl.mechanism is %q: it goes with plain and scram only", m)
	}
	switch {
	case userPass && s.Password == "":
		p.add("kafka.sasl.password", "required with kafka.sasl.mechanism %s (or PGKAFKA_KAFKA__SASL__PASSWORD)", m)
	case m != "?" && !userPass && s.Password != "":
		p.add("kafka.sasl.password", "set, but kafka.sasl.mechanism is %q: it goes with plain and scram only", m)
	}
	oauth := s.OAuth != OAuthConfig{}
	command := len(s.TokenCommand) > 0
	switch {
	case m == SASLOAuthBearer && !oauth && !command:
		p.add("kafka.sasl.tokenCommand", "required with kafka.sasl.mechanism oauthbearer, or kafka.sasl.oauth: where the token comes from")
	case m == SASLOAuthBearer && oauth && command:
		p.add("kafka.sasl", "tokenCommand and oauth are both set: keep one source of the oauthbearer token")
	case m != SASLOAuthBearer && m != "?" && (oauth || command || len(s.Extensions) > 0):
		p.add("kafka.sasl", "tokenCommand, oauth and extensions go with kafka.sasl.mechanism oauthbearer, not %q", m)
	}
	if command && s.TokenCommand[0] == "" {
		p.add("kafka.sasl.tokenCommand[0]", "empty: the program that prints the token")
	}
	if oauth {
		s.OAuth.validate(p)
	}
	for name := range s.Extensions {
		// RFC 7628 §3.1: key = 1*(ALPHA); "auth" is the token's own.
		if name == "" || name == "auth" || strings.IndexFunc(name, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') }) >= 0 {
			p.add("kafka.sasl.extensions", "%q is not an extension name (letters only, not auth)", name)
		}
	}
	switch {
	case m == SASLAWSMSKIAM && !k.TLS.Enabled:
		p.add("kafka.tls.enabled", "required with kafka.sasl.mechanism aws_msk_iam: MSK's IAM listener (port 9098) takes TLS only")
	case m != SASLAWSMSKIAM && m != "?" && s.AWSRegion != "":
		p.add("kafka.sasl.awsRegion", "set, but kafka.sasl.mechanism is %q: it goes with aws_msk_iam", m)
	}
	if (k.TLS.CertFile == "") != (k.TLS.KeyFile == "") {
		p.add("kafka.tls", "certFile and keyFile go together")
	}
}

// validate checks kafka.sasl.oauth.
func (o *OAuthConfig) validate(p *problems) {
	if o.TokenEndpoint == "" {
		p.add("kafka.sasl.oauth.tokenEndpoint", "required: the URL of the OAuth 2.0 token endpoint")
	} else if u, err := url.Parse(o.TokenEndpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p.add("kafka.sasl.oauth.tokenEndpoint", "%q is not an https:// URL", redactURL(o.TokenEndpoint))
	}
	if o.ClientID == "" {
		p.add("kafka.sasl.oauth.clientId", "required with kafka.sasl.oauth")
	}
	if o.ClientSecret == "" {
		p.add("kafka.sasl.oauth.clientSecret", "required with kafka.sasl.oauth (or PGKAFKA_KAFKA__SASL__OAUTH__CLIENTSECRET)")
	}
}

// validateMessages checks the messages block, and that no binding targets
// the topic of logical decoding messages.
func (c *Config) validateMessages(p *problems) {
	m := &c.Messages
	_, inErr := prefixRegexps("messages.prefixIncludeList", m.PrefixIncludeList)
	_, exErr := prefixRegexps("messages.prefixExcludeList", m.PrefixExcludeList)
	*p = append(*p, inErr, exErr)
	if len(m.PrefixIncludeList) > 0 && len(m.PrefixExcludeList) > 0 {
		p.add("messages", "prefixIncludeList and prefixExcludeList cannot both be set: keep one")
	}
	if m.On() {
		mt := c.MessageTopic()
		for i, b := range c.Bindings {
			if b.Target == mt {
				p.add(fmt.Sprintf("bindings[%d].target", i), "topic %q is the topic of logical decoding messages: choose another target, or set messages.enabled: false", mt)
			}
		}
	}
}

// Tables returns the bound tables.
func (c *Config) Tables() []pgsrc.TableRef {
	refs := make([]pgsrc.TableRef, len(c.Bindings))
	for i, b := range c.Bindings {
		refs[i] = pgsrc.TableRef{Schema: b.Resource.Namespace, Name: b.Resource.Stream}
	}
	return refs
}

// TopicFor returns the topic of a table: its binding's target or
// <topicPrefix>.<schema>.<table>.
func (c *Config) TopicFor(t pgsrc.TableRef) string {
	for _, b := range c.Bindings {
		if b.Resource.Namespace == t.Schema && b.Resource.Stream == t.Name && b.Target != "" {
			return b.Target
		}
	}
	if r := c.route(t); r != nil {
		return r.Topic
	}
	return c.defaultTopic(t)
}

// defaultTopic is <topicPrefix>.<schema>.<table>, the characters Kafka
// refuses replaced: two tables may share it ("t x" and t_x).
func (c *Config) defaultTopic(t pgsrc.TableRef) string {
	return sanitizeTopic(c.Kafka.TopicPrefix + "." + t.Schema + "." + t.Name)
}

// MessageTopic returns the topic of logical decoding messages,
// <kafka.topicPrefix>.message (Debezium's name).
func (c *Config) MessageTopic() string {
	return sanitizeTopic(c.Kafka.TopicPrefix + ".message")
}

// DeadLetterTopic is the topic of records too large to produce
// (kafka.oversizedRecords: dlq): kafka.dlqTopic, or <topicPrefix>.dlq.
func (c *Config) DeadLetterTopic() string {
	if c.Kafka.DLQTopic != "" {
		return c.Kafka.DLQTopic
	}
	return sanitizeTopic(c.Kafka.TopicPrefix + ".dlq")
}

// sanitizeTopic replaces the characters Kafka refuses in topic names with '_'.
func sanitizeTopic(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c == '.' || c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	if len(b) > 249 {
		b = b[:249]
	}
	return string(b)
}

func validTopicName(s string) bool {
	if s == "" || len(s) > 249 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if !(r == '.' || r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// redactURL hides any password in a URL for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
