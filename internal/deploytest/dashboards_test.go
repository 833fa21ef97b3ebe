package deploytest

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.yaml.in/yaml/v3"

	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

const dashboardDir = "../../deploy/grafana/dashboards"

// query is one panel target of a dashboard.
type query struct {
	where string // dashboard file, panel title, refId
	expr  parser.Expr
	// zeroFallback: the expression is `… or vector(0)`, so it reads 0
	// while what it selects has no series yet.
	zeroFallback bool
}

type grafanaPanel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource map[string]any `json:"datasource"`
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource map[string]any `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // of a row
}

// dashboardQueries parses every panel target of every dashboard with
// Prometheus's PromQL parser.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dashboardDir, "*.json"))
	if err != nil || len(files) < 2 {
		t.Fatalf("dashboards: %v %v", files, err)
	}
	p := parser.NewParser(parser.Options{})
	uids := map[string]string{}
	var out []query
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			UID        string         `json:"uid"`
			Title      string         `json:"title"`
			Panels     []grafanaPanel `json:"panels"`
			Templating struct {
				List []struct {
					Name       string `json:"name"`
					Definition string `json:"definition"`
					IncludeAll bool   `json:"includeAll"`
					AllValue   string `json:"allValue"`
				} `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		// The source variable: All is ".*", which also matches a series
		// without a source label.
		if v := d.Templating.List; len(v) != 1 || v[0].Name != "source" || !v[0].IncludeAll || v[0].AllValue != ".*" ||
			v[0].Definition != "label_values(cdcaudit_replication_connected, source)" {
			t.Errorf("%s: templating %+v, want the variable source (All: .*)", f, v)
		}
		if d.UID == "" || d.Title == "" || uids[d.UID] != "" {
			t.Errorf("%s: uid %q (also %s), title %q", f, d.UID, uids[d.UID], d.Title)
		}
		uids[d.UID] = f
		ids := map[int]bool{}
		var walk func([]grafanaPanel)
		walk = func(ps []grafanaPanel) {
			for _, pn := range ps {
				if ids[pn.ID] {
					t.Errorf("%s: panel id %d twice", f, pn.ID)
				}
				ids[pn.ID] = true
				walk(pn.Panels)
				if pn.Type == "row" {
					continue
				}
				if len(pn.Targets) == 0 {
					t.Errorf("%s: panel %q has no query", f, pn.Title)
				}
				if pn.Datasource["uid"] != "prometheus" {
					t.Errorf("%s: panel %q: datasource %v, not the provisioned one (uid prometheus)", f, pn.Title, pn.Datasource)
				}
				for _, tg := range pn.Targets {
					where := filepath.Base(f) + ": " + pn.Title + " " + tg.RefID
					if tg.Datasource["uid"] != "prometheus" {
						t.Errorf("%s: datasource %v", where, tg.Datasource)
					}
					// Grafana's interval variables, and the source
					// variable at All, as Grafana would fill them.
					src := strings.NewReplacer("$__rate_interval", "1m", "$__interval", "15s", "$__range", "1h", "$source", ".*").Replace(tg.Expr)
					e, err := p.ParseExpr(src)
					if err != nil {
						t.Errorf("%s: %q: %v", where, tg.Expr, err)
						continue
					}
					if m := unfiltered(e); len(m) > 0 {
						t.Errorf("%s: %s not filtered by source=~\"$source\"", where, strings.Join(m, ", "))
					}
					q := query{where: where, expr: e}
					if be, ok := e.(*parser.BinaryExpr); ok && be.Op == parser.LOR {
						if c, ok := be.RHS.(*parser.Call); ok && c.Func.Name == "vector" {
							q.zeroFallback = true
						}
					}
					out = append(out, q)
				}
			}
		}
		walk(d.Panels)
	}
	return out
}

// unfiltered returns the selectors of cdcaudit's series in e that do not
// select by the dashboard's source variable (at All: ".*").
func unfiltered(e parser.Expr) []string {
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok || !strings.HasPrefix(vs.Name, "cdcaudit_") {
			return nil
		}
		if !slices.ContainsFunc(vs.LabelMatchers, func(m *labels.Matcher) bool {
			return m.Name == "source" && m.Type == labels.MatchRegexp && m.Value == ".*"
		}) {
			out = append(out, vs.String())
		}
		return nil
	})
	return out
}

// sample is one scraped series and its value.
type sample struct {
	ls labels.Labels
	v  float64
}

// scrape reads /metrics as Prometheus stores it: one label set per
// series, with __name__ (a histogram's _bucket, _sum and _count).
func scrape(t *testing.T, url string) []sample {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	tp := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := tp.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out []sample
	add := func(name string, m *dto.Metric, extra ...string) {
		b := labels.NewScratchBuilder(len(m.GetLabel()) + 2)
		b.Add(labels.MetricName, name)
		for _, l := range m.GetLabel() {
			b.Add(l.GetName(), l.GetValue())
		}
		for i := 0; i+1 < len(extra); i += 2 {
			b.Add(extra[i], extra[i+1])
		}
		b.Sort()
		v := m.GetGauge().GetValue() + m.GetCounter().GetValue() + m.GetUntyped().GetValue()
		out = append(out, sample{b.Labels(), v})
	}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				for _, bk := range m.GetHistogram().GetBucket() {
					add(name+"_bucket", m, "le", strconv.FormatFloat(bk.GetUpperBound(), 'g', -1, 64))
				}
				add(name+"_bucket", m, "le", "+Inf")
				add(name+"_sum", m)
				add(name+"_count", m)
			case dto.MetricType_SUMMARY:
				add(name+"_sum", m)
				add(name+"_count", m)
			default:
				add(name, m)
			}
		}
	}
	return out
}

// unmatched returns the selectors of q that select no scraped series.
func unmatched(q query, series []sample) []string {
	var missing []string
	parser.Inspect(q.expr, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		for _, s := range series {
			if matchesAll(vs.LabelMatchers, s.ls) {
				return nil
			}
		}
		missing = append(missing, vs.String())
		return nil
	})
	return missing
}

func matchesAll(ms []*labels.Matcher, s labels.Labels) bool {
	for _, m := range ms {
		if !m.Matches(s.Get(m.Name)) {
			return false
		}
	}
	return true
}

// TestDashboardQueriesParse: every panel query is PromQL Prometheus
// accepts, on the provisioned data source; the parser used here rejects
// what Prometheus rejects (a test of the test).
func TestDashboardQueriesParse(t *testing.T) {
	qs := dashboardQueries(t)
	if len(qs) < 20 {
		t.Errorf("%d queries in the dashboards", len(qs))
	}
	if _, err := parser.NewParser(parser.Options{}).ParseExpr(`sum by (table (rate(cdcaudit_events_total[1m]))`); err == nil {
		t.Error("the parser accepts a broken query")
	}
}

// TestDashboardsAgainstALiveDaemon starts cdcaudit against a real
// PostgreSQL and scrapes its /metrics: on a healthy daemon that has
// recorded nothing yet, every selector of every panel selects at least one
// series (label values included), except those of an `… or vector(0)`
// panel, which reads 0; once a change is recorded, every selector does.
func TestDashboardsAgainstALiveDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and the cdcaudit binary")
	}
	qs := dashboardQueries(t)
	cl, err := pgtest.Start(pgtest.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Stop)
	ctx := context.Background()
	if err := cl.CreateDatabase(ctx, "erp"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Exec(ctx, "erp", `CREATE TABLE public.sale_order (id int PRIMARY KEY, state text)`); err != nil {
		t.Fatal(err)
	}
	// Both sinks, so that their series (pre-initialised for the
	// configured sinks only) are in the scrape: an audit database in the
	// same cluster, and Kafka (kfake, a Kafka implementation in process).
	if err := cl.CreateDatabase(ctx, "audit"); err != nil {
		t.Fatal(err)
	}
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close)
	bin := filepath.Join(t.TempDir(), "cdcaudit")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/cdcaudit/cdcaudit/cmd/cdcaudit").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfg := filepath.Join(t.TempDir(), "cdcaudit.yml")
	os.WriteFile(cfg, []byte("slot: dash\npublication: dash\nhttp_addr: 127.0.0.1:0\n"), 0o600)
	cmd := exec.Command(bin, "run", "--config", cfg, "--log-format", "json")
	cmd.Env = append(os.Environ(), "CDCAUDIT_DSN="+cl.DSN("erp"), "CDCAUDIT_DATA_DIR="+t.TempDir(),
		"CDCAUDIT_SINK_POSTGRES_DSN="+cl.DSN("audit"), "CDCAUDIT_SINK_KAFKA_BROKERS="+strings.Join(kafka.ListenAddrs(), ","))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "serving metrics" {
				addrCh <- rec["addr"].(string)
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	var addr string
	select {
	case addr = <-addrCh:
	case <-time.After(60 * time.Second):
		t.Fatal("no 'serving metrics' log line within 60s")
	}
	metricsURL := "http://" + addr + "/metrics"

	// Healthy: connected (the slot made, the stream up), /healthz 200.
	var series []sample
	for deadline := time.Now().Add(60 * time.Second); ; {
		series = scrape(t, metricsURL)
		if i := slices.IndexFunc(series, func(s sample) bool { return s.ls.Get(labels.MetricName) == "cdcaudit_replication_connected" }); i >= 0 && series[i].v == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not connected within 60s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz: %v %v", resp, err)
	}

	for _, sk := range []string{"postgres", "kafka"} {
		for _, name := range []string{"cdcaudit_sink_lag_seconds", "cdcaudit_sink_errors_total", "cdcaudit_retention_held_seconds"} {
			if v, ok := value(series, name, "sink", sk); !ok || v != 0 {
				t.Errorf("healthy: %s{sink=%q} = %v (present %v), want 0", name, sk, v, ok)
			}
		}
	}
	// What the alerting rules select is there too (up is Prometheus's).
	for _, r := range ruleQueries(t) {
		if m := unmatched(r, series); len(m) > 0 {
			t.Errorf("rule %s: no series on a healthy daemon for %s", r.where, strings.Join(m, ", "))
		}
	}

	fallbacks := 0
	for _, q := range qs {
		if m := unmatched(q, series); len(m) > 0 {
			if q.zeroFallback {
				fallbacks++
				continue
			}
			t.Errorf("%s: no series on a healthy daemon for %s (the panel shows No data)", q.where, strings.Join(m, ", "))
		}
	}
	if fallbacks == 0 {
		t.Error("no panel needed its `or vector(0)` before the first change: events_total is pre-initialised now? then drop the fallbacks")
	}

	// One change recorded: now every selector selects something.
	if err := cl.Exec(ctx, "erp", `INSERT INTO sale_order VALUES (1, 'draft')`); err != nil {
		t.Fatal(err)
	}
	// … and both sinks delivered it.
	for deadline := time.Now().Add(60 * time.Second); ; {
		series = scrape(t, metricsURL)
		pg, _ := value(series, "cdcaudit_sink_delivered_records_total", "sink", "postgres")
		kf, _ := value(series, "cdcaudit_sink_delivered_records_total", "sink", "kafka")
		if len(unmatchedAll(qs, series)) == 0 && pg > 0 && kf > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a change, selectors with no series: %v; delivered: postgres %v, kafka %v", unmatchedAll(qs, series), pg, kf)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// value is the value of the one series of name with label l = v.
func value(series []sample, name, l, v string) (float64, bool) {
	for _, s := range series {
		if s.ls.Get(labels.MetricName) == name && s.ls.Get(l) == v {
			return s.v, true
		}
	}
	return 0, false
}

// ruleQueries parses the expression of every alerting rule, its
// selectors of Prometheus's own series (up) left out.
func ruleQueries(t *testing.T) []query {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(promDir, "cdcaudit-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var out []query
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if strings.Contains(r.Expr, "up{") {
				continue
			}
			e, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
			if err != nil {
				t.Fatalf("%s: %v", r.Alert, err)
			}
			out = append(out, query{where: r.Alert, expr: e})
		}
	}
	if len(out) < 10 {
		t.Errorf("%d rules on cdcaudit's series", len(out))
	}
	return out
}

func unmatchedAll(qs []query, series []sample) []string {
	var out []string
	for _, q := range qs {
		for _, m := range unmatched(q, series) {
			out = append(out, q.where+": "+m)
		}
	}
	sort.Strings(out)
	return out
}
