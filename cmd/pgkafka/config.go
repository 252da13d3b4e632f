package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/pgkafka/pgkafka/pipeline"
)

const envPrefix = "PGKAFKA_"

// keyDelim separates key path segments inside koanf. It is not "." because
// Kafka topic configs are map keys with dots (cleanup.policy).
const keyDelim = "\x1f"

// configError is a configuration problem: exit code 2.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// loadConfig reads the configuration: defaults, then the YAML file (if
// path is set), then PGKAFKA_ environment variables, then --set overrides;
// then validates it. Every problem is reported at once, each with its key
// path, as a *configError.
func loadConfig(path string, environ []string, sets []string) (pipeline.Config, error) {
	var cfg pipeline.Config
	cfg.SetDefaults()
	k := koanf.New(keyDelim)
	root := reflect.TypeFor[pipeline.Config]()
	if path != "" {
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return cfg, &configError{fmt.Errorf("config file %s does not exist: pass an existing file with -c", path)}
			}
			return cfg, &configError{fmt.Errorf("config file %s: %w", path, err)}
		}
	}
	var errs []error
	checkKeys("", k.Raw(), root, &errs)

	// Environment variables: PGKAFKA_SOURCE__PASSWORD is source.password.
	var envErrs []error
	err := k.Load(env.Provider(keyDelim, env.Opt{
		Prefix:      envPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			key, t, err := resolveKey(root, strings.Split(strings.TrimPrefix(name, envPrefix), "__"))
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("%s: %w", name, err))
				return "", nil
			}
			return key, envValue(t, value)
		},
	}), nil)
	if err != nil {
		return cfg, &configError{fmt.Errorf("reading the environment: %w", err)}
	}
	errs = append(errs, envErrs...)

	// --set key=value.
	overrides := map[string]any{}
	for _, s := range sets {
		name, value, ok := strings.Cut(s, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("--set %s: want key=value", s))
			continue
		}
		key, t, err := resolveKey(root, strings.Split(name, "."))
		if err != nil {
			errs = append(errs, fmt.Errorf("--set %s: %w", name, err))
			continue
		}
		overrides[key] = envValue(t, value)
	}
	if err := k.Load(confmap.Provider(overrides, keyDelim), nil); err != nil {
		return cfg, &configError{err}
	}
	// Defaults were set first; explicit values (even zeros) now override
	// them, so Validate sees what the user wrote.
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		errs = append(errs, fmt.Errorf("config: %w", err))
	} else {
		cfg.Complete()
		errs = append(errs, cfg.Validate())
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, &configError{err}
	}
	return cfg, nil
}

// checkKeys reports every key of raw that t has no field for, with its
// path, so a typo never goes unnoticed.
func checkKeys(path string, raw any, t reflect.Type, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			return // a type error, reported when decoding
		}
		keys := make([]string, 0, len(m))
		for key := range m {
			keys = append(keys, key)
		}
		slices.Sort(keys)
		for _, key := range keys {
			f, ok := fieldByTag(t, key)
			if !ok {
				msg := "unknown key"
				if alt, ok := closestTag(t, key); ok {
					msg += fmt.Sprintf(" (did you mean %q?)", alt)
				} else {
					msg += fmt.Sprintf(" (known keys: %s)", strings.Join(tags(t), ", "))
				}
				*errs = append(*errs, fmt.Errorf("%s: %s", join(path, key), msg))
				continue
			}
			checkKeys(join(path, key), m[key], f.Type, errs)
		}
	case reflect.Slice:
		if list, ok := raw.([]any); ok {
			for i, v := range list {
				checkKeys(fmt.Sprintf("%s[%d]", path, i), v, t.Elem(), errs)
			}
		}
	}
}

// resolveKey maps case-insensitive path segments (from an environment
// variable or --set) to the configuration's key and the field's type.
func resolveKey(root reflect.Type, segs []string) (string, reflect.Type, error) {
	t := root
	var path []string
	for i, seg := range segs {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			tag, ok := fieldByTagFold(t, seg)
			if !ok {
				return "", nil, fmt.Errorf("unknown key %q", strings.Join(append(path, seg), "."))
			}
			f, _ := fieldByTag(t, tag)
			path = append(path, tag)
			t = f.Type
		case reflect.Map:
			path = append(path, strings.ToLower(strings.Join(segs[i:], ".")))
			return strings.Join(path, keyDelim), t.Elem(), nil
		default:
			return "", nil, fmt.Errorf("%q cannot be set this way: set it in the file", strings.Join(append(path, seg), "."))
		}
	}
	if t.Kind() == reflect.Struct || t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct {
		return "", nil, fmt.Errorf("%q is a block: name one of its keys", strings.Join(path, "."))
	}
	return strings.Join(path, keyDelim), t, nil
}

// envValue splits comma-separated lists for list-typed keys.
func envValue(t reflect.Type, v string) any {
	if t != nil && t.Kind() == reflect.Slice {
		parts := strings.Split(v, ",")
		out := make([]any, 0, len(parts))
		for _, p := range parts {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out
	}
	return v
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); f.Tag.Get("koanf") == tag {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func fieldByTagFold(t reflect.Type, name string) (string, bool) {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }
	for _, tag := range tags(t) {
		if norm(tag) == norm(name) {
			return tag, true
		}
	}
	return "", false
}

// closestTag suggests the key the user most likely meant: the same but for
// case and underscores, or within two edits.
func closestTag(t reflect.Type, name string) (string, bool) {
	if tag, ok := fieldByTagFold(t, name); ok {
		return tag, true
	}
	best, bestDist := "", 3
	for _, tag := range tags(t) {
		if d := editDistance(strings.ToLower(tag), strings.ToLower(name)); d < bestDist {
			best, bestDist = tag, d
		}
	}
	return best, best != ""
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func tags(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("koanf"); tag != "" {
			out = append(out, tag)
		}
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// osEnviron is the process environment, for loadConfig.
func osEnviron() []string { return os.Environ() }
