package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/profile"
)

// The attribution keys reach the pipeline.
func TestPipelineConfigAttribution(t *testing.T) {
	cfg := config.Defaults()
	cfg.Profile, cfg.ProfileFile = "generic", "/etc/app.yml"
	cfg.Redact = []profile.ColumnRule{{Table: "public.t", Column: "c"}}
	cfg.IdleAfter, cfg.SessionLifetime, cfg.GeoIPDB = time.Minute, time.Hour, "/geo.mmdb"
	pc := pipelineConfig(&cfg, nil, nil)
	if pc.Profile != "generic" || pc.ProfileFile != "/etc/app.yml" || !reflect.DeepEqual(pc.Redact, cfg.Redact) ||
		pc.IdleAfter != time.Minute || pc.SessionLifetime != time.Hour || pc.GeoIPPath != "/geo.mmdb" || pc.RedactKey != nil {
		t.Fatalf("%+v", pc)
	}
	def := config.Defaults()
	if pc := pipelineConfig(&def, nil, nil); pc.Profile != "auto" || pc.IdleAfter != 5*time.Minute || pc.SessionLifetime != 168*time.Hour {
		t.Fatalf("defaults: %+v", pc)
	}
	// Without metrics the pipeline gets none: not a nil *Metrics it would call.
	if pc.Metrics != nil || pc.Replication.Observer != nil {
		t.Fatalf("no metrics given, yet the pipeline has %#v and %#v", pc.Metrics, pc.Replication.Observer)
	}
}

// A bad file named by the configuration stops run before it connects, with
// exit status 2, and never shows the key.
func TestRunBadFiles(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("k3y-s3cret\n"), 0o600)
	typo := filepath.Join(dir, "app.yml")
	os.WriteFile(typo, []byte("sesions: []\n"), 0o600)
	good := []string{"run", "--dsn", "postgres://u@127.0.0.1:1/erp", "--data-dir", dir}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--redact-key-file", short}, []string{"config: redact_key_file:", "want at least 16"}},
		{[]string{"--profile", "generic", "--profile-file", typo}, []string{"config: profile_file:", "field sesions not found"}},
		{[]string{"--geoip-db", filepath.Join(dir, "none.mmdb")}, []string{"config: geoip_db:"}},
		{[]string{"--profile", "generic"}, []string{"config: profile: generic needs profile_file"}},
		{[]string{"--redact", "vat"}, []string{`config: redact: "vat" is not schema.table.column`}},
	} {
		out, errOut, code := runCLI(t, nil, append(good, tc.args...)...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d; stderr %q", tc.args, code, exitUsage, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%v: stderr %q lacks %q", tc.args, errOut, w)
			}
		}
		if strings.Contains(out+errOut, "s3cret") {
			t.Errorf("output shows the key: %s", errOut)
		}
	}
	// --print-config shows the key file's name only.
	key := filepath.Join(dir, "good.key")
	os.WriteFile(key, []byte("0123456789abcdef-s3cret\n"), 0o600)
	got := printConfig(t, nil, "--dsn", "postgres://u@db/erp", "--data-dir", dir, "--redact-key-file", key, "--redact", "public.a.b,*.*.token", "--profile", "odoo")
	if got["redact_key_file"] != key+" (--redact-key-file)" || got["redact"] != "public.a.b,*.*.token (--redact)" || got["profile"] != "odoo (--profile)" {
		t.Errorf("print-config: %v", got)
	}
}
