package main

import (
	"strings"
	"testing"
)

// TestConfigJSONEncoding: format.encoding and format.jsonSchemas load from
// a file and the environment; a bad encoding is reported with its key path.
func TestConfigJSONEncoding(t *testing.T) {
	path := writeConfig(t, validConfig+`
format:
  encoding: json
  jsonSchemas: false
`)
	cfg, err := loadConfig(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Format.JSON() || cfg.Format.JSONSchemasOn() {
		t.Errorf("format: %+v", cfg.Format)
	}
	cfg, err = loadConfig(writeConfig(t, validConfig), []string{"PGKAFKA_FORMAT__ENCODING=json"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Format.JSON() || !cfg.Format.JSONSchemasOn() {
		t.Errorf("from the environment: %+v (jsonSchemas defaults to true)", cfg.Format)
	}
	cfg, err = loadConfig(writeConfig(t, validConfig), nil, nil)
	if err != nil || cfg.Format.JSON() || cfg.Format.Encoding != "avro" {
		t.Errorf("default: %+v %v, want avro", cfg.Format, err)
	}
	_, err = loadConfig(writeConfig(t, validConfig+`
format: {encoding: xml}
`), nil, nil)
	if want := `format.encoding: "xml" is not one of avro, json`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v lacks %q", err, want)
	}
}
