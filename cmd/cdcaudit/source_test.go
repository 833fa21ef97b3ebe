package main

import (
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/sink"
)

// run refuses, with exit status 1 and before it connects, a store that
// belongs to another source.
func TestRunRefusesAnotherSource(t *testing.T) {
	dir := t.TempDir()
	st, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetIdentity(sink.Identity{SystemID: "7301", Database: "erp_a", Slot: "cdcaudit", Source: "erp_a"}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	_, errOut, code := runCLI(t, nil, "run", "--dsn", "postgres://u@127.0.0.1:1/erp_a", "--data-dir", dir,
		"--http-addr", "127.0.0.1:0", "--source", "erp_b")
	want := "cdcaudit run: the store in " + dir + " belongs to source erp_a, not erp_b: a store's source never changes (use --source erp_a, or a new --data-dir)\n"
	if code != exitFail || !strings.HasSuffix(errOut, want) {
		t.Fatalf("exit %d, stderr %q\nwant it to end with %q", code, errOut, want)
	}
}
