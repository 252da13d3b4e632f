package schema

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
)

// Secret is a string that never prints: String, GoString and LogValue redact it.
type Secret string

// String implements fmt.Stringer and redacts the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts the secret in %#v.
func (s Secret) GoString() string { return s.String() }

// LogValue implements slog.LogValuer and redacts the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// RegistryConfig is the `schemaRegistry` block of the configuration.
type RegistryConfig struct {
	// URL is the base URL of a Confluent-compatible schema registry REST API.
	URL string `koanf:"url"`
	// Username enables HTTP basic authentication when set.
	Username string `koanf:"username"`
	// Password is the basic-authentication password.
	Password Secret `koanf:"password"`
}

// DefaultRegistryURL is schemaRegistry.url when unset.
const DefaultRegistryURL = "http://localhost:8081"

// SetDefaults fills the fields left empty with their defaults.
func (c *RegistryConfig) SetDefaults() {
	if c.URL == "" {
		c.URL = DefaultRegistryURL
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
	return errors.Join(errs...)
}

// redactURL hides any password in a URL for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// FormatConfig is the `format` block of the configuration.
type FormatConfig struct {
	// Envelope is the value shape: "debezium" (default) or "flat".
	Envelope string `koanf:"envelope"`
}

// SetDefaults fills the fields left empty with their defaults.
func (c *FormatConfig) SetDefaults() {
	if c.Envelope == "" {
		c.Envelope = EnvelopeDebezium.String()
	}
}

// Validate reports every problem, each prefixed with its key path.
func (c *FormatConfig) Validate() error {
	if _, err := ParseEnvelope(c.Envelope); err != nil {
		return fmt.Errorf("format.envelope: %w", err)
	}
	return nil
}

// ParsedEnvelope returns Envelope parsed; call after Validate.
func (c *FormatConfig) ParsedEnvelope() (Envelope, error) { return ParseEnvelope(c.Envelope) }
