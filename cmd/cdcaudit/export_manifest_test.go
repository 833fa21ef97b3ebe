package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/instancekey"
	"github.com/cdcaudit/cdcaudit/sink"
)

// export --manifest, then verify --export: proved with the data
// directory's key or the public key given, only consistent without one,
// and every alteration a failure that says what it is.
func TestExportManifestAndVerify(t *testing.T) {
	dir := makeStore(t, 6)
	out := t.TempDir()
	for _, format := range []string{"jsonl", "csv", "xlsx"} {
		file, m := filepath.Join(out, "events."+format), filepath.Join(out, format+".manifest.json")
		_, errOut, code := runCLI(t, nil, "export", "--data-dir", dir, "--format", format, "--table", "sale_order", "--out", file, "--manifest", m)
		if code != exitOK || !strings.Contains(errOut, "3 events") || !strings.Contains(errOut, "manifest "+m) {
			t.Fatalf("export %s: %d %s", format, code, errOut)
		}
		for _, p := range []string{file, m} {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v %v, want mode 0600", p, fi, err)
			}
		}
		stdout, errOut, code := runCLI(t, nil, "verify", "--export", file, "--manifest", m, "--data-dir", dir)
		if code != exitOK || !strings.Contains(stdout, "OK: "+file+" is complete and unaltered, and from this instance: the 3 events") ||
			!strings.Contains(stdout, "filter:      --table sale_order") || !strings.Contains(stdout, "every event's hash recomputed") {
			t.Errorf("verify %s: %d\n%s%s", format, code, stdout, errOut)
		}
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 6 {
		t.Errorf("files in the output directory: %v (temporary files left?)", entries)
	}

	file, m := filepath.Join(out, "events.csv"), filepath.Join(out, "csv.manifest.json")
	key, err := instancekey.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.pub")
	os.WriteFile(keyFile, []byte(key.Public()+"\n"), 0o644)
	for _, pk := range []string{key.Public(), keyFile} {
		if stdout, _, code := runCLI(t, nil, "verify", "--export", file, "--manifest", m, "--public-key", pk); code != exitOK ||
			!strings.Contains(stdout, "signed by the key given with --public-key") {
			t.Errorf("--public-key %s: %d %s", pk, code, stdout)
		}
	}
	// No trusted key: consistent, not proved.
	stdout, _, code := runCLI(t, nil, "verify", "--export", file, "--manifest", m)
	if code != exitIncomplete || !strings.Contains(stdout, "UNPROVEN:") || !strings.Contains(stdout, "checked only against itself") {
		t.Errorf("verify without a key: %d\n%s", code, stdout)
	}
	// Another instance's key.
	other := makeStore(t, 1)
	if _, err := instancekey.LoadOrCreate(other); err != nil {
		t.Fatal(err)
	}
	stdout, _, code = runCLI(t, nil, "verify", "--export", file, "--manifest", m, "--data-dir", other)
	if code != exitFail || !strings.Contains(stdout, "FAIL:") || !strings.Contains(stdout, "not by the trusted key") {
		t.Errorf("verify with another instance's key: %d\n%s", code, stdout)
	}
	// A data directory without a key cannot vouch for anything.
	if _, errOut, code := runCLI(t, nil, "verify", "--export", file, "--manifest", m, "--data-dir", t.TempDir()); code != exitFail ||
		!strings.Contains(errOut, "the instance key of") {
		t.Errorf("verify with a data directory without a key: %d %s", code, errOut)
	}
	// The file altered.
	b, _ := os.ReadFile(file)
	os.WriteFile(file, []byte(strings.Replace(string(b), "quoted", "QUOTED", 1)), 0o600)
	stdout, _, code = runCLI(t, nil, "verify", "--export", file, "--manifest", m, "--data-dir", dir)
	if code != exitFail || !strings.Contains(stdout, "the file was altered") || !strings.Contains(stdout, "its content does not match its hash") {
		t.Errorf("verify of an altered file: %d\n%s", code, stdout)
	}
	// The manifest altered.
	os.WriteFile(file, b, 0o600)
	mb, _ := os.ReadFile(m)
	os.WriteFile(m, []byte(strings.Replace(string(mb), `"events": 3`, `"events": 2`, 1)), 0o600)
	stdout, _, code = runCLI(t, nil, "verify", "--export", file, "--manifest", m, "--data-dir", dir)
	if code != exitFail || !strings.Contains(stdout, "signature does not verify") {
		t.Errorf("verify with an altered manifest: %d\n%s", code, stdout)
	}
	// Not a manifest at all.
	os.WriteFile(m, []byte("{}"), 0o600)
	if _, errOut, code := runCLI(t, nil, "verify", "--export", file, "--manifest", m); code != exitFail || !strings.Contains(errOut, "manifest version") {
		t.Errorf("verify with no manifest: %d %s", code, errOut)
	}
}

// An export to standard output gets its manifest too, of exactly the
// bytes written; --flag selects the flagged events.
func TestExportManifestOfStdout(t *testing.T) {
	dir := t.TempDir()
	s, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var batches []sink.Batch
	for i := range 5 {
		e := &audit.Event{LSN: uint64(0x1000 + i*0x100), CommitLSN: uint64(0x1080 + i*0x100), Ordinal: 1, XID: uint32(700 + i),
			CommitTime: time.Date(2026, 11, 23, 10, i, 0, 0, time.UTC), Database: "erp", Schema: "public", Table: "account_move",
			Op: audit.OpUpdate, Key: audit.Row{{Name: "id", Value: []byte("1")}}}
		if i%2 == 1 {
			e.Flags = []string{"orm_bypass"}
		}
		batches = append(batches, sink.Batch{Events: []sink.Encoded{{Key: e.StoreKey(), Body: e.AppendBody(nil)}}, Checkpoint: e.CommitLSN + 8})
	}
	if _, err := s.Append(batches); err != nil {
		t.Fatal(err)
	}
	s.Close()
	m := filepath.Join(t.TempDir(), "m.json")
	stdout, errOut, code := runCLI(t, nil, "export", "--data-dir", dir, "--flag", "orm_bypass", "--manifest", m)
	if code != exitOK || strings.Count(stdout, "\n") != 2 || strings.Count(stdout, "orm_bypass") != 2 {
		t.Fatalf("export --flag: %d %s\n%s", code, errOut, stdout)
	}
	file := filepath.Join(t.TempDir(), "out.jsonl")
	os.WriteFile(file, []byte(stdout), 0o600)
	out, _, code := runCLI(t, nil, "verify", "--export", file, "--manifest", m, "--data-dir", dir)
	if code != exitOK || !strings.Contains(out, "--flag orm_bypass") {
		t.Errorf("verify: %d\n%s", code, out)
	}
}

func TestExportManifestArguments(t *testing.T) {
	dir := makeStore(t, 1)
	out := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"export", "--data-dir", dir, "--manifest", out}, "--manifest: " + out + " is a directory"},
		{[]string{"export", "--data-dir", dir, "--manifest", filepath.Join(out, "no", "m.json")}, "--manifest: directory"},
		{[]string{"export", "--data-dir", dir, "--out", filepath.Join(out, "x"), "--manifest", filepath.Join(out, "x")}, "is the export's own file"},
		{[]string{"export", "--data-dir", dir, "--format", "xls"}, "use xlsx"},
		{[]string{"verify", "--export", "f"}, "--export FILE and --manifest M go together"},
		{[]string{"verify", "--manifest", "m"}, "--export FILE and --manifest M go together"},
		{[]string{"verify", "--export", "f", "--manifest", "m", "--anchor", "a"}, "give one"},
		{[]string{"verify", "--export", "f", "--manifest", "m", "--public-key", "ed25519:xx"}, "--public-key: malformed public key"},
		{[]string{"verify", "--export", "f", "--manifest", "m", "--public-key", "/no/such"}, "neither a public key"},
	} {
		_, errOut, code := runCLI(t, nil, tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: %d %q, want exit 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}
