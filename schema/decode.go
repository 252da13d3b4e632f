package schema

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pgkafka/pgkafka/pgsrc/secret"
)

// Decoder reads Confluent-framed Avro (magic byte 0, 4-byte schema id, Avro
// binary) with the writer's schema fetched by id from the registry and
// cached. It serves the demo and tests: it goes through hamba/avro's
// generic decoder, not through this package's encoders. It is safe for
// concurrent use.
type Decoder struct {
	cl  *sr.Client
	url string
	red *secret.Redactor

	mu      sync.Mutex
	schemas map[int]avro.Schema
}

// decodeAPI is hamba/avro's decoder with room for values as large as the
// records pgkafka may write (kafka.maxRecordBytes, up to 256 MiB); its
// default stops at 1 MiB. Frozen: it never changes.
var decodeAPI = avro.Config{MaxByteSliceSize: 256 << 20}.Freeze()

// NewDecoder returns a Decoder on the registry of cfg. Like a Registry's,
// its errors never hold the registry's passwords.
func NewDecoder(cfg RegistryConfig) (*Decoder, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cl, err := cfg.client()
	if err != nil {
		return nil, err
	}
	return &Decoder{cl: cl, url: redactURL(cfg.URL), red: secret.NewRedactor(cfg.Secrets()...), schemas: make(map[int]avro.Schema)}, nil
}

// Decode decodes one framed key or value into Go values (records as
// map[string]any). A nil b (a null key, a tombstone) decodes to nil.
func (d *Decoder) Decode(ctx context.Context, b []byte) (any, error) {
	if b == nil {
		return nil, nil
	}
	if len(b) < 5 || b[0] != 0 {
		return nil, fmt.Errorf("not Confluent-framed Avro (%d bytes)", len(b))
	}
	id := int(binary.BigEndian.Uint32(b[1:5]))
	s, err := d.schema(ctx, id)
	if err != nil {
		return nil, d.red.Error(err)
	}
	var v any
	if err := decodeAPI.Unmarshal(s, b[5:], &v); err != nil {
		return nil, fmt.Errorf("decoding with schema %d: %w", id, err)
	}
	return v, nil
}

func (d *Decoder) schema(ctx context.Context, id int) (avro.Schema, error) {
	d.mu.Lock()
	s := d.schemas[id]
	d.mu.Unlock()
	if s != nil {
		return s, nil
	}
	ss, err := d.cl.SchemaByID(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("fetching schema %d from %s: %w", id, d.url, err)
	}
	s, err = avro.ParseWithCache(ss.Schema, "", &avro.SchemaCache{})
	if err != nil {
		return nil, fmt.Errorf("parsing schema %d: %w", id, err)
	}
	d.mu.Lock()
	d.schemas[id] = s
	d.mu.Unlock()
	return s, nil
}
