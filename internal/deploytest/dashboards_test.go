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
			UID    string         `json:"uid"`
			Title  string         `json:"title"`
			Panels []grafanaPanel `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
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
					// Grafana's interval variables, as Grafana would fill them.
					src := strings.NewReplacer("$__rate_interval", "1m", "$__interval", "15s", "$__range", "1h").Replace(tg.Expr)
					e, err := p.ParseExpr(src)
					if err != nil {
						t.Errorf("%s: %q: %v", where, tg.Expr, err)
						continue
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
	bin := filepath.Join(t.TempDir(), "cdcaudit")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/cdcaudit/cdcaudit/cmd/cdcaudit").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfg := filepath.Join(t.TempDir(), "cdcaudit.yml")
	os.WriteFile(cfg, []byte("slot: dash\npublication: dash\nhttp_addr: 127.0.0.1:0\n"), 0o600)
	cmd := exec.Command(bin, "run", "--config", cfg, "--log-format", "json")
	cmd.Env = append(os.Environ(), "CDCAUDIT_DSN="+cl.DSN("erp"), "CDCAUDIT_DATA_DIR="+t.TempDir())
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
	for deadline := time.Now().Add(60 * time.Second); ; {
		series = scrape(t, metricsURL)
		if len(unmatchedAll(qs, series)) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a change, selectors with no series: %v", unmatchedAll(qs, series))
		}
		time.Sleep(200 * time.Millisecond)
	}
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
