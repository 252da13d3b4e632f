package main

import (
	"path/filepath"
	"testing"
)

// TestDeploymentConfigsLoad loads the shipped configuration files through
// the real loader so that they never rot: an unknown, misspelt or invalid
// key fails here.
func TestDeploymentConfigsLoad(t *testing.T) {
	root := filepath.Join("..", "..")
	tests := []struct {
		path string
		name string // want name
		addr string // want source.address
	}{
		{path: "deployments/compose/pgkafka.yaml", name: "shop", addr: "postgres:5432"},
		{path: "deployments/config.example.yaml", name: "shop", addr: "localhost:5432"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			cfg, err := loadConfig(filepath.Join(root, filepath.FromSlash(tt.path)), nil, nil)
			if err != nil {
				t.Fatalf("loading %s: %v", tt.path, err)
			}
			if cfg.Name != tt.name || cfg.Source.Address != tt.addr {
				t.Errorf("loaded name %q, source.address %q; want %q, %q", cfg.Name, cfg.Source.Address, tt.name, tt.addr)
			}
			if len(cfg.Bindings) == 0 {
				t.Errorf("%s binds no table", tt.path)
			}
		})
	}
}
