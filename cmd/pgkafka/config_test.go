package main

import (
	"strings"
	"testing"
	"time"
)

const secret = "s3cr3t-Pa55w0rd"

const validConfig = `
name: shop
source:
  address: db.example:5432
  password: ` + secret + `
bindings:
  - resource: {namespace: public, stream: orders, syncMode: incremental}
kafka:
  brokers: [k1:9092, k2:9092]
`

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		yaml string // "" with file "missing": no file at all
		args []string
		want []string
	}{
		{name: "missing file", args: []string{"-c", "/nonexistent/pgkafka.yaml"}, want: []string{"/nonexistent/pgkafka.yaml does not exist"}},
		{name: "yaml syntax", yaml: "name: shop\nsource: [unclosed\n", want: []string{"pgkafka.yaml", "yaml"}},
		{name: "unknown key with a suggestion", yaml: strings.Replace(validConfig, "  address:", "  adress:", 1),
			want: []string{`source.adress: unknown key (did you mean "address"?)`, "source.address: required"}},
		{name: "unknown top-level key", yaml: validConfig + "kafkaa: {}\n", want: []string{"kafkaa: unknown key"}},
		{name: "unknown key in a binding", yaml: strings.Replace(validConfig, "syncMode: incremental", "syncMode: incremental, strem: x", 1),
			want: []string{"bindings[0].resource.strem: unknown key"}},
		{name: "every required key at once", yaml: "source: {}\n",
			want: []string{"name: required", "source.address: required", "source.password: required"}},
		{name: "bad values", yaml: validConfig + `
format: {envelope: xml}
`, args: []string{
			"--set", "source.advanced.backfill_chunk_size=0",
			"--set", "source.advanced.sslmode=bogus",
			"--set", "source.advanced.pgoutputBinary=maybe",
			"--set", "source.advanced.backfillMode=sometimes",
			"--set", "source.advanced.onSlotLost=ignore",
			"--set", "source.advanced.watermarksTable=nodot",
			"--set", "kafka.compression=brotli",
			"--set", "kafka.topics.partitions=-3",
			"--set", "toast.cacheBytes=-1",
			"--set", "toast.unavailable=skip",
		}, want: []string{
			"source.advanced.backfill_chunk_size: must be at least 1",
			`source.advanced.sslmode: "bogus" is not one of`,
			`source.advanced.pgoutputBinary: "maybe" is not one of auto, on, off`,
			`source.advanced.backfillMode: "sometimes" is not one of initial, never, initial_only`,
			`source.advanced.onSlotLost: "ignore" is not one of fail, rebackfill`,
			"source.advanced.watermarksTable:",
			"format.envelope:",
			`kafka.compression: "brotli"`,
			"kafka.topics.partitions: must be at least 1",
			"toast.cacheBytes: must not be negative",
			`toast.unavailable: "skip" is not one of fail, null`,
		}},
		{name: "sync mode", yaml: strings.Replace(validConfig, "syncMode: incremental", "syncMode: full_refresh", 1),
			want: []string{`bindings[0].resource.syncMode: "full_refresh" is not supported`}},
		{name: "duplicate binding", yaml: strings.Replace(validConfig, "kafka:", "  - resource: {namespace: public, stream: orders}\nkafka:", 1), want: []string{"bindings[1].resource: table public.orders is bound twice"}},
		{name: "default topics clash", yaml: strings.Replace(validConfig, "kafka:", "  - resource: {namespace: public, stream: 't x'}\n  - resource: {namespace: public, stream: t_x}\nkafka:", 1),
			want: []string{`bindings[2]: tables "public.t x" and "public.t_x" both go to topic "shop.public.t_x"`, "set bindings[1].target or bindings[2].target to another topic"}},
		{name: "topics Kafka cannot hold together", yaml: strings.Replace(validConfig, "kafka:", "  - resource: {namespace: public, stream: t.x}\n  - resource: {namespace: public, stream: t_y}\n    target: shop.public.t_x\nkafka:", 1),
			want: []string{`bindings[2]: tables "public.t.x" and "public.t_y" go to topics "shop.public.t.x" and "shop.public.t_x", which Kafka cannot hold together`, "set bindings[1].target or bindings[2].target"}},
		{name: "wrong type", yaml: validConfig, args: []string{"--set", "source.advanced.backfill_chunk_size=lots"}, want: []string{"backfill_chunk_size"}},
		{name: "unknown --set key", yaml: validConfig, args: []string{"--set", "source.passwrd=x"}, want: []string{`--set source.passwrd: unknown key "source.passwrd"`}},
		{name: "oversized records", yaml: validConfig, args: []string{"--set", "kafka.maxRecordBytes=10", "--set", "kafka.oversizedRecords=drop", "--set", "kafka.dlqTopic=bad topic"},
			want: []string{"kafka.maxRecordBytes: 10 is outside", `kafka.oversizedRecords: "drop" is not one of fail, skip, dlq`, `kafka.dlqTopic: "bad topic"`}},
		{name: "negative slot lag", yaml: validConfig, args: []string{"--set", "source.advanced.maxSlotLagBytes=-1"},
			want: []string{"source.advanced.maxSlotLagBytes: -1 is negative"}},
		{name: "pprof without an address", yaml: validConfig, args: []string{"--set", "metrics.pprof=true"},
			want: []string{"metrics.pprof: true needs metrics.address"}},
		{name: "empty broker list", yaml: strings.Replace(validConfig, "[k1:9092, k2:9092]", "[]", 1), want: []string{"kafka.brokers: empty: list at least one host:port"}},
		{name: "empty broker list from --set", yaml: validConfig, args: []string{"--set", "kafka.brokers="}, want: []string{"kafka.brokers: empty"}},
		{name: "bad broker", yaml: strings.Replace(validConfig, "[k1:9092, k2:9092]", "[nohostport]", 1), want: []string{`kafka.brokers[0]: "nohostport" is not host:port`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"run"}
			if tc.yaml != "" {
				args = append(args, "-c", writeConfig(t, tc.yaml))
			}
			args = append(args, tc.args...)
			code, out := pgkafka(t, args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2; output:\n%s", code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, secret) {
				t.Errorf("output shows the password:\n%s", out)
			}
			if n := strings.Count(out, "\n"); n > 2 {
				t.Errorf("want one message, got %d lines:\n%s", n, out)
			}
		})
	}
}

func TestConfigNeedsFile(t *testing.T) {
	if code, out := pgkafka(t, "run"); code != 2 || !strings.Contains(out, "-c FILE is required") {
		t.Fatalf("exit %d: %s", code, out)
	}
	if code, out := pgkafka(t, "frobnicate"); code != 2 || !strings.Contains(out, `unknown command "frobnicate"`) {
		t.Fatalf("exit %d: %s", code, out)
	}
}

// TestRepairFlagsPlaced: the repair flags belong to verify --repair.
func TestRepairFlagsPlaced(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "--repair"}, "--repair is a flag of pgkafka verify"},
		{[]string{"verify", "--repair-keys", "5"}, "--repair-keys is a flag of pgkafka verify --repair"},
		{[]string{"verify", "--repair-wait", "1m"}, "--repair-wait is a flag of pgkafka verify --repair"},
		{[]string{"verify", "--repair", "--repair-keys", "0", "-c", "x.yaml"}, "--repair-keys 0: want at least 1"},
		{[]string{"verify", "--repair", "--repair-wait", "soon", "-c", "x.yaml"}, `--repair-wait "soon": want a positive duration`},
	} {
		if code, out := pgkafka(t, tc.args...); code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, want 2 and %q:\n%s", tc.args, code, tc.want, out)
		}
	}
}

func TestConfigLayers(t *testing.T) {
	path := writeConfig(t, strings.Replace(validConfig, "  password: "+secret+"\n", "", 1))
	environ := []string{
		"PGKAFKA_SOURCE__PASSWORD=from-env",
		"PGKAFKA_SOURCE__ADVANCED__BACKFILL_CHUNK_SIZE=100",
		"PGKAFKA_SOURCE__ADVANCED__SLOTNAME=env_slot",
		"PGKAFKA_KAFKA__BROKERS=a:1,b:2",
		"PGKAFKA_KAFKA__LINGER=20ms",
		"OTHER=ignored",
	}
	cfg, err := loadConfig(path, environ, []string{"source.advanced.backfill_chunk_size=7", "kafka.topics.config.cleanup.policy=compact"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source.Password != "from-env" {
		t.Errorf("password from the environment not applied")
	}
	if cfg.Source.Advanced.BackfillChunkSize != 7 {
		t.Errorf("backfill_chunk_size %d: --set must win over the environment", cfg.Source.Advanced.BackfillChunkSize)
	}
	if cfg.Source.Advanced.SlotName != "env_slot" {
		t.Errorf("slotName %q", cfg.Source.Advanced.SlotName)
	}
	if got := strings.Join(cfg.Kafka.Brokers, ","); got != "a:1,b:2" {
		t.Errorf("brokers %q", got)
	}
	if cfg.Kafka.Linger != 20*time.Millisecond {
		t.Errorf("linger %s", cfg.Kafka.Linger)
	}
	if cfg.Kafka.Topics.Config["cleanup.policy"] != "compact" {
		t.Errorf("topics.config %v", cfg.Kafka.Topics.Config)
	}
	// Defaults of the Estuary specification.
	a := cfg.Source.Advanced
	if cfg.Source.Database != "postgres" || cfg.Source.User != "flow_capture" || a.PublicationName != "flow_publication" || a.WatermarksTable != "public.flow_watermarks" {
		t.Errorf("defaults: %+v", cfg.Source)
	}
	if cfg.Kafka.TopicPrefix != "shop" || cfg.Kafka.OffsetsTopic != "pgkafka-offsets" || cfg.Format.Envelope != "debezium" {
		t.Errorf("defaults: %+v %+v", cfg.Kafka, cfg.Format)
	}

	_, err = loadConfig(path, []string{"PGKAFKA_SOURCE__PASWORD=x", "PGKAFKA_SOURCE__PASSWORD=y"}, nil)
	if err == nil || !strings.Contains(err.Error(), "PGKAFKA_SOURCE__PASWORD") {
		t.Errorf("a misspelt variable must be an error naming it, got %v", err)
	}
}

// TestConfigAbsentKeysOnly: a default applies only where the key is
// absent. An explicit kafka.brokers: [] is an error (above), not
// localhost:9092; an explicit heartbeatInterval: 0s disables heartbeats,
// from the file, the environment or --set, and is not made 1m.
func TestConfigAbsentKeysOnly(t *testing.T) {
	noBrokers := strings.Replace(validConfig, "  brokers: [k1:9092, k2:9092]\n", "", 1)
	cfg, err := loadConfig(writeConfig(t, noBrokers), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Kafka.Brokers, ","); got != "localhost:9092" {
		t.Errorf("kafka.brokers absent: %q, want the default localhost:9092", got)
	}
	if got := cfg.Source.Advanced.Heartbeat(); got != time.Minute {
		t.Errorf("heartbeatInterval absent: %s, want the default 1m", got)
	}
	zero := strings.Replace(validConfig, "  password: "+secret+"\n", "  password: "+secret+"\n  advanced: {heartbeatInterval: 0s}\n", 1)
	for name, load := range map[string]func() (time.Duration, error){
		"file": func() (time.Duration, error) {
			cfg, err := loadConfig(writeConfig(t, zero), nil, nil)
			return cfg.Source.Advanced.Heartbeat(), err
		},
		"environment": func() (time.Duration, error) {
			cfg, err := loadConfig(writeConfig(t, validConfig), []string{"PGKAFKA_SOURCE__ADVANCED__HEARTBEATINTERVAL=0s"}, nil)
			return cfg.Source.Advanced.Heartbeat(), err
		},
		"--set": func() (time.Duration, error) {
			cfg, err := loadConfig(writeConfig(t, validConfig), nil, []string{"source.advanced.heartbeatInterval=0s"})
			return cfg.Source.Advanced.Heartbeat(), err
		},
	} {
		if got, err := load(); err != nil || got != 0 {
			t.Errorf("heartbeatInterval 0s from the %s: %s (%v), want 0s (disabled)", name, got, err)
		}
	}
}
