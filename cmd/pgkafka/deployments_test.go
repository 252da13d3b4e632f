package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// TestDockerfileBuilds builds pgkafka from exactly what the Dockerfile's
// build stage copies, as `docker build` would (there is no Docker engine
// here): a package left out of its COPY lines fails here.
func TestDockerfileBuilds(t *testing.T) {
	root := filepath.Join("..", "..")
	df, err := os.ReadFile(filepath.Join(root, "deployments", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	copied := 0
	for _, line := range strings.Split(string(df), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "COPY" || strings.HasPrefix(f[1], "--") {
			continue // the runtime stage copies from the build stage
		}
		dst := filepath.Join(dir, filepath.FromSlash(f[len(f)-1]))
		for _, src := range f[1 : len(f)-1] {
			target := dst
			if strings.HasSuffix(f[len(f)-1], "/") {
				target = filepath.Join(dst, filepath.Base(src))
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("cp", "-R", filepath.Join(root, src), target).CombinedOutput(); err != nil {
				t.Fatalf("COPY %s: %v %s", src, err, out)
			}
			copied++
		}
	}
	if copied == 0 {
		t.Fatal("no COPY line in the Dockerfile's build stage")
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(t.TempDir(), "pgkafka"), "./cmd/pgkafka")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building from the Dockerfile's sources: %v\n%s", err, out)
	}
}
