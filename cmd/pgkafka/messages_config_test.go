package main

import (
	"slices"
	"strings"
	"testing"
)

// TestConfigMessages: the messages block loads from the file, the
// environment and --set, defaults to capturing, and its errors name the key.
func TestConfigMessages(t *testing.T) {
	path := writeConfig(t, validConfig)
	cfg, err := loadConfig(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Messages.On() || cfg.Messages.Enabled == nil || cfg.MessageTopic() != "shop.message" {
		t.Errorf("default: %+v, topic %s", cfg.Messages, cfg.MessageTopic())
	}
	path = writeConfig(t, validConfig+"messages: {enabled: false, prefixExcludeList: ['outbox\\..*']}\n")
	if cfg, err = loadConfig(path, nil, nil); err != nil {
		t.Fatal(err)
	}
	if cfg.Messages.On() || !slices.Equal(cfg.Messages.PrefixExcludeList, []string{`outbox\..*`}) {
		t.Errorf("from the file: %+v", cfg.Messages)
	}
	if cfg, err = loadConfig(path, []string{"PGKAFKA_MESSAGES__ENABLED=true"}, []string{"messages.prefixExcludeList=a,b"}); err != nil {
		t.Fatal(err)
	}
	if !cfg.Messages.On() || !slices.Equal(cfg.Messages.PrefixExcludeList, []string{"a", "b"}) {
		t.Errorf("from the environment and --set: %+v", cfg.Messages)
	}

	bad := writeConfig(t, validConfig+"messages: {prefixIncludeList: ['ok', '(unclosed'], prefixExcludeList: [x]}\n")
	code, out := pgkafka(t, "run", "-c", bad)
	if code != 2 {
		t.Fatalf("exit %d, want 2: %s", code, out)
	}
	for _, want := range []string{`messages.prefixIncludeList[1]: "(unclosed" is not a regular expression`, "messages: prefixIncludeList and prefixExcludeList cannot both be set"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	clash := writeConfig(t, strings.Replace(validConfig, "syncMode: incremental}", "syncMode: incremental}\n    target: shop.message", 1))
	if code, out := pgkafka(t, "run", "-c", clash); code != 2 || !strings.Contains(out, `bindings[0].target: topic "shop.message" is the topic of logical decoding messages`) {
		t.Errorf("exit %d: %s", code, out)
	}
}
