package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
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
		"sessions --data-dir " + dir} {
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

// TestDemoFeedFormat: the demo's line says who, in which session, how
// cdcaudit knows, and flags psql edits.
func TestDemoFeedFormat(t *testing.T) {
	ct := time.Date(2026, 11, 23, 13, 34, 33, 0, time.UTC)
	uid := int64(6)
	cases := []struct {
		name  string
		width int
		e     audit.Event
		want  string
	}{
		{"attributed", 120, audit.Event{Table: "sale_order", Model: "sale.order", Op: audit.OpUpdate, Key: row("id", "4"),
			Before:  row("id", "4", "state", `"draft"`, "write_uid", "2", "write_date", `"a"`),
			After:   row("id", "4", "state", `"sale"`, "write_uid", "6", "write_date", `"b"`),
			Changed: []string{"state", "write_uid", "write_date"},
			Actor:   audit.Actor{UserID: &uid, Login: "alice@example.com", UserVia: "row_user", SessionID: "s1a6ca8bcb54cd696e1e397e9", SessionVia: "only_active"}},
			`13:34:33 UPDATE   sale.order       id=4     alice #s1a6ca8 row_user/only_active  state: draft → sale`},
		{"wide terminal: the whole login", 160, audit.Event{Table: "sale_order", Model: "sale.order", Op: audit.OpUpdate, Key: row("id", "4"),
			Before:  row("id", "4", "state", `"draft"`),
			After:   row("id", "4", "state", `"sale"`),
			Changed: []string{"state"},
			Actor:   audit.Actor{UserID: &uid, Login: "alice@example.com", UserVia: "session_row", SessionID: "s1a6ca8bcb54cd696e1e397e9", SessionVia: "same_tx"}},
			`13:34:33 UPDATE   sale.order       id=4     alice@example.com #s1a6ca8 session_row/same_tx   state: draft → sale`},
		{"psql edit", 130, audit.Event{Table: "sale_order", Op: audit.OpUpdate, Key: row("id", "2"),
			Before:  row("id", "2", "amount_total", `"2843.50"`, "write_uid", "6"),
			After:   row("id", "2", "amount_total", `"1.00"`, "write_uid", "6"),
			Changed: []string{"amount_total"}, Flags: []string{"orm_bypass"},
			Actor: audit.Actor{UserVia: "none", SessionVia: "none"}},
			`13:34:33 UPDATE   sale_order       id=2     none                                 ⚠ ORM BYPASS amount_total: 2843.50 → 1.00`},
		{"device row, secrets last", 130, audit.Event{Table: "res_device_log", Model: "res.device.log", Op: audit.OpInsert, Key: row("id", "1"),
			After:    row("id", "1", "session_identifier", `"[redacted]"`, "platform", `"linux"`),
			Redacted: []string{"session_identifier"},
			Actor:    audit.Actor{UserID: &uid, Login: "alice@example.com", UserVia: "session_row", SessionID: "s1a6ca8bcb54cd696e1e397e9", SessionVia: "same_tx"}},
			`13:34:33 INSERT   res.device.log   id=1     alice #s1a6ca8 session_row/same_tx   platform=linux · session_identifier=[redacted]`},
	}
	for _, tc := range cases {
		e := tc.e
		e.CommitTime, e.Schema, e.CommitLSN, e.Ordinal = ct, "public", 1, 1
		f := newFeed(nil, false, tc.width)
		f.loc = time.UTC
		d := newDemoFeed(f, false, tc.width)
		if got := d.format(&e); got != tc.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.name, got, tc.want)
		}
	}
}
