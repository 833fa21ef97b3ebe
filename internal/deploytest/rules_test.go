package deploytest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/cdcaudit/cdcaudit/internal/debinstall"
)

const promDir = "../../deploy/prometheus"

func promtool(t *testing.T) string {
	t.Helper()
	p, skip, err := Promtool(func(format string, args ...any) { fmt.Fprintf(os.Stderr, "deploytest: "+format+"\n", args...) })
	if err != nil {
		if skip {
			t.Skipf("%v", err)
		}
		t.Fatal(err)
	}
	return p
}

func runPromtool(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestAlertRules runs the rules' unit tests: each alert fires when it
// should, not before its for:, and not on a healthy system.
func TestAlertRules(t *testing.T) {
	out, err := runPromtool(t, promDir, "test", "rules", "cdcaudit-rules.test.yml")
	if err != nil || !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// TestShippedPrometheusFiles checks the shipped configuration (with the
// rule file it names) and the rules as Prometheus loads them.
func TestShippedPrometheusFiles(t *testing.T) {
	if out, err := runPromtool(t, promDir, "check", "config", "prometheus.yml"); err != nil || !strings.Contains(out, "1 rule files found") {
		t.Errorf("promtool check config: %v\n%s", err, out)
	}
	if out, err := runPromtool(t, promDir, "check", "rules", "cdcaudit-rules.yml"); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}

// TestPromtoolCatchesABrokenRule: the harness fails on a rule file that is
// wrong, and on a test whose expectation does not hold (so a green
// TestAlertRules means something).
func TestPromtoolCatchesABrokenRule(t *testing.T) {
	dir := t.TempDir()
	rules, err := os.ReadFile(filepath.Join(promDir, "cdcaudit-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(promDir, "cdcaudit-rules.test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// A lost slot that no longer pages: the tests must notice.
	weakened := strings.Replace(string(rules), `cdcaudit_slot_wal_status{status="lost"} == 1`, `cdcaudit_slot_wal_status{status="lost"} == 2`, 1)
	if weakened == string(rules) {
		t.Fatal("the lost-slot rule is not where this test expects it")
	}
	os.WriteFile(filepath.Join(dir, "cdcaudit-rules.yml"), []byte(weakened), 0o644)
	os.WriteFile(filepath.Join(dir, "cdcaudit-rules.test.yml"), tests, 0o644)
	if out, err := runPromtool(t, dir, "test", "rules", "cdcaudit-rules.test.yml"); err == nil || !strings.Contains(out, "CdcauditSlotLost") {
		t.Errorf("a weakened rule passed its tests: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(dir, "cdcaudit-rules.yml"), []byte(strings.Replace(string(rules), "expr: up{job=\"cdcaudit\"} == 0", "expr: up{job=\"cdcaudit\" == 0", 1)), 0o644)
	if out, err := runPromtool(t, dir, "check", "rules", "cdcaudit-rules.yml"); err == nil {
		t.Errorf("a rule that does not parse passed check rules:\n%s", out)
	}
}

// TestEveryAlertIsComplete: each rule is an alert with a severity of
// critical or warning, a summary and a description, and a unit test.
func TestEveryAlertIsComplete(t *testing.T) {
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err := os.ReadFile(filepath.Join(promDir, "cdcaudit-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(promDir, "cdcaudit-rules.test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" {
				t.Errorf("rule %q is no alert", r.Expr)
				continue
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q", r.Alert, s)
			}
			if len(r.Annotations["summary"]) < 10 || len(r.Annotations["description"]) < 40 {
				t.Errorf("%s: no summary or description that says what to do", r.Alert)
			}
			if !strings.Contains(string(tests), "alertname: "+r.Alert+"\n") {
				t.Errorf("%s fires in no test of cdcaudit-rules.test.yml", r.Alert)
			}
		}
	}
	if n < 10 {
		t.Errorf("%d rules", n)
	}
}

// TestPromtoolInstallCommand: without promtool and without root, the skip
// names the exact command to run.
func TestPromtoolInstallCommand(t *testing.T) {
	if got := debinstall.Command("prometheus"); got != "apt-get update && apt-get install -y --no-install-recommends prometheus" {
		t.Errorf("command %q", got)
	}
	t.Setenv("CI", "")
	if !skips(fmt.Errorf("x: %w", debinstall.ErrCannotInstall)) {
		t.Error("outside CI: skip when it cannot be installed")
	}
	t.Setenv("CI", "true")
	if skips(fmt.Errorf("x: %w", debinstall.ErrCannotInstall)) {
		t.Error("under CI a rules test that cannot run fails")
	}
}
