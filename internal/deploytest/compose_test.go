package deploytest

import (
	"context"
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/cdcaudit/cdcaudit/internal/config"
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
	disabled := p.DisabledServiceNames()
	slices.Sort(disabled)
	if want := []string{"audit-db", "kafka", "odoo"}; !slices.Equal(disabled, want) {
		t.Errorf("services behind a profile: %v, want %v", disabled, want)
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
	// Ending a session removes its file: the store is mounted read-write,
	// and cdcaudit runs as Odoo's user (the store's directory is 0700) with
	// group 0, which owns the image's data directories.
	if v := mount(c, "/odoo"); v != nil && (v.Type != types.VolumeTypeVolume || v.Source != "odoo-data" || v.ReadOnly) {
		t.Errorf("Odoo's data in cdcaudit: %+v, want the odoo-data volume read-write", *v)
	}
	if c.User != "101:0" {
		t.Errorf("cdcaudit runs as %q, want Odoo's user with group 0 (101:0)", c.User)
	}
	if !strings.Contains(string(dockerfile), "--chown=65532:0 /out/data /data") || !strings.Contains(string(dockerfile), "chmod 0770 /out/data") {
		t.Error("the Dockerfile's /data is not group 0's with rwx: cdcaudit run as 101:0 could not write its store")
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
	for _, s := range loadCompose(t, "erp", "sinks").Services {
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
	for _, v := range []string{"odoo-data", "cdcaudit-data", "cdcaudit-anchors", "pgdata", "prometheus-data", "grafana-data", "audit-pgdata", "kafka-data"} {
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

// TestComposeSinks: the profile sinks adds an audit database and a Kafka
// broker, each with a healthcheck, a volume of its own and its port on
// loopback; deploy/sinks.env, loaded as `docker compose --env-file` loads
// it, turns the profile on and points cdcaudit at both (values cdcaudit's
// own configuration accepts), and cdcaudit waits for them to be healthy;
// without it cdcaudit starts alone, without sinks.
func TestComposeSinks(t *testing.T) {
	p := loadCompose(t, "sinks")
	names := p.ServiceNames()
	slices.Sort(names)
	if want := []string{"audit-db", "cdcaudit", "grafana", "kafka", "postgres", "prometheus"}; !slices.Equal(names, want) {
		t.Errorf("services with --profile sinks: %v, want %v", names, want)
	}
	db, kafka := service(t, p, "audit-db"), service(t, p, "kafka")
	for _, s := range []types.ServiceConfig{db, kafka} {
		if !slices.Equal(s.Profiles, []string{"sinks"}) {
			t.Errorf("%s: profiles %v", s.Name, s.Profiles)
		}
		if !regexp.MustCompile(`^[a-z/]+:[0-9][0-9.]*$`).MatchString(s.Image) {
			t.Errorf("%s: image %q, want a pinned version tag", s.Name, s.Image)
		}
		hc := s.HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) < 2 || hc.Test[0] != "CMD" || hc.Interval == nil || hc.Timeout == nil || hc.Retries == nil {
			t.Errorf("%s: healthcheck %+v", s.Name, hc)
		}
		if len(s.Ports) != 1 || s.Ports[0].HostIP != "127.0.0.1" {
			t.Errorf("%s: ports %+v, want one, on loopback", s.Name, s.Ports)
		}
	}
	volume := func(s types.ServiceConfig, target, source string) {
		for _, v := range s.Volumes {
			if v.Target == target {
				if v.Type != types.VolumeTypeVolume || v.Source != source {
					t.Errorf("%s: %s is %+v, want the volume %s", s.Name, target, v, source)
				}
				return
			}
		}
		t.Errorf("%s mounts nothing at %s", s.Name, target)
	}
	volume(db, "/var/lib/postgresql/data", "audit-pgdata")
	volume(kafka, "/var/lib/kafka/data", "kafka-data")
	env := func(s types.ServiceConfig, k string) string {
		if v := s.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
	if h := db.HealthCheck.Test; !slices.Contains(h, "pg_isready") || !slices.Contains(h, env(db, "POSTGRES_USER")) || !slices.Contains(h, env(db, "POSTGRES_DB")) {
		t.Errorf("audit-db healthcheck %q does not ask its own user and database", h)
	}
	// KRaft, one node that is its own controller, its data where the
	// volume is, and the listener the healthcheck asks.
	if env(kafka, "KAFKA_PROCESS_ROLES") != "broker,controller" || env(kafka, "KAFKA_CONTROLLER_QUORUM_VOTERS") != env(kafka, "KAFKA_NODE_ID")+"@kafka:9093" ||
		env(kafka, "KAFKA_LOG_DIRS") != "/var/lib/kafka/data" || env(kafka, "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR") != "1" {
		t.Errorf("kafka is not a single KRaft node writing to its volume: %v", kafka.Environment)
	}
	if id := env(kafka, "CLUSTER_ID"); len(id) != 22 {
		t.Errorf("CLUSTER_ID %q is not a base64 UUID", id)
	}
	if !slices.Contains(kafka.HealthCheck.Test, "127.0.0.1:9092") || !strings.Contains(env(kafka, "KAFKA_LISTENERS"), "PLAINTEXT://:9092") {
		t.Errorf("kafka healthcheck %q asks no listener of %q", kafka.HealthCheck.Test, env(kafka, "KAFKA_LISTENERS"))
	}
	if pub := kafka.Ports[0]; pub.Published != "29092" || !strings.Contains(env(kafka, "KAFKA_ADVERTISED_LISTENERS"), "HOST://127.0.0.1:29092") {
		t.Errorf("kafka's port for this host %+v is not the one it advertises (%s)", pub, env(kafka, "KAFKA_ADVERTISED_LISTENERS"))
	}

	// cdcaudit waits for both when they exist, and does not need them.
	c := service(t, p, "cdcaudit")
	for _, dep := range []string{"audit-db", "kafka"} {
		d, ok := c.DependsOn[dep]
		if !ok || d.Condition != types.ServiceConditionHealthy || d.Required {
			t.Errorf("cdcaudit depends on %s: %+v (present %v), want service_healthy, required: false", dep, d, ok)
		}
	}
	if d := c.DependsOn["postgres"]; d.Condition != types.ServiceConditionHealthy || !d.Required {
		t.Errorf("cdcaudit depends on postgres: %+v", d)
	}
	plain := service(t, loadCompose(t), "cdcaudit")
	if env(plain, "CDCAUDIT_SINK_POSTGRES_DSN") != "" || env(plain, "CDCAUDIT_SINK_KAFKA_BROKERS") != "" {
		t.Errorf("without deploy/sinks.env cdcaudit has sinks: %v", plain.Environment)
	}
	if _, err := cdcauditConfig(plain); err != nil {
		t.Errorf("cdcaudit's environment without sinks: %v", err)
	}

	// With deploy/sinks.env, as docker compose --env-file loads it.
	root, _ := filepath.Abs(repoRoot)
	o, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithEnvFiles(filepath.Join(root, "deploy", "sinks.env")), cli.WithDotEnv,
		cli.WithDefaultProfiles(), cli.WithName("cdcaudit"), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := o.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose-go with deploy/sinks.env: %v", err)
	}
	if names := ps.ServiceNames(); !slices.Contains(names, "audit-db") || !slices.Contains(names, "kafka") {
		t.Errorf("deploy/sinks.env does not turn the profile sinks on: %v", names)
	}
	cs := service(t, ps, "cdcaudit")
	cfg, err := cdcauditConfig(cs)
	if err != nil {
		t.Fatalf("cdcaudit's environment with sinks: %v", err)
	}
	u, err := url.Parse(cfg.SinkPostgresDSN)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	dbs := service(t, ps, "audit-db")
	if u.Host != "audit-db:5432" || u.User.Username() != env(dbs, "POSTGRES_USER") || pw != env(dbs, "POSTGRES_PASSWORD") || u.Path != "/"+env(dbs, "POSTGRES_DB") {
		t.Errorf("sink_postgres_dsn %s is not the audit-db service's database", config.DescribeDSN(cfg.SinkPostgresDSN))
	}
	if !slices.Equal(cfg.SinkKafkaBrokers, []string{"kafka:9092"}) || !strings.Contains(env(service(t, ps, "kafka"), "KAFKA_ADVERTISED_LISTENERS"), "PLAINTEXT://kafka:9092") {
		t.Errorf("sink_kafka_brokers %v is not the listener kafka advertises in the compose network", cfg.SinkKafkaBrokers)
	}
	if _, ok, err := cfg.KafkaSink(); !ok || err != nil {
		t.Errorf("Kafka sink: %v %v", ok, err)
	}
}

// cdcauditConfig loads cdcaudit's configuration from a service's
// environment, as `cdcaudit run` would: unknown variables and bad values
// are errors.
func cdcauditConfig(s types.ServiceConfig) (*config.Config, error) {
	var environ []string
	for k, v := range s.Environment {
		if v != nil {
			environ = append(environ, k+"="+*v)
		}
	}
	return config.Bind(flag.NewFlagSet("run", flag.ContinueOnError), config.Keys()...).Require(config.KeyDSN, config.KeyDataDir).Load(environ)
}
