package schema

import "fmt"

// Encoding selects the wire form of records (format.encoding).
type Encoding uint8

const (
	// EncodingAvro writes Confluent-framed Avro and registers its schemas.
	EncodingAvro Encoding = iota
	// EncodingJSON writes Kafka Connect JsonConverter JSON; no registry.
	EncodingJSON
)

// String returns the configuration spelling.
func (e Encoding) String() string {
	switch e {
	case EncodingAvro:
		return "avro"
	case EncodingJSON:
		return "json"
	}
	return fmt.Sprintf("Encoding(%d)", uint8(e))
}

// ParseEncoding parses "avro" or "json"; "" is avro.
func ParseEncoding(s string) (Encoding, error) {
	switch s {
	case "", "avro":
		return EncodingAvro, nil
	case "json":
		return EncodingJSON, nil
	}
	return 0, fmt.Errorf("%q is not one of avro, json", s)
}

// JSON reports whether records are written as JSON (format.encoding: json).
// Call after Validate.
func (c *FormatConfig) JSON() bool { e, _ := ParseEncoding(c.Encoding); return e == EncodingJSON }

// JSONSchemasOn reports whether JSON records carry their Connect schema
// (format.jsonSchemas; absent is true, as Connect's schemas.enable).
func (c *FormatConfig) JSONSchemasOn() bool { return c.JSONSchemas == nil || *c.JSONSchemas }
