package main

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// thisModule is this repository's module path.
const thisModule = "github.com/pgkafka/pgkafka"

// goPackage is one of our packages as `go list` reports it (test files
// excluded: Imports and Deps are those of the package proper).
type goPackage struct {
	path    string   // import path
	imports []string // direct imports
	deps    []string // every package it depends on, transitively
}

// listPackages lists every package of the module with its direct imports
// and its transitive dependencies.
func listPackages(t *testing.T) []goPackage {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list imports: %v", err)
	}
	cmd := exec.Command(goBin, "list", "-e", "-f",
		`{{.ImportPath}}{{"\t"}}{{join .Imports " "}}{{"\t"}}{{join .Deps " "}}{{"\t"}}{{if .Error}}{{.Error}}{{end}}`,
		thisModule+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s/...: %v\n%s", thisModule, err, stderr.Bytes())
	}
	var pkgs []goPackage
	for line := range strings.Lines(string(out)) {
		f := strings.Split(strings.TrimRight(line, "\n"), "\t")
		if len(f) != 4 {
			t.Fatalf("go list: unexpected line %q", line)
		}
		if f[3] != "" {
			t.Errorf("go list: package %s: %s", f[0], f[3])
		}
		pkgs = append(pkgs, goPackage{path: f[0], imports: strings.Fields(f[1]), deps: strings.Fields(f[2])})
	}
	if len(pkgs) == 0 {
		t.Fatalf("go list %s/... listed no package", thisModule)
	}
	return pkgs
}

// pathUnder reports whether pkg is dir or a package below it (paths relative
// to the module for ours, full for others).
func pathUnder(pkg, dir string) bool {
	return pkg == dir || strings.HasPrefix(pkg, dir+"/")
}

// ourPackage returns pkg relative to the module, or "" for another module's package.
func ourPackage(pkg string) string {
	if pkg == thisModule {
		return "."
	}
	if rel, ok := strings.CutPrefix(pkg, thisModule+"/"); ok {
		return rel
	}
	return ""
}

// leafTree returns the leaf tree (pgsrc, schema, offsets) holding the
// package rel, or "".
func leafTree(rel string) string {
	for _, l := range []string{"pgsrc", "schema", "offsets"} {
		if pathUnder(rel, l) {
			return l
		}
	}
	return ""
}

// secretPackage holds the one type of every credential (secret.String),
// which the leaves share: a string that never prints, and nothing else.
const secretPackage = "pgsrc/secret"

// standardLibrary reports whether imp is a package of Go's standard
// library (its first path element has no dot).
func standardLibrary(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}

// importRule is one rule of STYLE §1.
type importRule struct {
	name string
	// transitive checks Deps instead of the direct Imports.
	transitive bool
	// forbidden reports whether our package rel may not import imp.
	forbidden func(rel, imp string) bool
}

// importRules are the import rules of STYLE §1, on the packages' own files
// (tests may import what they need).
func importRules() []importRule {
	return []importRule{
		{
			name:       "the leaves pgsrc, schema and offsets import none of our packages outside their own tree, but the secret type",
			transitive: true,
			forbidden: func(rel, imp string) bool {
				l, o := leafTree(rel), ourPackage(imp)
				return l != "" && o != "" && !pathUnder(o, l) && o != secretPackage
			},
		},
		{
			name:       "the secret type depends on the standard library alone",
			transitive: true,
			forbidden: func(rel, imp string) bool {
				return rel == secretPackage && !standardLibrary(imp)
			},
		},
		{
			name:       "pipeline does not import cmd",
			transitive: true,
			forbidden: func(rel, imp string) bool {
				return pathUnder(rel, "pipeline") && pathUnder(ourPackage(imp), "cmd")
			},
		},
		{
			name: "nothing imports cmd",
			forbidden: func(rel, imp string) bool {
				return pathUnder(ourPackage(imp), "cmd")
			},
		},
		{
			name: "only cmd imports pipeline",
			forbidden: func(rel, imp string) bool {
				return pathUnder(ourPackage(imp), "pipeline") && !pathUnder(rel, "cmd") && !pathUnder(rel, "pipeline")
			},
		},
		{
			name: "only pgsrc (and pgsrc/pgtest) imports pgx and pgconn directly; cmd reaches PostgreSQL through pgtest",
			forbidden: func(rel, imp string) bool {
				pgx := imp == "github.com/jackc/pgx/v5" ||
					pathUnder(imp, "github.com/jackc/pgx/v5/pgconn") ||
					pathUnder(imp, "github.com/jackc/pgx/v5/pgproto3")
				return pgx && !pathUnder(rel, "pgsrc")
			},
		},
		{
			name: "only schema imports hamba/avro",
			forbidden: func(rel, imp string) bool {
				return pathUnder(imp, "github.com/hamba/avro/v2") && !pathUnder(rel, "schema")
			},
		},
		{
			name: "only cmd imports koanf and tint",
			forbidden: func(rel, imp string) bool {
				lib := pathUnder(imp, "github.com/knadh/koanf") || pathUnder(imp, "github.com/lmittmann/tint")
				return lib && !pathUnder(rel, "cmd")
			},
		},
	}
}

// violations returns one line per import of pkgs that rule forbids.
func violations(rule importRule, pkgs []goPackage) []string {
	var out []string
	for _, p := range pkgs {
		rel := ourPackage(p.path)
		if rel == "" {
			continue
		}
		imps := p.imports
		if rule.transitive {
			imps = p.deps
		}
		for _, imp := range imps {
			if !rule.forbidden(rel, imp) {
				continue
			}
			how := "imports"
			if !slices.Contains(p.imports, imp) {
				how = "depends (indirectly) on"
			}
			out = append(out, p.path+" "+how+" "+imp)
		}
	}
	return out
}

// TestImportDirection enforces STYLE §1 on the module's packages.
func TestImportDirection(t *testing.T) {
	pkgs := listPackages(t)
	for _, rule := range importRules() {
		t.Run(rule.name, func(t *testing.T) {
			for _, v := range violations(rule, pkgs) {
				t.Errorf("forbidden: %s", v)
			}
		})
	}
}

// TestImportRules feeds made-up packages to the rules: each case must
// break exactly the rules listed.
func TestImportRules(t *testing.T) {
	m := func(rel string) string { return thisModule + "/" + rel }
	tests := []struct {
		name string
		pkg  goPackage
		want []string // names of the rules broken
	}{
		{"pipeline uses the leaves and kgo", goPackage{path: m("pipeline"),
			imports: []string{m("pgsrc"), m("schema"), m("offsets"), "github.com/twmb/franz-go/pkg/kgo"}}, nil},
		{"pgtest uses pgsrc and pgx", goPackage{path: m("pgsrc/pgtest"),
			imports: []string{m("pgsrc"), "github.com/jackc/pgx/v5"}, deps: []string{m("pgsrc")}}, nil},
		{"cmd uses pipeline, pgtest, koanf and tint", goPackage{path: m("cmd/pgkafka"),
			imports: []string{m("pipeline"), m("pgsrc/pgtest"), "github.com/knadh/koanf/v2", "github.com/lmittmann/tint"}}, nil},
		{"schema uses avro and pgtype", goPackage{path: m("schema"),
			imports: []string{"github.com/hamba/avro/v2", "github.com/jackc/pgx/v5/pgtype"}}, nil},
		{"pgsrc imports schema", goPackage{path: m("pgsrc"), imports: []string{m("schema")}, deps: []string{m("schema")}},
			[]string{"the leaves pgsrc, schema and offsets import none of our packages outside their own tree, but the secret type"}},
		{"offsets depends on pgsrc through another thisModule", goPackage{path: m("offsets"), deps: []string{m("pgsrc")}},
			[]string{"the leaves pgsrc, schema and offsets import none of our packages outside their own tree, but the secret type"}},
		{"schema imports pipeline", goPackage{path: m("schema"), imports: []string{m("pipeline")}, deps: []string{m("pipeline")}},
			[]string{"the leaves pgsrc, schema and offsets import none of our packages outside their own tree, but the secret type", "only cmd imports pipeline"}},
		{"schema uses the secret type", goPackage{path: m("schema"),
			imports: []string{m("pgsrc/secret")}, deps: []string{m("pgsrc/secret"), "log/slog"}}, nil},
		{"the secret type imports pgsrc", goPackage{path: m("pgsrc/secret"), imports: []string{m("pgsrc")}, deps: []string{m("pgsrc")}},
			[]string{"the secret type depends on the standard library alone"}},
		{"the secret type imports a module", goPackage{path: m("pgsrc/secret"), deps: []string{"github.com/twmb/franz-go/pkg/kgo"}},
			[]string{"the secret type depends on the standard library alone"}},
		{"pipeline imports cmd", goPackage{path: m("pipeline"), imports: []string{m("cmd/pgkafka")}, deps: []string{m("cmd/pgkafka")}},
			[]string{"pipeline does not import cmd", "nothing imports cmd"}},
		{"pipeline imports pgconn", goPackage{path: m("pipeline"), imports: []string{"github.com/jackc/pgx/v5/pgconn"}},
			[]string{"only pgsrc (and pgsrc/pgtest) imports pgx and pgconn directly; cmd reaches PostgreSQL through pgtest"}},
		{"cmd imports pgx", goPackage{path: m("cmd/pgkafka"), imports: []string{"github.com/jackc/pgx/v5"}},
			[]string{"only pgsrc (and pgsrc/pgtest) imports pgx and pgconn directly; cmd reaches PostgreSQL through pgtest"}},
		{"pipeline imports avro", goPackage{path: m("pipeline"), imports: []string{"github.com/hamba/avro/v2/ocf"}},
			[]string{"only schema imports hamba/avro"}},
		{"pipeline imports koanf", goPackage{path: m("pipeline"), imports: []string{"github.com/knadh/koanf/v2"}},
			[]string{"only cmd imports koanf and tint"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, rule := range importRules() {
				if len(violations(rule, []goPackage{tt.pkg})) > 0 {
					got = append(got, rule.name)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("rules broken: %q, want %q", got, tt.want)
			}
		})
	}
}
