package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/sink"
)

func init() {
	commandFlags["compact"] = []string{"data-dir", "out", "config"}
}

// compact leaves every event's JSON as it was: an export before and after
// is byte for byte the same.
func TestCompactKeepsTheExport(t *testing.T) {
	dir := makeStore(t, 150)
	before, errOut, code := runCLI(t, nil, "export", "--data-dir", dir)
	if code != exitOK || strings.Count(before, "\n") != 150 {
		t.Fatalf("export: exit %d, %d lines, %s", code, strings.Count(before, "\n"), errOut)
	}
	out, errOut, code := runCLI(t, nil, "compact", "--data-dir", dir)
	if code != exitOK || !strings.Contains(out, "events:      150 (the new file verified)") ||
		!strings.Contains(errOut, "compact: re-encoding records…") || !strings.Contains(errOut, "compact: verifying the new file…") {
		t.Fatalf("compact: exit %d\n%s\n%s", code, out, errOut)
	}
	after, _, code := runCLI(t, nil, "export", "--data-dir", dir)
	if code != exitOK || after != before {
		t.Fatalf("export after compact differs (exit %d)", code)
	}
	if _, err := os.Stat(filepath.Join(dir, sink.FileName+".old")); !os.IsNotExist(err) {
		t.Errorf("old file left: %v", err)
	}
	if out, _, code := runCLI(t, nil, "verify", "--data-dir", dir); code != exitOK {
		t.Errorf("verify after compact: exit %d %s", code, out)
	}
	// A held store is refused, naming the lock.
	s, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, errOut, code := runCLI(t, nil, "compact", "--data-dir", dir); code != exitFail || !strings.Contains(errOut, "locked") {
		t.Errorf("compact of a held store: exit %d %s", code, errOut)
	}
	if _, errOut, code := runCLI(t, nil, "compact", "--data-dir", dir, "--out", filepath.Join(dir, sink.FileName)); code != 2 ||
		!strings.Contains(errOut, "--out") {
		t.Errorf("compact --out onto the store: exit %d %s", code, errOut)
	}
}
