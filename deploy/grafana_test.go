package deploy_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// documentedMetrics are the metrics inkan exports (README, deploy docs) and
// the labels they carry. The dashboard may query only these.
var documentedMetrics = map[string][]string{
	"inkan_connections_total":            {"listener"},
	"inkan_connections_active":           nil,
	"inkan_messages_accepted_total":      nil,
	"inkan_messages_refused_total":       {"reason"},
	"inkan_submission_duration_seconds":  {"le"}, // histogram
	"inkan_auth_total":                   {"result"},
	"inkan_auth_lockouts_total":          nil,
	"inkan_dkim_signatures_total":        {"domain", "algorithm"},
	"inkan_dkim_unsigned_total":          {"reason"},
	"inkan_queue_messages":               nil,
	"inkan_queue_oldest_seconds":         nil,
	"inkan_deliveries_total":             {"status"},
	"inkan_delivery_duration_seconds":    {"le"}, // histogram
	"inkan_delivery_connections_total":   {"result"},
	"inkan_bounces_total":                {"reason"},
	"inkan_delivery_tls_total":           {"mode"},
	"inkan_delivery_tls_policy_total":    {"policy", "result"},
	"inkan_tls_handshakes_total":         {"listener", "profile", "version"},
	"inkan_tls_handshake_failures_total": {"listener", "reason"},
	"inkan_quota_exceeded_total":         {"scope", "quota"},
	"inkan_proxy_protocol_refused_total": {"listener", "reason"},
	"inkan_bare_helo_total":              nil,
	"inkan_dsn_suppressed_total":         {"condition"},
}

var metricRE = regexp.MustCompile(`\binkan_[a-z0-9_]+`)

// queriedMetric maps a series name in a query to its metric family.
func queriedMetric(series string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suffix); ok && slices.Contains(documentedMetrics[base], "le") {
			return base
		}
	}
	return series
}

type grafanaPanel struct {
	ID         int
	Type       string
	Title      string
	Datasource *struct{ Type, UID string }
	GridPos    *struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		RefID string `json:"refId"`
		Expr  string
	}
	Panels []grafanaPanel // inside collapsed rows
}

func TestGrafanaDashboard(t *testing.T) {
	var d struct {
		Title, UID    string
		SchemaVersion int `json:"schemaVersion"`
		Panels        []grafanaPanel
		Templating    struct {
			List []struct {
				Name, Type string
				Query      json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(readFile(t, "deploy/grafana/inkan-dashboard.json"), &d); err != nil {
		t.Fatalf("inkan-dashboard.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 30 {
		t.Errorf("title %q uid %q schemaVersion %d", d.Title, d.UID, d.SchemaVersion)
	}
	var queries []string
	hasDS := false
	for _, v := range d.Templating.List {
		hasDS = hasDS || (v.Name == "datasource" && v.Type == "datasource" && string(v.Query) == `"prometheus"`)
		queries = append(queries, string(v.Query))
	}
	if !hasDS {
		t.Error("no prometheus data source variable: the dashboard would only work with one named data source")
	}

	panels := slices.Clone(d.Panels)
	for _, p := range d.Panels {
		panels = append(panels, p.Panels...)
	}
	ids := make(map[int]bool)
	for _, p := range panels {
		if p.ID == 0 || ids[p.ID] {
			t.Errorf("panel %q: id %d missing or repeated", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: bad gridPos", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: data source is not ${datasource}", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" || strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") {
				t.Errorf("panel %q query %s: %q", p.Title, tg.RefID, tg.Expr)
			}
			queries = append(queries, tg.Expr)
		}
	}

	used := make(map[string]bool)
	for _, q := range queries {
		for _, series := range metricRE.FindAllString(q, -1) {
			m := queriedMetric(series)
			if _, ok := documentedMetrics[m]; !ok {
				t.Errorf("the dashboard queries %s, which is not a documented metric", series)
			}
			used[m] = true
		}
	}
	for m := range documentedMetrics {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}

// TestMetricsDefinedInCode keeps the documented list honest both ways: each
// name is a metric the code defines (Name: in prometheus options of non-test
// Go code), and each metric the code defines is documented.
func TestMetricsDefinedInCode(t *testing.T) {
	defined := make(map[string]bool)
	lit := regexp.MustCompile(`Name:\s*"(inkan_[a-z0-9_]+)"`) // prometheus.Opts
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && (e.Name() == ".git" || e.Name() == "testdata" || e.Name() == "deploy") {
			return filepath.SkipDir
		}
		if e.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range lit.FindAllStringSubmatch(string(b), -1) {
			defined[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for m := range documentedMetrics {
		if !defined[m] {
			t.Errorf("%s is documented, but no Go file defines it", m)
		}
	}
	// And the other way: a metric added to the code is documented (and so,
	// by TestGrafanaDashboard, shown on the dashboard).
	table := string(readFile(t, "deploy/README.md"))
	for m := range defined {
		if _, ok := documentedMetrics[m]; !ok {
			t.Errorf("the code defines %s, which documentedMetrics lacks (add it, a row to deploy/README.md's table and a panel)", m)
		}
		if !strings.Contains(table, "| `"+m+"` |") {
			t.Errorf("deploy/README.md's metrics table lacks %s", m)
		}
	}
}
