package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestDemo runs `cdcaudit demo` for a few seconds: the feed shows every kind
// of change, everything shown is stored, and the store verifies.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	dir := t.TempDir()
	out, errOut, code := runCLI(t, nil, "demo", "--duration", "6s", "--rate", "25", "--data-dir", dir, "--http-addr", "127.0.0.1:0")
	if code != 0 {
		t.Fatalf("demo: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	// The Odoo workload: who did what, in which session, and a psql edit
	// flagged (the first comes 7 requests in).
	for _, s := range []string{" INSERT ", " UPDATE ", " DELETE ", " → ", "session_row/same_tx", "row_user/only_active",
		"⚠ ORM BYPASS", "metrics     http://127.0.0.1:", "store       " + dir, "verify --data-dir " + dir,
		"sessions --data-dir " + dir, "events --data-dir " + dir + " --record public.sale_order:1"} {
		if !strings.Contains(out, s) {
			t.Errorf("demo output lacks %q", s)
		}
	}
	if !strings.Contains(out, " sale.order.line ") && !strings.Contains(out, " sale_order_line ") {
		t.Errorf("demo output shows no order line")
	}
	if !regexp.MustCompile(`(?m) DELETE +\S+ +\S+ +none +`).MatchString(out) {
		t.Errorf("demo output shows no unattributed (lone) delete")
	}
	m := regexp.MustCompile(`Done\. (\S+) events stored \((\S+) shown above`).FindStringSubmatch(out)
	if m == nil || m[1] != m[2] || m[1] == "0" {
		t.Errorf("summary: %v\n%s", m, out)
	}
	if strings.Contains(errOut, "level=WARN") || strings.Contains(errOut, "level=ERROR") {
		t.Errorf("warnings on stderr:\n%s", errOut)
	}
	vout, verr, vcode := runCLI(t, nil, "verify", "--data-dir", dir)
	if vcode != 0 || !strings.Contains(vout, "OK: "+m[1]+" events verified") {
		t.Errorf("verify after demo: %d\n%s%s", vcode, vout, verr)
	}
	if t.Failed() {
		t.Logf("demo output:\n%s\nstderr:\n%s", out, errOut)
	}
}
