package schema

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pgkafka/pgkafka/pgsrc/secret"
)

// Registry registers codecs' schemas with a Confluent-compatible schema
// registry and remembers the ids, so registering an unchanged schema again
// costs no request. A schema new to its subject must be BACKWARD compatible
// with the subject's latest version, or follow the configured OnIncompatible
// policy. It is safe for concurrent use.
type Registry struct {
	cl     *sr.Client
	url    string // redacted, for errors
	red    *secret.Redactor
	policy OnIncompatible

	mu     sync.Mutex
	ids    map[string]int     // subject + "\x00" + schema text -> id
	latest map[string]*latest // subject -> its latest version, as far as known
}

// latest is a subject's latest version; a nil schema: the subject has none.
type latest struct {
	version int
	schema  avro.Schema
}

// NewRegistry returns a client of the registry at cfg.URL, with cfg's TLS
// and authentication (RegistryConfig.client). It makes no request. The errors
// of its methods never hold the password of cfg.URL or cfg.Password, even
// when the HTTP client or the registry wrote them (cfg.Secrets).
func NewRegistry(cfg RegistryConfig) (*Registry, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	policy, _ := ParseOnIncompatible(cfg.OnIncompatible) // validated
	cl, err := cfg.client()
	if err != nil {
		return nil, err
	}
	return &Registry{cl: cl, url: redactURL(cfg.URL), red: secret.NewRedactor(cfg.Secrets()...), policy: policy,
		ids: make(map[string]int), latest: make(map[string]*latest)}, nil
}

// Register registers c's key schema under <topic>-key (keyed tables only)
// and its value schema under <topic>-value, then sets c's ids. A schema the
// subject holds already (any version) keeps its id. A new one is checked
// against the subject's latest version first: when it cannot read that
// version's data, the policy stop returns an *IncompatibleError and
// registers neither schema; the policy register sets the subject's
// compatibility to NONE, registers, and returns what it forced, for the
// caller to report.
func (r *Registry) Register(ctx context.Context, c *Codec) ([]Incompatibility, error) {
	forced, err := r.registerCodec(ctx, c)
	return forced, r.red.Error(err)
}

func (r *Registry) registerCodec(ctx context.Context, c *Codec) (forced []Incompatibility, err error) {
	type pending struct {
		subject, text string
		parsed        avro.Schema
		key           bool
		id            int
		known         bool
		inc           *Incompatibility
	}
	var subs []*pending
	if c.Keyed() {
		subs = append(subs, &pending{subject: c.KeySubject(), text: c.KeySchema(), parsed: c.KeyAvro(), key: true})
	}
	subs = append(subs, &pending{subject: c.ValueSubject(), text: c.ValueSchema(), parsed: c.ValueAvro()})
	var incs []Incompatibility
	for _, p := range subs {
		if p.id, p.known, err = r.lookup(ctx, p.subject, p.text); err != nil {
			return nil, err
		}
		if p.known {
			continue
		}
		if p.inc, err = r.check(ctx, p.subject, p.parsed, p.key); err != nil {
			return nil, err
		}
		if p.inc != nil {
			incs = append(incs, *p.inc)
		}
	}
	if len(incs) > 0 && r.policy == IncompatibleStop {
		return nil, &IncompatibleError{Table: c.table, Subjects: incs}
	}
	var keyID, valueID int
	for _, p := range subs {
		if !p.known {
			if p.inc != nil {
				res := r.cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, p.subject)
				if err := res[0].Err; err != nil {
					return nil, fmt.Errorf("setting the compatibility of subject %s to NONE at schema registry %s: %w", p.subject, r.url, err)
				}
			}
			if p.id, err = r.register(ctx, p.subject, p.text, p.parsed); err != nil {
				return nil, err
			}
		}
		if p.key {
			keyID = p.id
		} else {
			valueID = p.id
		}
	}
	c.SetIDs(keyID, valueID)
	return incs, nil
}

// RegisterMessages registers the message codec's schemas under <topic>-key
// and <topic>-value, then sets its ids. They never change, so they are not
// checked for compatibility.
func (r *Registry) RegisterMessages(ctx context.Context, c *MessageCodec) error {
	return r.red.Error(r.registerMessages(ctx, c))
}

func (r *Registry) registerMessages(ctx context.Context, c *MessageCodec) error {
	var ids [2]int
	for i, sub := range [2][2]string{{c.KeySubject(), c.KeySchema()}, {c.ValueSubject(), c.ValueSchema()}} {
		id, known, err := r.lookup(ctx, sub[0], sub[1])
		if err != nil {
			return err
		}
		if !known {
			parsed, err := avro.Parse(sub[1])
			if err != nil {
				return fmt.Errorf("the schema of subject %s: %w", sub[0], err)
			}
			if id, err = r.register(ctx, sub[0], sub[1], parsed); err != nil {
				return err
			}
		}
		ids[i] = id
	}
	c.SetIDs(ids[0], ids[1])
	return nil
}

// lookup returns the id of schema under subject if the subject holds it.
func (r *Registry) lookup(ctx context.Context, subject, schema string) (int, bool, error) {
	k := subject + "\x00" + schema
	r.mu.Lock()
	id, ok := r.ids[k]
	r.mu.Unlock()
	if ok {
		return id, true, nil
	}
	ss, err := r.cl.LookupSchema(ctx, subject, sr.Schema{Schema: schema, Type: sr.TypeAvro})
	switch {
	case notFound(err):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("looking up a schema of subject %s at schema registry %s: %w", subject, r.url, err)
	}
	r.mu.Lock()
	r.ids[k] = ss.ID
	r.mu.Unlock()
	return ss.ID, true, nil
}

// notFound reports a registry's "no such subject, version or schema".
func notFound(err error) bool {
	var re *sr.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	switch re.ErrorCode {
	case sr.ErrSubjectNotFound.Code, sr.ErrVersionNotFound.Code, sr.ErrSchemaNotFound.Code:
		return true
	}
	return false
}

// Latest returns the latest version of subject and its number; a nil schema
// when the subject has none.
func (r *Registry) Latest(ctx context.Context, subject string) (avro.Schema, int, error) {
	s, version, err := r.fetchLatest(ctx, subject)
	return s, version, r.red.Error(err)
}

func (r *Registry) fetchLatest(ctx context.Context, subject string) (avro.Schema, int, error) {
	r.mu.Lock()
	l := r.latest[subject]
	r.mu.Unlock()
	if l != nil {
		return l.schema, l.version, nil
	}
	l = &latest{}
	ss, err := r.cl.SchemaByVersion(ctx, subject, -1)
	switch {
	case notFound(err):
	case err != nil:
		return nil, 0, fmt.Errorf("reading the latest version of subject %s at schema registry %s: %w", subject, r.url, err)
	default:
		if l.schema, err = avro.ParseWithCache(ss.Schema.Schema, "", &avro.SchemaCache{}); err != nil {
			return nil, 0, fmt.Errorf("parsing the latest version (%d) of subject %s: %w", ss.Version, subject, err)
		}
		l.version = ss.Version
	}
	r.mu.Lock()
	r.latest[subject] = l
	r.mu.Unlock()
	return l.schema, l.version, nil
}

// check returns what makes schema unable to read the data of subject's
// latest version, nil if nothing does (or the subject is new).
func (r *Registry) check(ctx context.Context, subject string, schema avro.Schema, key bool) (*Incompatibility, error) {
	old, version, err := r.fetchLatest(ctx, subject)
	if err != nil || old == nil {
		return nil, err
	}
	if p := incompatibilities(schema, old, key); len(p) > 0 {
		return &Incompatibility{Subject: subject, Version: version, Problems: p}, nil
	}
	return nil, nil
}

func (r *Registry) register(ctx context.Context, subject, schema string, parsed avro.Schema) (int, error) {
	id, err := r.cl.RegisterSchema(ctx, subject, sr.Schema{Schema: schema, Type: sr.TypeAvro}, -1, -1)
	if err != nil {
		return 0, fmt.Errorf("registering subject %s at schema registry %s: %w", subject, r.url, err)
	}
	r.mu.Lock()
	r.ids[subject+"\x00"+schema] = id
	next := &latest{version: 1, schema: parsed}
	if l := r.latest[subject]; l != nil {
		next.version = l.version + 1
	}
	r.latest[subject] = next
	r.mu.Unlock()
	return id, nil
}

// CheckBackward reports whether a reader holding schema newer can read data
// written with schema older (Avro schema resolution: the registry's BACKWARD
// rule). srfake accepts every schema; tests and the demo use this to catch
// what a real registry would refuse. A column added NOT NULL fails it: its
// field has no default.
func CheckBackward(older, newer string) error {
	// Separate caches: both schemas define the same full names.
	w, err := avro.ParseWithCache(older, "", &avro.SchemaCache{})
	if err != nil {
		return fmt.Errorf("parsing the older schema: %w", err)
	}
	r, err := avro.ParseWithCache(newer, "", &avro.SchemaCache{})
	if err != nil {
		return fmt.Errorf("parsing the newer schema: %w", err)
	}
	if err := avro.NewSchemaCompatibility().Compatible(r, w); err != nil {
		return fmt.Errorf("newer schema cannot read data of the older: %w", err)
	}
	return nil
}
