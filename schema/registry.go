package schema

import (
	"context"
	"fmt"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// Registry registers codecs' schemas with a Confluent-compatible schema
// registry and remembers the ids, so registering an unchanged schema again
// costs no request. It is safe for concurrent use.
type Registry struct {
	cl  *sr.Client
	url string // redacted, for errors

	mu  sync.Mutex
	ids map[string]int // subject + "\x00" + schema text -> id
}

// NewRegistry returns a client of the registry at cfg.URL, with basic
// authentication when cfg.Username is set. It makes no request.
func NewRegistry(cfg RegistryConfig) (*Registry, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []sr.ClientOpt{sr.URLs(cfg.URL)}
	if cfg.Username != "" {
		opts = append(opts, sr.BasicAuth(cfg.Username, string(cfg.Password)))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("schema registry client for %s: %w", redactURL(cfg.URL), err)
	}
	return &Registry{cl: cl, url: redactURL(cfg.URL), ids: make(map[string]int)}, nil
}

// Register registers c's key schema under <topic>-key (keyed tables only)
// and its value schema under <topic>-value, then sets c's ids. The registry
// returns the existing id of a schema it already holds.
func (r *Registry) Register(ctx context.Context, c *Codec) error {
	var keyID int
	if c.Keyed() {
		id, err := r.register(ctx, c.KeySubject(), c.KeySchema())
		if err != nil {
			return err
		}
		keyID = id
	}
	valueID, err := r.register(ctx, c.ValueSubject(), c.ValueSchema())
	if err != nil {
		return err
	}
	c.SetIDs(keyID, valueID)
	return nil
}

// RegisterMessages registers the message codec's schemas under <topic>-key
// and <topic>-value, then sets its ids.
func (r *Registry) RegisterMessages(ctx context.Context, c *MessageCodec) error {
	keyID, err := r.register(ctx, c.KeySubject(), c.KeySchema())
	if err != nil {
		return err
	}
	valueID, err := r.register(ctx, c.ValueSubject(), c.ValueSchema())
	if err != nil {
		return err
	}
	c.SetIDs(keyID, valueID)
	return nil
}

func (r *Registry) register(ctx context.Context, subject, schema string) (int, error) {
	k := subject + "\x00" + schema
	r.mu.Lock()
	id, ok := r.ids[k]
	r.mu.Unlock()
	if ok {
		return id, nil
	}
	id, err := r.cl.RegisterSchema(ctx, subject, sr.Schema{Schema: schema, Type: sr.TypeAvro}, -1, -1)
	if err != nil {
		return 0, fmt.Errorf("registering subject %s at schema registry %s: %w", subject, r.url, err)
	}
	r.mu.Lock()
	r.ids[k] = id
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
