package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// The alerting rules and their promtool unit tests.
var (
	prometheusDir  = filepath.Join("..", "..", "deployments", "prometheus")
	alertsFile     = filepath.Join(prometheusDir, "alerts.yaml")
	alertsTestFile = filepath.Join(prometheusDir, "alerts_test.yaml")
)

// promtool is the path of Prometheus's promtool (Debian's prometheus
// package). Without it the test is skipped, except under CI=true, where it
// fails: CI must not skip these checks silently.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is missing (CI=true): install Debian's prometheus package (apt-get install prometheus) in .ci/deps")
		}
		t.Skip("promtool is not installed (apt-get install prometheus): skipping the promtool checks")
	}
	return p
}

// runPromtool runs promtool with args in dir and fails the test on an
// error, with promtool's output.
func runPromtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool %v: %v\n%s", args, err, out)
	}
}

// rulesFile is the shape of a Prometheus rules file, as far as these tests
// read it (promtool checks the rest).
type rulesFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert string `json:"alert"`
			Expr  string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

// alertRules reads deployments/prometheus/alerts.yaml.
func alertRules(t *testing.T) rulesFile {
	t.Helper()
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf rulesFile
	if err := yaml.Unmarshal(data, &rf); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	return rf
}

// TestAlertRulesPromtool: the rules pass `promtool check rules`, and
// `promtool test rules alerts_test.yaml`, which holds for every alert
// series that make it fire and series that must not (at least one
// evaluation expecting it and one expecting none).
func TestAlertRulesPromtool(t *testing.T) {
	runPromtool(t, prometheusDir, "check", "rules", filepath.Base(alertsFile))
	runPromtool(t, prometheusDir, "test", "rules", filepath.Base(alertsTestFile))

	data, err := os.ReadFile(alertsTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(data, &tests); err != nil {
		t.Fatalf("%s: %v", alertsTestFile, err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname] = true
			} else {
				silent[at.Alertname] = true
			}
		}
	}
	n := 0
	for _, g := range alertRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if !fires[r.Alert] {
				t.Errorf("%s: no case of alerts_test.yaml expects it to fire", r.Alert)
			}
			if !silent[r.Alert] {
				t.Errorf("%s: no case of alerts_test.yaml expects it silent", r.Alert)
			}
		}
	}
	if n == 0 {
		t.Error("alerts.yaml holds no alert")
	}
}
