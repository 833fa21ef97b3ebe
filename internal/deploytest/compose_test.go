package deploytest

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

const repoRoot = "../.."

// loadCompose loads docker-compose.yml as `docker compose config` does
// (schema validation, interpolation, consistency checks, paths resolved)
// with the given profiles enabled.
func loadCompose(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) {
		o.SetProjectName("cdcaudit", true)
		o.Profiles = profiles
		o.ResolvePaths = true
	})
	if err != nil {
		t.Fatalf("compose-go: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %s: %v", name, err)
	}
	return s
}

// TestComposeFile validates docker-compose.yml with compose-go, the
// library behind `docker compose config`: its services with and without
// the erp profile, cdcaudit's healthcheck (through the binary the image
// ships, there being no shell or curl in it), the volumes (Odoo's data
// read-only in cdcaudit, the alert rules beside prometheus.yml, the
// dashboards), and every port published on loopback only.
func TestComposeFile(t *testing.T) {
	p := loadCompose(t)
	if p.Name != "cdcaudit" {
		t.Errorf("project name %q", p.Name)
	}
	names := p.ServiceNames()
	slices.Sort(names)
	if want := []string{"cdcaudit", "grafana", "postgres", "prometheus"}; !slices.Equal(names, want) {
		t.Errorf("services without a profile: %v, want %v", names, want)
	}
	if erp := loadCompose(t, "erp").ServiceNames(); !slices.Contains(erp, "odoo") || len(erp) != 5 {
		t.Errorf("services with --profile erp: %v", erp)
	}
	for _, n := range p.DisabledServiceNames() {
		if n != "odoo" {
			t.Errorf("service %s is behind a profile", n)
		}
	}

	// The healthcheck runs the binary where the Dockerfile puts it.
	c := service(t, p, "cdcaudit")
	hc := c.HealthCheck
	if hc == nil || hc.Disable {
		t.Fatal("cdcaudit has no healthcheck")
	}
	if want := []string{"CMD", "/usr/local/bin/cdcaudit", "health"}; !slices.Equal([]string(hc.Test), want) {
		t.Errorf("healthcheck test %q, want %q", hc.Test, want)
	}
	dockerfile, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^COPY --from=build /out/cdcaudit /usr/local/bin/cdcaudit$`).Match(dockerfile) ||
		!strings.Contains(string(dockerfile), "distroless") {
		t.Error("the Dockerfile no longer puts cdcaudit at /usr/local/bin/cdcaudit on distroless: revisit the healthcheck")
	}
	if hc.Interval == nil || hc.Timeout == nil || hc.StartPeriod == nil || hc.Retries == nil ||
		time.Duration(*hc.Timeout) <= 5*time.Second || time.Duration(*hc.StartPeriod) < 30*time.Second {
		t.Errorf("healthcheck timing: %+v (timeout must exceed health's own 5s)", hc)
	}
	if c.Environment["CDCAUDIT_HTTP_ADDR"] == nil || *c.Environment["CDCAUDIT_HTTP_ADDR"] != "0.0.0.0:9187" {
		t.Errorf("CDCAUDIT_HTTP_ADDR %v: health asks it on 127.0.0.1", c.Environment["CDCAUDIT_HTTP_ADDR"])
	}

	// Volumes.
	mount := func(s types.ServiceConfig, target string) *types.ServiceVolumeConfig {
		for i := range s.Volumes {
			if s.Volumes[i].Target == target {
				return &s.Volumes[i]
			}
		}
		t.Errorf("%s mounts nothing at %s", s.Name, target)
		return nil
	}
	if v := mount(c, "/odoo"); v != nil && (v.Type != types.VolumeTypeVolume || v.Source != "odoo-data" || !v.ReadOnly) {
		t.Errorf("Odoo's data in cdcaudit: %+v, want the odoo-data volume read-only", *v)
	}
	if v := mount(service(t, loadCompose(t, "erp"), "odoo"), "/var/lib/odoo"); v != nil && v.Source != "odoo-data" {
		t.Errorf("odoo's data directory: %+v", *v)
	}
	mount(c, "/data")
	prom := service(t, p, "prometheus")
	for target, src := range map[string]string{
		"/etc/prometheus/prometheus.yml":     "deploy/prometheus/prometheus.yml",
		"/etc/prometheus/cdcaudit-rules.yml": "deploy/prometheus/cdcaudit-rules.yml",
	} {
		if v := mount(prom, target); v != nil && (v.Type != types.VolumeTypeBind || !strings.HasSuffix(v.Source, src) || !v.ReadOnly) {
			t.Errorf("prometheus %s: %+v", target, *v)
		}
	}
	graf := service(t, p, "grafana")
	mount(graf, "/var/lib/grafana/dashboards")
	mount(graf, "/etc/grafana/provisioning")
	// Every bind mount's source is in the repository.
	for _, s := range loadCompose(t, "erp").Services {
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("%s: bind source %s: %v", s.Name, v.Source, err)
				}
			}
		}
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %s on %q, not loopback", s.Name, port.Published, port.HostIP)
			}
		}
	}
	for _, v := range []string{"odoo-data", "cdcaudit-data", "cdcaudit-anchors", "pgdata", "prometheus-data", "grafana-data"} {
		if _, ok := p.Volumes[v]; !ok {
			t.Errorf("volume %s not declared", v)
		}
	}
	// compose-go's validation is on: a wrong key is refused.
	bad := filepath.Join(t.TempDir(), "docker-compose.yml")
	os.WriteFile(bad, []byte("services:\n  x:\n    image: busybox\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      intervall: 5s\n"), 0o644)
	if _, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir: filepath.Dir(bad), ConfigFiles: []types.ConfigFile{{Filename: bad}}, Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("bad", true) }); err == nil {
		t.Error("compose-go accepted a healthcheck with a misspelt key")
	}
}
