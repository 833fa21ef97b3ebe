package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/metrics"
	"github.com/cdcaudit/cdcaudit/sink"
	bolt "go.etcd.io/bbolt"
)

// runCLI runs cdcaudit with args and an environment of exactly env.
func runCLI(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	for k, v := range env {
		c.env = append(c.env, k+"="+v)
	}
	code = c.main(args)
	return out.String(), errb.String(), code
}

// commandFlags are the flags each command must offer (operators' scripts
// depend on these names).
var commandFlags = map[string][]string{
	"run": {"dsn", "data-dir", "config", "http-addr", "tls-cert-file", "tls-key-file", "allow-plain-http", "pprof", "slot", "publication", "tables", "exclude", "accept-gap",
		"anchor-file", "anchor-syslog", "status-interval", "log-format", "log-level", "snapshot", "snapshot-tables"},
	"check":    {"dsn", "config", "slot", "publication", "tables", "exclude"},
	"export":   {"data-dir", "format", "since", "until", "table", "op", "user", "session", "record", "flag", "out", "manifest", "config"},
	"events":   {"data-dir", "record", "at", "format", "config"},
	"alerts":   {"data-dir", "kind", "user", "since", "format", "config"},
	"verify":   {"data-dir", "anchor", "export", "manifest", "public-key", "config"},
	"reindex":  {"data-dir", "config"},
	"backup":   {"data-dir", "out", "config"},
	"demo":     {"data-dir", "http-addr", "rate"},
	"status":   {"data-dir", "format", "config"},
	"snapshot": {"data-dir", "table", "config"},
	"health":   {"url", "timeout"},
	"version":  {},
}

func TestHelpForEveryCommand(t *testing.T) {
	for _, cmd := range commands {
		if cmd.name == "help" {
			continue
		}
		flags, ok := commandFlags[cmd.name]
		if !ok {
			t.Errorf("command %s has no entry in commandFlags", cmd.name)
		}
		for _, args := range [][]string{{cmd.name, "--help"}, {cmd.name, "-h"}, {"help", cmd.name}} {
			out, errOut, code := runCLI(t, nil, args...)
			if code != 0 || errOut != "" {
				t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
			}
			if !strings.HasPrefix(out, "Usage: cdcaudit "+cmd.name) {
				t.Errorf("%v: help does not start with its usage line:\n%s", args, out)
			}
			for _, f := range flags {
				if !strings.Contains(out, "\n  --"+f+" ") && !strings.Contains(out, "\n  --"+f+"\n") {
					t.Errorf("%v: help lacks --%s:\n%s", args, f, out)
				}
			}
		}
	}
	// Settings that come from the environment say so in --help.
	out, _, _ := runCLI(t, nil, "run", "--help")
	for _, s := range []string{"[CDCAUDIT_DSN]", "[CDCAUDIT_DATA_DIR]", "(default 127.0.0.1:9187)", "(default cdcaudit)", "Examples:"} {
		if !strings.Contains(out, s) {
			t.Errorf("run --help lacks %q", s)
		}
	}
}

func TestUsageListsEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		out, _, code := runCLI(t, nil, args...)
		if code != 0 {
			t.Errorf("%v: exit %d", args, code)
		}
		for _, cmd := range []string{"run", "check", "export", "verify", "demo", "version", "help"} {
			if !strings.Contains(out, "\n  "+cmd+" ") {
				t.Errorf("%v: usage lacks %s:\n%s", args, cmd, out)
			}
		}
	}
	// No arguments: the usage, on stderr, and a usage exit status.
	out, errOut, code := runCLI(t, nil)
	if code != exitUsage || out != "" || !strings.Contains(errOut, "cdcaudit demo") {
		t.Errorf("no args: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestVersionAndUnknownCommand(t *testing.T) {
	out, _, code := runCLI(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "cdcaudit ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: %d %q", code, out)
	}
	if out2, _, _ := runCLI(t, nil, "--version"); out2 != out {
		t.Errorf("--version = %q, version = %q", out2, out)
	}
	_, errOut, code := runCLI(t, nil, "exprot")
	if code != exitUsage || !strings.Contains(errOut, `unknown command "exprot"`) || !strings.Contains(errOut, `did you mean "export"`) {
		t.Errorf("unknown command: %d %q", code, errOut)
	}
	_, errOut, code = runCLI(t, nil, "help", "nope")
	if code != exitUsage || !strings.Contains(errOut, "nope") {
		t.Errorf("help nope: %d %q", code, errOut)
	}
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cdcaudit.yml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// printConfig runs `run --print-config` and returns key → "value (source)".
func printConfig(t *testing.T, env map[string]string, args ...string) map[string]string {
	t.Helper()
	out, errOut, code := runCLI(t, env, append([]string{"run", "--print-config"}, args...)...)
	if code != 0 {
		t.Fatalf("run --print-config %v: exit %d: %s", args, code, errOut)
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(line, "=")
		m[k] = v
	}
	return m
}

func TestRunConfigPrecedence(t *testing.T) {
	file := writeConfig(t, `dsn: postgres://fromfile:filesecret@db.example:5432/erp
data_dir: /var/lib/from-file
slot: file_slot
publication: file_pub
tables: [public.sale_*]
status_interval: 3s
log_format: json
`)
	// File alone, named by --config or by CDCAUDIT_CONFIG.
	for _, tc := range []struct {
		env  map[string]string
		args []string
	}{
		{nil, []string{"--config", file}},
		{map[string]string{"CDCAUDIT_CONFIG": file}, nil},
	} {
		got := printConfig(t, tc.env, tc.args...)
		want := map[string]string{
			"dsn":             "postgres://fromfile@db.example:5432/erp (" + file + ":1)",
			"data_dir":        "/var/lib/from-file (" + file + ":2)",
			"slot":            "file_slot (" + file + ":3)",
			"tables":          "public.sale_* (" + file + ":5)",
			"status_interval": "3s (" + file + ":6)",
			"http_addr":       "127.0.0.1:9187 (default)",
			"log_level":       "info (default)",
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%v %v: %s = %q, want %q", tc.env, tc.args, k, got[k], v)
			}
		}
	}

	// Environment over the file, flags over the environment.
	env := map[string]string{
		"CDCAUDIT_SLOT":        "env_slot",
		"CDCAUDIT_PUBLICATION": "env_pub",
		"CDCAUDIT_TABLES":      "public.a,public.b",
		"CDCAUDIT_HTTP_ADDR":   "127.0.0.1:0",
		"CDCAUDIT_ACCEPT_GAP":  "true",
	}
	got := printConfig(t, env, "--config", file, "--slot", "flag_slot", "--tables", "public.x", "--tables", "public.y")
	want := map[string]string{
		"slot":        "flag_slot (--slot)",
		"publication": "env_pub (CDCAUDIT_PUBLICATION)",
		"tables":      "public.x,public.y (--tables)",
		"http_addr":   "127.0.0.1:0 (CDCAUDIT_HTTP_ADDR)",
		"accept_gap":  "true (CDCAUDIT_ACCEPT_GAP)",
		"log_format":  "json (" + file + ":7)",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	got = printConfig(t, env, "--config", file, "--accept-gap=false")
	if got["accept_gap"] != "false (--accept-gap)" {
		t.Errorf("accept_gap = %q", got["accept_gap"])
	}
	// The password never shows.
	out, _, _ := runCLI(t, nil, "run", "--print-config", "--config", file)
	if strings.Contains(out, "filesecret") {
		t.Errorf("--print-config shows the password:\n%s", out)
	}
}

func TestRunBadValues(t *testing.T) {
	good := []string{"--dsn", "postgres://u:topsecret@db/erp", "--data-dir", t.TempDir()}
	cases := []struct {
		name string
		env  map[string]string
		file string
		args []string
		want []string
	}{
		{name: "missing dsn", args: []string{"--data-dir", "/d"}, want: []string{"dsn is required", "--dsn", "CDCAUDIT_DSN"}},
		{name: "missing data dir", args: []string{"--dsn", "postgres://db/erp"}, want: []string{"data_dir is required", "--data-dir", "CDCAUDIT_DATA_DIR"}},
		{name: "bad duration flag", args: []string{"--status-interval", "x"},
			want: []string{`config: status_interval: time: invalid duration "x" (from --status-interval)`}},
		{name: "bad duration env", env: map[string]string{"CDCAUDIT_STATUS_INTERVAL": "fast"},
			want: []string{`status_interval`, "CDCAUDIT_STATUS_INTERVAL"}},
		{name: "bad duration file", file: "status_interval: x\n",
			want: []string{`config: status_interval: time: invalid duration "x"`, "cdcaudit.yml:1"}},
		{name: "unknown key", file: "slot_name: x\n", want: []string{`unknown key "slot_name"`, "did you mean slot?"}},
		{name: "bad log format", args: []string{"--log-format", "xml"}, want: []string{"log_format", `"xml"`}},
		{name: "bad log level", env: map[string]string{"CDCAUDIT_LOG_LEVEL": "chatty"}, want: []string{"log_level", "CDCAUDIT_LOG_LEVEL"}},
		{name: "bad accept gap", env: map[string]string{"CDCAUDIT_ACCEPT_GAP": "perhaps"}, want: []string{"accept_gap", "perhaps"}},
		{name: "bad accept gap flag", args: []string{"--accept-gap=perhaps"}, want: []string{"accept-gap"}},
		{name: "bad http addr", args: []string{"--http-addr", "localhost"}, want: []string{"http_addr", `"localhost" is not host:port`}},
		{name: "bad slot", args: []string{"--slot", "Bad-Slot"}, want: []string{"slot", "Bad-Slot"}},
		{name: "unqualified table", env: map[string]string{"CDCAUDIT_TABLES": "sale_order"}, want: []string{"tables", "schema-qualified"}},
		{name: "bad dsn", args: []string{"--dsn", "postgres://u:topsecret@db:port/erp"}, want: []string{"config: dsn: cannot parse"}},
		{name: "unknown flag", args: []string{"--slots", "x"}, want: []string{"unknown flag --slots"}},
		{name: "positional argument", args: []string{"extra"}, want: []string{`unexpected argument "extra"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"run"}, good...)
			if strings.HasPrefix(tc.name, "missing") {
				args = []string{"run"}
			}
			if tc.file != "" {
				args = append(args, "--config", writeConfig(t, tc.file))
			}
			args = append(args, tc.args...)
			out, errOut, code := runCLI(t, tc.env, args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %q", code, exitUsage, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
			if strings.Contains(errOut+out, "topsecret") {
				t.Errorf("output reveals the password: %s", errOut)
			}
		})
	}
}

func TestCheckBadValues(t *testing.T) {
	_, errOut, code := runCLI(t, nil, "check")
	if code != exitUsage || !strings.Contains(errOut, "dsn is required: set --dsn or CDCAUDIT_DSN") {
		t.Errorf("check without dsn: %d %q", code, errOut)
	}
	_, errOut, code = runCLI(t, nil, "check", "--dsn", "postgres://db/erp", "--data-dir", "/x")
	if code != exitUsage || !strings.Contains(errOut, "unknown flag --data-dir") {
		t.Errorf("check --data-dir: %d %q", code, errOut)
	}
	_, errOut, code = runCLI(t, nil, "check", "--dsn", "postgres://db/erp", "--exclude", "tmp_*")
	if code != exitUsage || !strings.Contains(errOut, "exclude") {
		t.Errorf("check --exclude tmp_*: %d %q", code, errOut)
	}
}

func TestExportArguments(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		env  map[string]string
		code int
		want string
	}{
		{[]string{}, nil, exitUsage, "data_dir is required: set --data-dir or CDCAUDIT_DATA_DIR"},
		{[]string{"--data-dir", dir, "--format", "xml"}, nil, exitUsage, `--format: "xml" is not a format (want jsonl, csv or xlsx)`},
		{[]string{"--data-dir", dir, "--format", "json"}, nil, exitUsage, "use jsonl"},
		{[]string{"--data-dir", dir, "--since", "yesterday"}, nil, exitUsage, `--since: "yesterday" is not a time`},
		{[]string{"--data-dir", dir, "--until", "2026-11-23T10:00:00"}, nil, exitUsage, "--until: \"2026-11-23T10:00:00\" has no time zone"},
		{[]string{"--data-dir", dir, "--since", "2026-11-23", "--until", "2026-11-22"}, nil, exitUsage, "--since (2026-11-23) must be before --until"},
		{[]string{"--data-dir", dir, "--op", "insert,upsert"}, nil, exitUsage, `--op: unknown op "upsert"`},
		{[]string{"--data-dir", dir, "--table", "sale_["}, nil, exitUsage, `--table: "sale_[" is not a valid glob`},
		{[]string{"--data-dir", dir, "--record", "sale_order"}, nil, exitUsage, `--record: "sale_order": want TABLE:KEY`},
		{[]string{"--data-dir", dir, "--record", `t:{"a":`}, nil, exitUsage, `--record: "t:{\"a\":": the key`},
		{[]string{"--data-dir", dir, "--out", filepath.Join(dir, "no", "such", "f.csv")}, nil, exitUsage, "--out: directory"},
		{[]string{"--data-dir", dir, "--out", dir}, nil, exitUsage, "is a directory"},
		{[]string{"--data-dir", dir}, nil, exitFail, "no cdcaudit store in " + dir},
		{nil, map[string]string{"CDCAUDIT_DATA_DIR": dir}, exitFail, "no cdcaudit store in " + dir},
	}
	for _, tc := range cases {
		_, errOut, code := runCLI(t, tc.env, append([]string{"export"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("export %v: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

func TestVerifyAndDemoArguments(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"verify"}, exitUsage, "data_dir is required"},
		{[]string{"verify", "--data-dir", dir, "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"verify", "--data-dir", dir}, exitFail, "no cdcaudit store"},
		{[]string{"demo", "--rate", "-1"}, exitUsage, "--rate: -1 is out of range"},
		{[]string{"demo", "--rate", "many"}, exitUsage, `invalid value "many" for flag --rate`},
		{[]string{"demo", "--http-addr", "9187"}, exitUsage, "--http-addr"},
		{[]string{"demo", "--log-level", "loud"}, exitUsage, "--log-level"},
		{[]string{"demo", "--duration", "-1s"}, exitUsage, "--duration"},
	}
	for _, tc := range cases {
		_, errOut, code := runCLI(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

// makeStore creates a store holding n events, one transaction each, one
// per second from 2026-11-23T10:00:00Z, alternating tables and operations.
func makeStore(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	s, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var batches []sink.Batch
	for i := 0; i < n; i++ {
		e := &audit.Event{
			LSN: uint64(0x1000 + i*0x100), CommitLSN: uint64(0x1080 + i*0x100), Ordinal: 1, XID: uint32(700 + i),
			CommitTime: base.Add(time.Duration(i) * time.Second), Database: "erp", Schema: "public",
			Table: []string{"sale_order", "res_partner"}[i%2], Op: []audit.Op{audit.OpInsert, audit.OpUpdate}[i%2],
			Key:   audit.Row{{Name: "id", Value: []byte(fmt.Sprint(i + 1))}},
			After: audit.Row{{Name: "id", Value: []byte(fmt.Sprint(i + 1))}, {Name: "note", Value: []byte(`"a, \"quoted\"\nline"`)}},
		}
		if e.Op == audit.OpUpdate {
			e.Before = audit.Row{{Name: "id", Value: []byte(fmt.Sprint(i + 1))}, {Name: "note", Value: []byte(`null`)}}
			e.Changed = []string{"note"}
		} else {
			e.Changed = []string{"id", "note"}
		}
		k := e.StoreKey()
		batches = append(batches, sink.Batch{Events: []sink.Encoded{{Key: k, Body: e.AppendBody(nil)}},
			Checkpoint: e.CommitLSN + 0x30, CommitTime: e.CommitTime})
	}
	if n > 0 {
		if _, err := s.Append(batches); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestExportAndVerifyOnAStore(t *testing.T) {
	dir := makeStore(t, 10)

	// stdout, filtered.
	out, errOut, code := runCLI(t, nil, "export", "--data-dir", dir, "--table", "sale_*", "--op", "insert",
		"--since", "2026-11-23T10:00:02Z", "--until", "2026-11-23T10:00:07Z")
	if code != 0 {
		t.Fatalf("export: %d %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 { // events 2, 4, 6
		t.Fatalf("filtered export: %d lines:\n%s", len(lines), out)
	}
	for _, l := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		if ev["table"] != "sale_order" || ev["op"] != "insert" {
			t.Errorf("filter let through %v", ev)
		}
	}

	// --out: atomic, owner-only, no temporary file left behind.
	outDir := t.TempDir()
	target := filepath.Join(outDir, "events.csv")
	if err := os.WriteFile(target, []byte("old content"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runCLI(t, nil, "export", "--data-dir", dir, "--format", "csv", "--out", target)
	if code != 0 || !strings.Contains(errOut, "10 events") {
		t.Fatalf("export --out: %d %q", code, errOut)
	}
	data, _ := os.ReadFile(target)
	if !strings.HasPrefix(string(data), "id,lsn,commit_lsn,") || strings.Count(string(data), "public,") != 10 {
		t.Errorf("CSV export:\n%s", data)
	}
	entries, _ := os.ReadDir(outDir)
	if len(entries) != 1 {
		t.Errorf("files left in the output directory: %v", entries)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o600 {
		t.Errorf("export file mode %v, want 0600", fi.Mode().Perm())
	}

	// verify.
	out, errOut, code = runCLI(t, nil, "verify", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "OK: 10 events verified") || !strings.Contains(out, "head hash:") {
		t.Fatalf("verify: %d\n%s\n%s", code, out, errOut)
	}

	// An empty store verifies and exports nothing.
	empty := makeStore(t, 0)
	out, _, code = runCLI(t, nil, "verify", "--data-dir", empty)
	if code != 0 || !strings.Contains(out, "holds no events yet") {
		t.Errorf("verify empty: %d %q", code, out)
	}
	out, _, code = runCLI(t, nil, "export", "--data-dir", empty)
	if code != 0 || out != "" {
		t.Errorf("export empty: %d %q", code, out)
	}
}

func TestVerifyReportsTampering(t *testing.T) {
	dir := makeStore(t, 5)
	// Change a byte inside a stored note (records are stored compressed:
	// edit it inside its block).
	found := false
	if err := sink.EditRecords(dir, func(k, rec []byte) ([]byte, error) {
		if i := bytes.Index(rec, []byte(`quoted`)); i >= 0 && !found {
			found = true
			rec = bytes.Clone(rec)
			rec[i] = 'Q'
		}
		return rec, nil
	}); err != nil || !found {
		t.Fatalf("event text not found in the store: %v", err)
	}
	out, errOut, code := runCLI(t, nil, "verify", "--data-dir", dir)
	if code != exitFail || !strings.Contains(out, "FAIL:") || !strings.Contains(out, "first bad event: 0000000000001080-000001") {
		t.Fatalf("verify of a tampered store: %d\n%s\n%s", code, out, errOut)
	}
}

func TestPrintFindings(t *testing.T) {
	var b bytes.Buffer
	fails := printFindings(&b, []findingRow{
		{"ok", "wal_level", "wal_level is logical", ""},
		{"warn", "replica_identity", "public.sale_order has REPLICA IDENTITY DEFAULT:\nupdates carry no before-image", "ALTER TABLE public.sale_order REPLICA IDENTITY FULL;"},
		{"fail", "replication_privilege", "role app lacks REPLICATION", "ALTER ROLE app WITH REPLICATION;\n-- then reconnect"},
	}, false)
	want := `  OK    wal_level              wal_level is logical
  WARN  replica_identity       public.sale_order has REPLICA IDENTITY DEFAULT:
                               updates carry no before-image
                               fix: ALTER TABLE public.sale_order REPLICA IDENTITY FULL;
  FAIL  replication_privilege  role app lacks REPLICATION
                               fix: ALTER ROLE app WITH REPLICATION;
                                    -- then reconnect

1 check failed, 1 warning: fix the FAIL lines before 'cdcaudit run'.
`
	if fails != 1 || b.String() != want {
		t.Errorf("fails=%d, got:\n%s\nwant:\n%s", fails, b.String(), want)
	}
	b.Reset()
	if printFindings(&b, []findingRow{{"ok", "x", "fine", ""}}, false) != 0 || !strings.Contains(b.String(), "Ready: every check passed.") {
		t.Errorf("all OK: %q", b.String())
	}
}

func TestHTTPServer(t *testing.T) {
	reg := metrics.NewRegistry()
	reg.Source("erp").AddEvents("public", "sale_order", "insert", 2)
	log := newLogger(io.Discard, "text", "error")
	hs, err := startHTTP(httpSettings{addr: "127.0.0.1:0"}, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer hs.shutdown()
	if strings.HasSuffix(hs.addr, ":0") {
		t.Fatalf("port 0 not resolved: %s", hs.addr)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + hs.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `cdcaudit_events_total{op="insert",schema="public",source="erp",table="sale_order"} 2`) {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	if code, body := get("/healthz"); code != 200 || !strings.Contains(body, "connecting") {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get("/"); code != 200 || !strings.Contains(body, "/metrics") {
		t.Errorf("/: %d %q", code, body)
	}
	if code, _ := get("/nope"); code != 404 {
		t.Errorf("/nope: %d", code)
	}
	if code, _ := get("/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ without pprof: %d", code)
	}
}

// With pprof on, the profiler answers loopback clients, and only them.
func TestHTTPServerPprof(t *testing.T) {
	log := newLogger(io.Discard, "text", "error")
	hs, err := startHTTP(httpSettings{addr: "127.0.0.1:0", pprof: true}, metrics.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer hs.shutdown()
	resp, err := http.Get("http://" + hs.addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "goroutine profile:") {
		t.Errorf("/debug/pprof/goroutine: %d %.200q", resp.StatusCode, b)
	}
	// A client from elsewhere (as the server sees it) is refused.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/debug/pprof/heap", nil)
	req.RemoteAddr = "192.0.2.7:40000"
	hs.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("/debug/pprof/heap from 192.0.2.7: %d, want 403", rec.Code)
	}
	req.RemoteAddr = "[::1]:40000"
	rec = httptest.NewRecorder()
	hs.handler.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("/debug/pprof/heap from [::1]: %d, want 200", rec.Code)
	}
}

func TestRunHTTPAddrInUse(t *testing.T) {
	log := newLogger(io.Discard, "text", "error")
	hs, err := startHTTP(httpSettings{addr: "127.0.0.1:0"}, metrics.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer hs.shutdown()
	_, errOut, code := runCLI(t, nil, "run", "--dsn", "postgres://127.0.0.1:1/x", "--data-dir", t.TempDir(), "--http-addr", hs.addr)
	if code != exitFail || !strings.Contains(errOut, "http_addr "+hs.addr) || !strings.Contains(errOut, "address already in use") {
		t.Errorf("busy http_addr: %d %q", code, errOut)
	}
}

// A misspelt CDCAUDIT_* variable stops every command that reads the
// configuration with a usage error naming it and the closest known one.
func TestMisspeltEnvVariable(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"export", "--data-dir", dir}, {"verify", "--data-dir", dir}, {"run", "--dsn", "postgres://x@h/db", "--data-dir", dir, "--print-config"}} {
		_, errOut, code := runCLI(t, map[string]string{"CDCAUDIT_SLOT_NAM": "audit", "CDCAUDIT_DATA_DIR": dir}, args...)
		if code != exitUsage || !strings.Contains(errOut, "CDCAUDIT_SLOT_NAM") || !strings.Contains(errOut, "did you mean CDCAUDIT_SLOT?") {
			t.Errorf("%v with CDCAUDIT_SLOT_NAM set: exit %d, stderr %q; want exit %d naming the variable and CDCAUDIT_SLOT", args, code, errOut, exitUsage)
		}
	}
}

// verify checks the access log's chain too, and says so.
func TestVerifyChecksTheAccessLog(t *testing.T) {
	dir := makeStore(t, 3)
	s, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, login := range []string{"alice", "mallory"} {
		if _, err := s.AppendAccess(sink.AccessEntry{Time: time.Now(), Action: "signin", Result: "failed", Login: login, Address: "192.0.2.9"}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	out, errOut, code := runCLI(t, nil, "verify", "--data-dir", dir)
	if code != exitOK || !strings.Contains(out, "access log:  2 entries") {
		t.Fatalf("verify: %d\n%s\n%s", code, out, errOut)
	}
	// Someone with the file removes the trace of mallory's attempt.
	db, err := bolt.Open(filepath.Join(dir, sink.FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("access")).Delete(binary.BigEndian.AppendUint64(nil, 2))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	out, errOut, code = runCLI(t, nil, "verify", "--data-dir", dir)
	if code != exitFail || !strings.Contains(out, "FAIL:") || !strings.Contains(out, "access log") {
		t.Fatalf("verify of an access log cut short: %d\n%s\n%s", code, out, errOut)
	}
}
