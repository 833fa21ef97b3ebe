package config

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/dbsessions"
	"github.com/cdcaudit/cdcaudit/profile"
)

func env(m map[string]string) []string {
	var environ []string
	for k, v := range m {
		environ = append(environ, k+"="+v)
	}
	return environ
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cdcaudit.yml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// load binds every key, parses args and loads.
func load(t *testing.T, args []string, e map[string]string, required ...string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s := Bind(fs, Keys()...).Require(required...)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return s.Load(env(e))
}

func TestDefaults(t *testing.T) {
	c, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	if c.HTTPAddr != "127.0.0.1:9187" || c.Slot != "cdcaudit" || c.Publication != "cdcaudit" ||
		c.StatusInterval != time.Second || c.LogFormat != "text" || c.LogLevel != "info" || c.AcceptGap ||
		c.Tables != nil || c.Exclude != nil || c.DSN != "" || c.DataDir != "" {
		t.Fatalf("defaults: %+v", c)
	}
	if c.HTTPAddr != want.HTTPAddr {
		t.Fatal("Defaults() disagrees")
	}
	for _, k := range Keys() {
		if c.Sources[k] != "default" {
			t.Errorf("source of %s = %q", k, c.Sources[k])
		}
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, `
# every key
dsn: postgres://file@db/erp
data_dir: /var/lib/file
http_addr: 127.0.0.1:1111
slot: file_slot
publication: file_pub
tables: [public.sale_*, public.res_partner]
exclude: public.tmp_*, public.scratch
status_interval: 5s
log_format: json
log_level: debug
accept_gap: true
`)
	// File only.
	c, err := load(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.DSN != "postgres://file@db/erp" || c.DataDir != "/var/lib/file" || c.HTTPAddr != "127.0.0.1:1111" ||
		c.Slot != "file_slot" || c.Publication != "file_pub" || c.StatusInterval != 5*time.Second ||
		c.LogFormat != "json" || c.LogLevel != "debug" || !c.AcceptGap ||
		!reflect.DeepEqual(c.Tables, []string{"public.sale_*", "public.res_partner"}) ||
		!reflect.DeepEqual(c.Exclude, []string{"public.tmp_*", "public.scratch"}) {
		t.Fatalf("file: %+v", c)
	}
	if c.Sources[KeySlot] != file+":6" || c.File != file {
		t.Errorf("source of slot = %q, file %q", c.Sources[KeySlot], c.File)
	}

	// Environment over file.
	e := map[string]string{
		"CDCAUDIT_SLOT":            "env_slot",
		"CDCAUDIT_TABLES":          "public.a, public.b",
		"CDCAUDIT_ACCEPT_GAP":      "false",
		"CDCAUDIT_STATUS_INTERVAL": "250ms",
		"CDCAUDIT_PUBLICATION":     "", // empty = unset
	}
	c, err = load(t, []string{"--config", file}, e)
	if err != nil {
		t.Fatal(err)
	}
	if c.Slot != "env_slot" || c.AcceptGap || c.StatusInterval != 250*time.Millisecond ||
		!reflect.DeepEqual(c.Tables, []string{"public.a", "public.b"}) || c.Publication != "file_pub" {
		t.Fatalf("env over file: %+v", c)
	}
	if c.Sources[KeySlot] != "CDCAUDIT_SLOT" {
		t.Errorf("source = %q", c.Sources[KeySlot])
	}

	// Flags over environment; list flags repeat and split on commas.
	c, err = load(t, []string{"--config", file, "--slot", "flag_slot", "--tables", "public.x", "--tables=public.y,public.z", "--accept-gap", "--log-level=warn"}, e)
	if err != nil {
		t.Fatal(err)
	}
	if c.Slot != "flag_slot" || !c.AcceptGap || c.LogLevel != "warn" ||
		!reflect.DeepEqual(c.Tables, []string{"public.x", "public.y", "public.z"}) {
		t.Fatalf("flags over env: %+v", c)
	}
	if c.Sources[KeySlot] != "--slot" || c.Sources[KeyStatusInterval] != "CDCAUDIT_STATUS_INTERVAL" || c.Sources[KeyDSN] != file+":3" {
		t.Errorf("sources: %v", c.Sources)
	}

	// --accept-gap=false on the command line beats the file's true.
	c, err = load(t, []string{"--config", file, "--accept-gap=false"}, nil)
	if err != nil || c.AcceptGap {
		t.Fatalf("--accept-gap=false: %v %+v", err, c)
	}
}

func TestConfigFileFromEnv(t *testing.T) {
	file := writeFile(t, "slot: from_env_file\n")
	c, err := load(t, nil, map[string]string{EnvConfig: file})
	if err != nil || c.Slot != "from_env_file" {
		t.Fatalf("%v %+v", err, c)
	}
	other := writeFile(t, "slot: from_flag_file\n")
	c, err = load(t, []string{"--config", other}, map[string]string{EnvConfig: file})
	if err != nil || c.Slot != "from_flag_file" {
		t.Fatalf("%v %+v", err, c)
	}
}

func TestEmptyAndNullFile(t *testing.T) {
	for _, content := range []string{"", "# nothing\n", "---\n", "~\n"} {
		if _, err := load(t, []string{"--config", writeFile(t, content)}, nil); err != nil {
			t.Errorf("%q: %v", content, err)
		}
	}
}

// errorCase is a configuration that Load must refuse.
type errorCase struct {
	name string
	file string // YAML, "" for none
	args []string
	env  map[string]string
	want []string // substrings of the error
}

// wantLoadErrors checks that each case fails with its substrings and that
// no error repeats the password of a DSN ("s3cret" in the cases).
func wantLoadErrors(t *testing.T, cases []errorCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeFile(t, tc.file)}, args...)
			}
			_, err := load(t, args, tc.env)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error reveals the password: %v", err)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	cases := []errorCase{
		{name: "bad duration in file", file: "status_interval: x\n",
			want: []string{`config: status_interval: time: invalid duration "x"`, "cdcaudit.yml:1"}},
		{name: "bare number duration", file: "status_interval: 5\n",
			want: []string{`config: status_interval: time: missing unit in duration "5"`}},
		{name: "bad duration in env", env: map[string]string{"CDCAUDIT_STATUS_INTERVAL": "soon"},
			want: []string{`config: status_interval: time: invalid duration "soon" (from CDCAUDIT_STATUS_INTERVAL)`}},
		{name: "bad duration flag", args: []string{"--status-interval", "1 s"},
			want: []string{`config: status_interval:`, "(from --status-interval)"}},
		{name: "interval out of range", args: []string{"--status-interval", "0s"},
			want: []string{`config: status_interval: 0s is out of range`}},
		{name: "unknown key", file: "slot: a\nslots: b\n",
			want: []string{`unknown key "slots"`, "did you mean slot?", "cdcaudit.yml:2"}},
		{name: "dashed key", file: "data-dir: /x\n",
			want: []string{`unknown key "data-dir"`, "did you mean data_dir?"}},
		{name: "not a mapping", file: "- a\n- b\n", want: []string{"want a mapping"}},
		{name: "bad yaml", file: "slot: [\n", want: []string{"config: ", "cdcaudit.yml"}},
		{name: "duplicate key", file: "slot: a\nslot: b\n", want: []string{`"slot" already defined`}},
		{name: "bad bool in file", file: "accept_gap: maybe\n", want: []string{`config: accept_gap: invalid boolean "maybe"`}},
		{name: "bad bool in env", env: map[string]string{"CDCAUDIT_ACCEPT_GAP": "yes please"},
			want: []string{`config: accept_gap: invalid boolean "yes please" (want true or false) (from CDCAUDIT_ACCEPT_GAP)`}},
		{name: "bad log format", args: []string{"--log-format", "xml"},
			want: []string{`config: log_format: "xml" is not a log format (want text or json) (from --log-format)`}},
		{name: "bad log level", env: map[string]string{"CDCAUDIT_LOG_LEVEL": "verbose"},
			want: []string{`config: log_level: "verbose" is not a log level`, "CDCAUDIT_LOG_LEVEL"}},
		{name: "bad http addr", args: []string{"--http-addr", "9187"},
			want: []string{`config: http_addr: "9187" is not host:port`}},
		{name: "bad port", file: "http_addr: 127.0.0.1:99999\n",
			want: []string{`config: http_addr: "127.0.0.1:99999": bad port`}},
		{name: "bad slot", args: []string{"--slot", "My-Slot"},
			want: []string{`config: slot: "My-Slot": replication slot names may contain only`}},
		{name: "unqualified table", args: []string{"--tables", "sale_order"},
			want: []string{`config: tables: "sale_order" is not a schema-qualified table glob`, "(from --tables)"}},
		{name: "bad glob", file: "exclude: ['public.[a']\n", want: []string{`config: exclude: "public.[a": malformed glob`}},
		{name: "list of maps", file: "tables:\n  - {a: b}\n", want: []string{"config: tables: line 2: want a list of strings"}},
		{name: "mapping for scalar", file: "slot:\n  a: b\n", want: []string{"config: slot: want a single value, not a mapping"}},
		{name: "null scalar", file: "slot:\n", want: []string{"config: slot: no value"}},
		{name: "missing file", args: []string{"--config", "/nonexistent/cdcaudit.yml"}, want: []string{"config: open /nonexistent/cdcaudit.yml"}},
		{name: "bad dsn", args: []string{"--dsn", "postgres://u:s3cret@host:notaport/db"},
			want: []string{"config: dsn: cannot parse the connection string", "(from --dsn)"}},
	}
	wantLoadErrors(t, cases)
}

func TestRequired(t *testing.T) {
	_, err := load(t, nil, nil, KeyDSN, KeyDataDir)
	if err == nil || err.Error() != "config: dsn is required: set --dsn or CDCAUDIT_DSN (or dsn in the --config file)" {
		t.Fatalf("got %v", err)
	}
	_, err = load(t, []string{"--dsn", "postgres://localhost/db"}, nil, KeyDSN, KeyDataDir)
	if err == nil || !strings.Contains(err.Error(), "data_dir is required: set --data-dir or CDCAUDIT_DATA_DIR") {
		t.Fatalf("got %v", err)
	}
	c, err := load(t, []string{"--dsn", "postgres://localhost/db"}, map[string]string{"CDCAUDIT_DATA_DIR": "/d"}, KeyDSN, KeyDataDir)
	if err != nil || c.DataDir != "/d" {
		t.Fatalf("%v %+v", err, c)
	}
}

// Keys that are not bound to a command are neither read from the
// environment nor offered as flags.
func TestOnlyBoundKeys(t *testing.T) {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s := Bind(fs, KeyDataDir)
	if fs.Lookup("slot") != nil || fs.Lookup("data-dir") == nil || fs.Lookup("config") == nil {
		t.Fatal("wrong flags bound")
	}
	if err := fs.Parse([]string{"--slot", "x"}); err == nil {
		t.Fatal("--slot accepted by a command that does not bind it")
	}
	fs.Parse(nil)
	c, err := s.Load(env(map[string]string{"CDCAUDIT_LOG_LEVEL": "verbose", "CDCAUDIT_DATA_DIR": "/d"}))
	if err != nil || c.DataDir != "/d" {
		t.Fatalf("%v %+v", err, c)
	}
}

func TestUsageMentionsEnvAndDefault(t *testing.T) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	Bind(fs, Keys()...)
	f := fs.Lookup("http-addr")
	if !strings.Contains(f.Usage, "[CDCAUDIT_HTTP_ADDR]") || !strings.Contains(f.Usage, "(default 127.0.0.1:9187)") {
		t.Fatalf("usage: %q", f.Usage)
	}
	if f.DefValue != "" {
		t.Fatalf("flag default %q would hide env/file values", f.DefValue)
	}
}

func TestDescribeDSN(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://alice:s3cret@db.example:5433/erp?sslmode=disable": "postgres://alice@db.example:5433/erp",
		"host=db user=bob password=s3cret dbname=erp":                 "postgres://bob@db:5432/erp",
		"postgres://u:s3cret@host:notaport/db":                        "(unparsable connection string)",
	} {
		got := DescribeDSN(in)
		if got != want {
			t.Errorf("DescribeDSN(%q) = %q, want %q", in, got, want)
		}
	}
	c := &Config{DSN: "postgres://alice:s3cret@db/erp", Sources: map[string]string{}}
	if d := strings.Join(c.Describe(), "\n"); strings.Contains(d, "s3cret") || !strings.Contains(d, "dsn=postgres://alice@db:5432/erp") {
		t.Fatalf("Describe: %s", d)
	}
}

// The documented example file is valid and sets every key.
func TestExampleFile(t *testing.T) {
	c, err := load(t, []string{"--config", "../../docs/cdcaudit.example.yml"}, nil, KeyDSN, KeyDataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if c.Sources[k] == "default" {
			t.Errorf("docs/cdcaudit.example.yml does not show %s", k)
		}
	}
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	def := Defaults()
	for _, k := range keys {
		row := "| `" + k.name + "` | `" + EnvName(k.name) + "` | `--" + FlagName(k.name) + "` | "
		_, rest, ok := strings.Cut(string(doc), row)
		if !ok {
			t.Errorf("docs/configuration.md lacks the row of %s", k.name)
			continue
		}
		// Its default column says the owner's default.
		shown, _, _ := strings.Cut(rest, " |")
		want := k.value(&def)
		if want.empty() || k.kind() == boolean && !strings.HasPrefix(shown, "`") {
			continue
		}
		var doc Config
		if err := k.value(&doc).set(strings.Trim(shown, "`")); err != nil || k.value(&doc).String() != want.String() {
			t.Errorf("docs/configuration.md: the default of %s is %s, not %s (%v)", k.name, shown, want, err)
		}
	}
}

func TestAttributionKeys(t *testing.T) {
	c, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Profile != "auto" || c.ProfileFile != "" || c.Redact != nil || c.RedactKeyFile != "" ||
		c.IdleAfter != 5*time.Minute || c.SessionLifetime != 168*time.Hour || c.GeoIPDB != "" {
		t.Fatalf("defaults: %+v", c)
	}

	file := writeFile(t, `
profile: generic
profile_file: /etc/cdcaudit/app.yml
redact:
  - public.res_partner.vat
  - {table: public.settings, column: value, where: name, values: ["*secret*"]}
  - "public.t.c[k=a|b]"
redact_key_file: /etc/cdcaudit/redact.key
idle_after: 10m
session_lifetime: 8h
geoip_db: /var/lib/GeoLite2-City.mmdb
`)
	c, err = load(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantRules := []profile.ColumnRule{
		{Table: "public.res_partner", Column: "vat"},
		{Table: "public.settings", Column: "value", Where: "name", Values: []string{"*secret*"}},
		{Table: "public.t", Column: "c", Where: "k", Values: []string{"a", "b"}},
	}
	if c.Profile != "generic" || c.ProfileFile != "/etc/cdcaudit/app.yml" || !reflect.DeepEqual(c.Redact, wantRules) ||
		c.RedactKeyFile != "/etc/cdcaudit/redact.key" || c.IdleAfter != 10*time.Minute || c.SessionLifetime != 8*time.Hour ||
		c.GeoIPDB != "/var/lib/GeoLite2-City.mmdb" {
		t.Fatalf("file: %+v", c)
	}
	d := strings.Join(c.Describe(), "\n")
	for _, w := range []string{"profile=generic (", "redact=public.res_partner.vat,public.settings.value[name=*secret*],public.t.c[k=a|b] (",
		"idle_after=10m0s (", "session_lifetime=8h0m0s (", "redact_key_file=/etc/cdcaudit/redact.key ("} {
		if !strings.Contains(d, w) {
			t.Errorf("Describe lacks %q:\n%s", w, d)
		}
	}

	// Environment over file, flags over environment; rules are replaced,
	// not merged, like every list.
	e := map[string]string{"CDCAUDIT_REDACT": "public.a.x, public.b.y", "CDCAUDIT_IDLE_AFTER": "1m", "CDCAUDIT_PROFILE": "odoo", "CDCAUDIT_PROFILE_FILE": ""}
	c, err = load(t, []string{"--config", file, "--redact", "public.c.z[name=*token*]", "--redact", "*.*.api_key"}, e)
	if err == nil || !strings.Contains(err.Error(), "config: profile_file: set, but profile is odoo") {
		t.Fatalf("profile_file with odoo: %v", err)
	}
	c, err = load(t, []string{"--config", file, "--redact", "public.c.z[name=*token*]", "--redact", "*.*.api_key", "--profile", "generic"}, e)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Redact, []profile.ColumnRule{{Table: "public.c", Column: "z", Where: "name", Values: []string{"*token*"}}, {Table: "*.*", Column: "api_key"}}) ||
		c.IdleAfter != time.Minute || c.Sources[KeyRedact] != "--redact" || c.Sources[KeyIdleAfter] != "CDCAUDIT_IDLE_AFTER" {
		t.Fatalf("flags: %+v", c)
	}
	c, err = load(t, nil, map[string]string{"CDCAUDIT_REDACT": "public.a.x,public.b.y"})
	if err != nil || len(c.Redact) != 2 || !reflect.DeepEqual(c.Redact[1], profile.ColumnRule{Table: "public.b", Column: "y"}) {
		t.Fatalf("env: %v %+v", err, c)
	}
	// An empty list in YAML is no rules.
	c, err = load(t, []string{"--config", writeFile(t, "redact: []\n")}, nil)
	if err != nil || c.Redact != nil {
		t.Fatalf("empty: %v %+v", err, c.Redact)
	}
}

func TestAttributionKeyErrors(t *testing.T) {
	cases := []errorCase{
		{name: "bad profile", args: []string{"--profile", "sap"}, want: []string{`config: profile: "sap" is not a profile (want auto, odoo, generic, none) (from --profile)`}},
		{name: "generic without file", env: map[string]string{"CDCAUDIT_PROFILE": "generic"}, want: []string{"config: profile: generic needs profile_file", "CDCAUDIT_PROFILE"}},
		{name: "file with auto", args: []string{"--profile-file", "/x.yml"}, want: []string{"config: profile_file: set, but profile is auto", "(from --profile-file)"}},
		{name: "unqualified rule", env: map[string]string{"CDCAUDIT_REDACT": "res_partner.vat"},
			want: []string{`config: redact: "res_partner.vat": table: "res_partner" is not schema-qualified`, "(from CDCAUDIT_REDACT)"}},
		{name: "rule without column", args: []string{"--redact", "vat"}, want: []string{`config: redact: "vat" is not schema.table.column`}},
		{name: "bad rule glob", file: "redact: ['public.[x.c']\n", want: []string{"config: redact: line 1:", "malformed glob", "cdcaudit.yml:1"}},
		{name: "rule field typo", file: "redact:\n  - {table: public.t, colum: c}\n", want: []string{`config: redact: line 2: unknown field "colum"`}},
		{name: "rule where without values", file: "redact:\n  - {table: public.t, column: c, where: k}\n", want: []string{`config: redact: line 2: where: "k" given without values`}},
		{name: "rule values not a list", file: "redact:\n  - {table: public.t, column: c, where: k, values: {a: b}}\n", want: []string{"config: redact: line 2:"}},
		{name: "rules as a mapping", file: "redact:\n  table: public.t\n", want: []string{"config: redact: want a list of rules"}},
		{name: "rule list of lists", file: "redact:\n  - [a]\n", want: []string{"config: redact: line 2: want schema.table.column"}},
		{name: "bad idle", args: []string{"--idle-after", "5"}, want: []string{`config: idle_after: time: missing unit in duration "5"`}},
		{name: "idle out of range", file: "idle_after: 0s\n", want: []string{"config: idle_after: 0s is out of range"}},
		{name: "lifetime shorter than idle", args: []string{"--session-lifetime", "2m", "--idle-after", "10m"},
			want: []string{"config: session_lifetime: 2m0s is shorter than idle_after (10m0s)"}},
		{name: "lifetime out of range", env: map[string]string{"CDCAUDIT_SESSION_LIFETIME": "10s"}, want: []string{"config: session_lifetime: 10s is out of range"}},
		{name: "empty profile in file", file: "profile: \"\"\n", want: []string{`config: profile: "" is not a profile`}},
	}
	wantLoadErrors(t, cases)
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := write("redact.key", "  0123456789abcdef0123456789abcdef\n")
	prof := write("app.yml", "sessions: [{table: public.s, kind: session, id: sid, user: uid}]\n")
	mmdb := write("geo.mmdb", "not checked beyond being a non-empty file")
	c, err := load(t, []string{"--profile", "generic", "--profile-file", prof, "--redact-key-file", key, "--geoip-db", mmdb}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckFiles(); err != nil {
		t.Fatal(err)
	}
	k, err := c.ReadRedactKey()
	if err != nil || string(k) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("key %q %v", k, err)
	}
	if d := strings.Join(c.Describe(), "\n"); strings.Contains(d, "0123456789abcdef") {
		t.Fatalf("Describe shows the key:\n%s", d)
	}
	if k, err := (&Config{}).ReadRedactKey(); k != nil || err != nil {
		t.Fatalf("no key file: %q %v", k, err)
	}

	short := write("short.key", "s3cr3t-short\n")
	typo := write("typo.yml", "sessions: [{table: public.s, kind: session, id: sid, usr: uid}]\n")
	empty := write("empty.mmdb", "")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--redact-key-file", short}, []string{"config: redact_key_file:", "the key has 12 bytes, want at least 16", "(from --redact-key-file)"}},
		{[]string{"--redact-key-file", filepath.Join(dir, "missing.key")}, []string{"config: redact_key_file:", "no such file"}},
		{[]string{"--redact-key-file", dir}, []string{"config: redact_key_file:", "not a regular file"}},
		{[]string{"--profile", "generic", "--profile-file", typo}, []string{"config: profile_file:", "typo.yml", "field usr not found"}},
		{[]string{"--profile", "generic", "--profile-file", filepath.Join(dir, "nope.yml")}, []string{"config: profile_file:", "no such file"}},
		{[]string{"--geoip-db", filepath.Join(dir, "nope.mmdb")}, []string{"config: geoip_db:", "no such file", "(from --geoip-db)"}},
		{[]string{"--geoip-db", empty}, []string{"config: geoip_db: empty file"}},
	} {
		c, err := load(t, tc.args, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = c.CheckFiles()
		if err == nil {
			t.Errorf("%v: no error", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q lacks %q", tc.args, err, w)
			}
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error reveals the key: %v", err)
		}
	}
}

// The generic profile shown in docs/configuration.md is valid.
func TestDocumentedGenericProfile(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## The generic profile")
	if !ok {
		t.Fatal("no generic profile section")
	}
	_, block, _ := strings.Cut(section, "```yaml\n")
	block, _, _ = strings.Cut(block, "```")
	p, err := profile.Parse([]byte(block))
	if err != nil || p.Name != "shop" || len(p.Sessions) != 1 || p.Columns.UpdatedAt != "updated_at" {
		t.Fatalf("%v %+v", err, p)
	}
	// And so is the redact example.
	_, section, _ = strings.Cut(string(doc), "## Secrets")
	_, block, _ = strings.Cut(section, "```yaml\n")
	block, _, _ = strings.Cut(block, "```")
	c, err := load(t, []string{"--config", writeFile(t, block)}, nil)
	if err != nil || len(c.Redact) != 3 {
		t.Fatalf("%v %+v", err, c)
	}
}

// A misspelt CDCAUDIT_* variable is an error naming it and the variable it
// probably meant, like an unknown YAML key; it is never silently ignored.
func TestUnknownEnvVariable(t *testing.T) {
	for _, tc := range []struct{ name, hint string }{
		{"CDCAUDIT_DATADIR", "CDCAUDIT_DATA_DIR"},
		{"CDCAUDIT_SLOT_NAME", "CDCAUDIT_SLOT"},
		{"CDCAUDIT_ACEPT_GAP", "CDCAUDIT_ACCEPT_GAP"},
		{"CDCAUDIT_CONFG", "CDCAUDIT_CONFIG"},
		{"CDCAUDIT_NONSENSE", ""},
	} {
		_, err := load(t, nil, map[string]string{tc.name: "x", "CDCAUDIT_DATA_DIR": "/d"})
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "unknown environment variable "+tc.name) {
			t.Errorf("%s: error does not name it: %v", tc.name, err)
		}
		if tc.hint != "" && !strings.Contains(msg, "did you mean "+tc.hint+"?") {
			t.Errorf("%s: error does not suggest %s: %v", tc.name, tc.hint, err)
		}
		if tc.hint == "" && strings.Contains(msg, "did you mean") {
			t.Errorf("%s: far-fetched suggestion: %v", tc.name, err)
		}
	}
	// Known variables, an empty unknown one (empty counts as unset) and
	// other programs' variables pass.
	c, err := load(t, nil, map[string]string{"CDCAUDIT_PG_BINDIR": "/usr/lib/postgresql/15/bin",
		"CDCAUDIT_DATADIR": "", "CDCAUDIT_SLOT": "s1", "PGHOST": "db", "HOME": "/root"})
	if err != nil || c.Slot != "s1" {
		t.Fatalf("known variables refused: %v", err)
	}
}

func TestSnapshotKeys(t *testing.T) {
	c, err := load(t, nil, nil)
	if err != nil || c.Snapshot != "initial" || c.SnapshotTables != nil {
		t.Fatalf("defaults: %v %q %v", err, c.Snapshot, c.SnapshotTables)
	}
	file := writeFile(t, "snapshot: never\nsnapshot_tables: [public.res_*, public.sale_order]\n")
	c, err = load(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Snapshot != "never" || !reflect.DeepEqual(c.SnapshotTables, []string{"public.res_*", "public.sale_order"}) {
		t.Fatalf("file: %v %q %v", err, c.Snapshot, c.SnapshotTables)
	}
	c, err = load(t, []string{"--config", file, "--snapshot", "initial"}, map[string]string{"CDCAUDIT_SNAPSHOT_TABLES": "public.a,s.b"})
	if err != nil || c.Snapshot != "initial" || !reflect.DeepEqual(c.SnapshotTables, []string{"public.a", "s.b"}) ||
		c.Sources[KeySnapshot] != "--snapshot" || c.Sources[KeySnapshotTables] != "CDCAUDIT_SNAPSHOT_TABLES" {
		t.Fatalf("flags and env: %v %+v", err, c)
	}
	wantLoadErrors(t, []errorCase{
		{name: "bad mode", env: map[string]string{"CDCAUDIT_SNAPSHOT": "always"},
			want: []string{`config: snapshot: "always" is not a snapshot mode (want initial or never) (from CDCAUDIT_SNAPSHOT)`}},
		{name: "bad glob", args: []string{"--snapshot-tables", "public.[x"}, want: []string{`config: snapshot_tables: "public.[x": malformed glob (from --snapshot-tables)`}},
		{name: "unqualified", file: "snapshot_tables: [sale_order]\n", want: []string{`config: snapshot_tables: "sale_order" is not a schema-qualified table glob`}},
	})
}

// The README's example file is valid.
func TestReadmeExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "### Configuration")
	_, block, ok2 := strings.Cut(section, "```yaml\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("no YAML example under ### Configuration")
	}
	c, err := load(t, []string{"--config", writeFile(t, block)}, nil)
	if err != nil || c.Retention.Default != 400*24*time.Hour || c.Sources[KeySlot] == "default" {
		t.Fatalf("%v %+v", err, c)
	}
}

func TestDBSessionsKeys(t *testing.T) {
	file := writeFile(t, "db_sessions_interval: 30s\ndb_sessions_app_roles: [odoo]\ndb_sessions_app_names: [\"odoo-*\", erp]\ndb_sessions_app_addrs: 10.0.3.0/24,local\n")
	c, err := load(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := dbsessions.App{Roles: []string{"odoo"}, Names: []string{"odoo-*", "erp"}, Addrs: []string{"10.0.3.0/24", "local"}}
	if c.DBSessionsInterval != 30*time.Second || !reflect.DeepEqual(c.DBSessionsApp(), want) {
		t.Fatalf("%v %+v", c.DBSessionsInterval, c.DBSessionsApp())
	}
	// Nothing left to tell the application's sessions by: refused, not
	// every session taken for the application's.
	_, err = load(t, nil, map[string]string{"CDCAUDIT_DB_SESSIONS_APP_NAMES": "", "CDCAUDIT_DB_SESSIONS_APP_ROLES": ""})
	if err != nil {
		t.Fatalf("an empty variable is unset: %v", err)
	}
	file = writeFile(t, "db_sessions_app_names: []\n")
	if _, err = load(t, []string{"--config", file}, nil); err == nil || !strings.Contains(err.Error(), "config: db_sessions_app_names: ") {
		t.Errorf("no list: %v", err)
	}
}
