// Package deploy checks the Grafana dashboard and the Prometheus alert rules
// shipped in deploy/ against what quotaq-worker exports. It is a module of
// its own so that Prometheus's parsers stay out of quotaq's go.mod.
package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/quotaq/quotaq/internal/redistest"
	"github.com/quotaq/quotaq/internal/wait"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

const (
	rulesFile     = "prometheus/alerts.yml"
	dashboardFile = "grafana/quotaq.json"
)

var promql = parser.NewParser(parser.Options{})

// The alert rules and the dashboard read only metrics that a running
// quotaq-worker exports.
func TestDeployFilesReadExportedMetrics(t *testing.T) {
	exported := workerMetrics(t)
	t.Run("AlertRules", func(t *testing.T) { t.Parallel(); checkAlertRules(t, exported) })
	t.Run("Dashboard", func(t *testing.T) { t.Parallel(); checkDashboard(t, exported) })
}

// checkAlertRules: the alert rules parse as Prometheus parses them
// (rulefmt, promtool's parser), each alert says what happened, and every
// metric they read is in exported.
func checkAlertRules(t *testing.T, exported map[string]bool) {
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation, promql, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("%s: %v", rulesFile, errs)
	}
	alerts := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			where := fmt.Sprintf("%s: rule %s%s", rulesFile, r.Alert, r.Record)
			if r.Alert != "" {
				alerts++
				if r.Annotations["summary"] == "" || r.Labels["severity"] == "" {
					t.Errorf("%s: give it a summary annotation and a severity label", where)
				}
			}
			checkNames(t, where, r.Expr, exported)
		}
	}
	if alerts == 0 {
		t.Errorf("%s: no alert", rulesFile)
	}
}

// checkDashboard: every PromQL query of the dashboard, its panels' and
// its variables', parses once Grafana's variables are filled in, and reads
// only metrics in exported.
func checkDashboard(t *testing.T, exported map[string]bool) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID       string `json:"uid"`
		Title     string `json:"title"`
		Templates struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Errorf("%s: uid %q title %q, want both", dashboardFile, dash.UID, dash.Title)
	}
	queries := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", dashboardFile, p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			checkNames(t, fmt.Sprintf("%s: panel %q", dashboardFile, p.Title), fillVariables(tg.Expr), exported)
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)
	for _, v := range dash.Templates.List {
		if v.Definition == "" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("%s: variable %s: %q is not label_values(SELECTOR, LABEL)", dashboardFile, v.Name, v.Definition)
			continue
		}
		checkNames(t, fmt.Sprintf("%s: variable %s", dashboardFile, v.Name), m[1], exported)
	}
	if queries == 0 {
		t.Errorf("%s: no query", dashboardFile)
	}
}

// fillVariables puts values in place of Grafana's variables, as Grafana
// does before it sends a query.
func fillVariables(expr string) string {
	r := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")
	return regexp.MustCompile(`\$\{?\w+\}?`).ReplaceAllString(r.Replace(expr), ".*")
}

// checkNames parses expr and fails t for each metric it reads that is not
// in exported.
func checkNames(t *testing.T, where, expr string, exported map[string]bool) {
	t.Helper()
	e, err := promql.ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %q: %v", where, expr, err)
		return
	}
	n := 0
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		n++
		if !exported[vs.Name] {
			t.Errorf("%s: %q reads %q, which quotaq-worker does not export", where, expr, vs.Name)
		}
		return nil
	})
	if n == 0 {
		t.Errorf("%s: %q reads no metric", where, expr)
	}
}

// workerMetrics builds quotaq-worker, runs it on a real redis-server with a
// quota schedule and a watched tenant and tier, and returns the names of
// the series its /metrics serves (a histogram's _bucket, _sum and _count).
func workerMetrics(t *testing.T) map[string]bool {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "quotaq-worker")
	build := exec.Command("go", "build", "-o", bin, "./cmd/worker")
	build.Dir = ".." // in quotaq's own module, with its go.mod
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build quotaq-worker: %v\n%s", err, out)
	}
	schedule := filepath.Join(dir, "schedule.yaml")
	if err := os.WriteFile(schedule, []byte("entries:\n  - name: nightly\n    cron: \"0 0 * * *\"\n    action: reset\n    all: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	prefix := redistest.Prefix(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--redis-url", "redis://"+redistest.Addr(t), "--prefix", prefix, "--queues", "q-"+prefix,
		"--metrics-addr", addr, "--schedule", schedule, "--metrics-tenants", "acme,globex=gold")
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	logs := &wait.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	var body string
	wait.For(t, 60*time.Second, "quotaq-worker to serve /metrics", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK
	})
	tp := expfmt.NewTextParser(model.UTF8Validation)
	families, err := tp.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, logs)
	}
	names := map[string]bool{}
	for name, mf := range families {
		names[name] = true
		switch mf.GetType().String() {
		case "HISTOGRAM":
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case "SUMMARY":
			names[name+"_sum"], names[name+"_count"] = true, true
		}
	}
	var quotaq []string
	for n := range names {
		if strings.HasPrefix(n, "quotaq_") {
			quotaq = append(quotaq, n)
		}
	}
	sort.Strings(quotaq)
	t.Logf("quotaq-worker exports %d quotaq series names: %s", len(quotaq), strings.Join(quotaq, " "))
	return names
}
