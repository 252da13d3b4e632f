package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/yaml"

	"github.com/pgkafka/pgkafka/pgsrc/pgtest"
)

// dashboardFile is the Grafana dashboard.
var dashboardFile = filepath.Join("..", "..", "deployments", "grafana", "pgkafka.json")

// grafanaDashboard is what these tests read of a Grafana dashboard.
type grafanaDashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		ID          int    `json:"id"`
		Type        string `json:"type"`
		Title       string `json:"title"`
		Description string `json:"description"`
		Datasource  struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		GridPos struct{ X, Y, W, H int } `json:"gridPos"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []grafanaVariable `json:"list"`
	} `json:"templating"`
}

// grafanaVariable is a dashboard variable (templating).
type grafanaVariable struct {
	Name  string          `json:"name"`
	Type  string          `json:"type"`
	Query json.RawMessage `json:"query"`
}

func loadDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// grafanaVariables are the dashboard's variables as the queries use them,
// with values that make the queries plain PromQL.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$job", "pgkafka")

// promQuery is one PromQL expression of the dashboard or the rules, and
// where it is.
type promQuery struct{ where, expr string }

// dashboardQueries are the dashboard's PromQL expressions, Grafana's
// variables replaced, and its label_values() variable queries as the
// selector they read.
func dashboardQueries(t *testing.T, d grafanaDashboard) []promQuery {
	t.Helper()
	var qs []promQuery
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			qs = append(qs, promQuery{fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), grafanaVariables.Replace(tg.Expr)})
		}
	}
	labelValues := regexp.MustCompile(`^label_values\(([^,]+),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: query %s: %v", v.Name, v.Query, err)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("variable %s: query %q is not label_values(SELECTOR, LABEL)", v.Name, q.Query)
		}
		qs = append(qs, promQuery{"variable " + v.Name, m[1]})
	}
	return qs
}

// alertQueries are the expressions of deployments/prometheus/alerts.yaml
// (the PrometheusRule holds the same, TestKubernetesManifests checks).
func alertQueries(t *testing.T) []promQuery {
	t.Helper()
	var qs []promQuery
	for _, g := range alertRules(t).Groups {
		for _, r := range g.Rules {
			qs = append(qs, promQuery{"alert " + r.Alert, r.Expr})
		}
	}
	return qs
}

// PromQL's lexical parts that promqlMetricNames removes or skips.
var (
	promqlStrings = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promqlComment = regexp.MustCompile(`#[^\n]*`)
	// Label matchers, ranges and subqueries (strings already removed).
	promqlBraces = regexp.MustCompile(`\{[^{}]*\}|\[[^\[\]]*\]`)
	// Label lists of aggregations and vector matching.
	promqlLabelLists = regexp.MustCompile(`(?i)\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	// Numbers (and durations), identifiers.
	promqlTokens   = regexp.MustCompile(`[0-9][0-9a-zA-Z_.]*|\.[0-9][0-9a-zA-Z_.]*|[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promqlKeywords = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
		"group_left", "group_right", "atan2", "inf", "nan", "start", "end"}
)

// promqlMetricNames returns the metric names expr selects: the
// identifiers left once strings, comments, label matchers, ranges and
// label lists are gone that are neither keywords nor followed by "(" (a
// function or an aggregation). It refuses selectors by __name__, which it
// cannot read.
func promqlMetricNames(expr string) ([]string, error) {
	if strings.Contains(expr, "__name__") {
		return nil, fmt.Errorf("%q selects by __name__: name the metric", expr)
	}
	s := promqlStrings.ReplaceAllString(expr, `""`)
	s = promqlComment.ReplaceAllString(s, " ")
	s = promqlBraces.ReplaceAllString(s, " ")
	s = promqlLabelLists.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range promqlTokens.FindAllStringIndex(s, -1) {
		tok := s[loc[0]:loc[1]]
		if tok[0] >= '0' && tok[0] <= '9' || tok[0] == '.' || slices.Contains(promqlKeywords, strings.ToLower(tok)) {
			continue
		}
		if strings.HasPrefix(strings.TrimLeft(s[loc[1]:], " \t\n"), "(") {
			continue // a function or an aggregation
		}
		if !slices.Contains(names, tok) {
			names = append(names, tok)
		}
	}
	return names, nil
}

func TestDashboardPromQLMetricNames(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`pgkafka_standby`, []string{"pgkafka_standby"}},
		{`sum by (topic, op) (rate(pgkafka_records_total{job=~"a|b", op!="m"}[5m]))`, []string{"pgkafka_records_total"}},
		{`sum(rate(x_total[5m])) without (instance) / on (job) group_left (table) y`, []string{"x_total", "y"}},
		{`time() - (pgkafka_last_commit_timestamp_seconds > 0)`, []string{"pgkafka_last_commit_timestamp_seconds"}},
		{"delta(a[10m]) > 0\nand # a comment naming b\nchanges(c[10m]) == 0", []string{"a", "c"}},
		{`a > 10e9 or b offset 1h unless bool c`, []string{"a", "b", "c"}},
		{`absent(a == 0) or count by (namespace, job) (b == 1)`, []string{"a", "b"}},
		{`histogram_quantile(0.99, sum by (le) (rate(d_bucket{x="}"}[1m:30s])))`, []string{"d_bucket"}},
		{`max_over_time(rate(e[5m])[1h:])`, []string{"e"}},
		{`label_replace(f, "dst", "$1", "src", "(.*)")`, []string{"f"}},
		{`sum (g) + .5 * h`, []string{"g", "h"}},
	}
	for _, tt := range tests {
		got, err := promqlMetricNames(tt.expr)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("promqlMetricNames(%q) = %q, %v; want %q", tt.expr, got, err, tt.want)
		}
	}
	if _, err := promqlMetricNames(`{__name__=~"pgkafka_.*"}`); err == nil {
		t.Error("a selector by __name__ passed")
	}
}

// TestDashboardPanels checks the dashboard's shape: every panel is
// described (the README describes them too), queries Prometheus through
// the datasource variable, fits the 24-column grid, and has an id of its
// own.
func TestDashboardPanels(t *testing.T) {
	d := loadDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard title %q, uid %q: both needed", d.Title, d.UID)
	}
	if len(d.Panels) == 0 {
		t.Fatal("no panel")
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if p.Title == "" || p.Description == "" {
			t.Errorf("panel %d: title %q, description %q: both needed", p.ID, p.Title, p.Description)
		}
		if ids[p.ID] {
			t.Errorf("panel %q: id %d twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want prometheus ${datasource}", p.Title, p.Datasource)
		}
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: target %s has no expr", p.Title, tg.RefID)
			}
		}
	}
	if !slices.ContainsFunc(d.Templating.List, func(v grafanaVariable) bool { return v.Name == "datasource" && v.Type == "datasource" }) {
		t.Error("no datasource variable")
	}
}

// TestDashboardQueriesPromtool: every PromQL expression of the dashboard
// parses, as promtool checks it (as recording rules of a scratch file).
func TestDashboardQueriesPromtool(t *testing.T) {
	qs := dashboardQueries(t, loadDashboard(t))
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	for i, q := range qs {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: q.expr})
	}
	data, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard.yaml"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, dir, "check", "rules", "dashboard.yaml")
}

// exportedNames are the metric names in a scrape, as PromQL selects them:
// a summary's or histogram's family name with _sum, _count (and _bucket).
func exportedNames(m map[string]*dto.MetricFamily) map[string]bool {
	names := map[string]bool{}
	for name, f := range m {
		if len(f.GetMetric()) == 0 {
			continue
		}
		switch f.GetType() {
		case dto.MetricType_SUMMARY:
			names[name], names[name+"_sum"], names[name+"_count"] = true, true, true
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names[name+"_sum"], names[name+"_count"], names[name+"_bucket"] = true, true, true
		default:
			names[name] = true
		}
	}
	return names
}

// TestDashboardAndAlertMetricsExported: every metric a dashboard panel or
// an alert rule queries is one a running `pgkafka run` exports, read from
// its live /metrics. The capture backfills a table and skips an oversized
// record, so the metrics that appear only then (per table, per topic and
// action) are there too.
func TestDashboardAndAlertMetricsExported(t *testing.T) {
	wanted := map[string][]string{} // metric name: where queried
	for _, q := range append(dashboardQueries(t, loadDashboard(t)), alertQueries(t)...) {
		names, err := promqlMetricNames(q.expr)
		if err != nil {
			t.Fatalf("%s: %v", q.where, err)
		}
		if len(names) == 0 {
			t.Errorf("%s: %q queries no metric", q.where, q.expr)
		}
		for _, n := range names {
			wanted[n] = append(wanted[n], q.where)
		}
	}

	s := newStack(t)
	s.db.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY, v text);
		INSERT INTO orders SELECT g, 'v' || g FROM generate_series(1, 300) g; ANALYZE orders`)
	path := s.config(t, pgtest.Superuser, cluster.SuperuserPassword(), ordersBinding)
	_, addr, stderr := runWithMetrics(t, path, "--set", "source.advanced.backfill_chunk_size=100",
		"--set", "kafka.maxRecordBytes=1024", "--set", "kafka.oversizedRecords=skip")
	waitFor(t, 60*time.Second, func() bool { return strings.Contains(stderr.String(), "backfills finished") }, stderr)
	s.db.Exec(t, `INSERT INTO orders VALUES (301, repeat('x', 4000))`)

	var missing []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		exported := exportedNames(scrape(t, "http://"+addr+"/metrics"))
		missing = missing[:0]
		for n := range wanted {
			if !exported[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	slices.Sort(missing)
	for _, n := range missing {
		t.Errorf("%s is not exported by pgkafka run, but is queried by %s", n, strings.Join(wanted[n], "; "))
	}
	if t.Failed() {
		t.Logf("pgkafka's log:\n%s", stderr)
	}
}
