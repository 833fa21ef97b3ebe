package console

import (
	"context"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/internal/browsertest"
	"github.com/cdcaudit/cdcaudit/internal/odoosim"
	"github.com/cdcaudit/cdcaudit/manifest"
)

// insertNote writes a row into the table only the i-th database has and
// waits until its source holds it.
func (d *daemon) insertNote(t *testing.T, i int, source, note string) {
	t.Helper()
	table := "only_in_" + source
	if _, err := d.recorded[i].conn.Exec(context.Background(), `INSERT INTO `+pgx.Identifier{table}.Sanitize()+` (note) VALUES ($1)`, note); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var p struct {
			Events []struct {
				After map[string]any `json:"after"`
			} `json:"events"`
		}
		d.getJSON(t, "/api/v1/events?order=desc&limit=1&table="+table+"&source="+source, &p)
		if len(p.Events) == 1 && p.Events[0].After["note"] == note {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q not stored after 2 minutes", source, note)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A daemon recording two databases: the header offers both, every request
// names the one chosen, the pages show its events only, and the choice
// stays for the tab.
func twoSourcesTour(t *testing.T, d *daemon) {
	d.insertNote(t, 0, "erp_a", "first database")
	d.insertNote(t, 1, "erp_b", "second database")
	p := open(t, d)
	p.signInWithToken(d.adminToken)
	pick := byTest("source-select")
	if opts := p.attrs(pick+" option", "value"); !slices.Equal(opts, []string{"erp_a", "erp_b"}) {
		t.Fatalf("the sources offered: %q", opts)
	}
	if v := eval[string](p, `document.querySelector('`+pick+`').value`); v != "erp_a" {
		t.Errorf("chosen at first: %q, want the first source", v)
	}
	if l := eval[string](p, `document.querySelector('label[for="source"]').textContent`); l != "Source" {
		t.Errorf("the selector's label: %q", l)
	}
	tables := func() []string {
		t.Helper()
		return p.texts(byTest("events") + " .table")
	}
	p.click(byTest("nav-activity"))
	p.ready("activity")
	if ts := tables(); !slices.Contains(ts, "only_in_erp_a") || slices.Contains(ts, "only_in_erp_b") {
		t.Errorf("erp_a's activity shows tables %q", ts)
	}

	// From the keyboard: the selector is a tab stop of the header, and an
	// arrow key picks the next source.
	p.Run(chromedp.Focus(chromedp.CSS(pick)), chromedp.KeyEvent(kb.ArrowDown))
	p.poll(`document.querySelector('` + pick + `').value === 'erp_b'`)
	p.ready("activity")
	p.poll(`Array.from(document.querySelectorAll('[data-test="events"] .table')).some((e) => e.textContent === 'only_in_erp_b')`)
	if ts := tables(); slices.Contains(ts, "only_in_erp_a") {
		t.Errorf("erp_b's activity shows erp_a's table: %q", ts)
	}
	p.shoot("sources")

	// Live: erp_b's new change appears; erp_a's, made before it, does not.
	d.insertNote(t, 0, "erp_a", "not for this page")
	d.insertNote(t, 1, "erp_b", "live in the second")
	p.Run(chromedp.WaitVisible(chromedp.CSS(byTest("events") + ` > article.fresh[data-op="insert"]`)))
	if ts := tables(); slices.Contains(ts, "only_in_erp_a") {
		t.Errorf("erp_a's change reached erp_b's live list: %q", ts)
	}

	// A reload keeps the choice (the tab's storage).
	p.Run(chromedp.Reload())
	p.ready("activity")
	if v := eval[string](p, `document.querySelector('`+pick+`').value`); v != "erp_b" {
		t.Errorf("after a reload the source is %q", v)
	}
	if ts := tables(); !slices.Contains(ts, "only_in_erp_b") || slices.Contains(ts, "only_in_erp_a") {
		t.Errorf("after a reload the activity shows %q", ts)
	}

	// The other pages read the chosen source too.
	p.click(byTest("nav-sessions"))
	p.ready("sessions")
	p.click(byTest("nav-dashboard"))
	p.ready("dashboard")

	// An export of erp_b: its manifest names it and is signed by its key.
	p.click(byTest("nav-exports"))
	p.ready("exports")
	p.click(byTest("export-format-jsonl"))
	p.click(byTest("export-start"))
	p.Run(chromedp.WaitVisible(chromedp.CSS(byTest("export-manifest"))))
	if s := p.text(byTest("export-source")); s != "erp_b" {
		t.Errorf("the export's source shown: %q", s)
	}
	if k := p.text(byTest("export-key")); k != d.recorded[1].key.Public() {
		t.Errorf("the export is signed by %s, not erp_b's key %s", k, d.recorded[1].key.Public())
	}
	p.click(byTest("export-manifest"))
	b, err := os.ReadFile(p.WaitDownload())
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Source != "erp_b" || m.VerifySignature() != nil {
		t.Errorf("the manifest saved: source %q, signature %v", m.Source, m.VerifySignature())
	}
	p.shoot("sources-export")

	// Every request about the trail named the source.
	api := 0
	for _, r := range p.Requests() {
		u, err := url.Parse(r)
		if err != nil || !strings.HasPrefix(u.Path, "/api/v1/") {
			continue
		}
		switch u.Path {
		case "/api/v1/whoami", "/api/v1/sources", "/api/v1/signin", "/api/v1/signout":
			continue
		}
		api++
		if s := u.Query()["source"]; len(s) != 1 || s[0] != "erp_a" && s[0] != "erp_b" {
			t.Errorf("a request without the source: %s", r)
		}
	}
	if api < 10 {
		t.Errorf("only %d requests about the trail", api)
	}
	p.checkClean()
	// alice signs in with her password, checked against the first
	// database's users: she sees that source only, with no selector, and
	// the other is not there for her.
	if _, err := d.sim.Transaction(context.Background(), odoosim.Admin, func(e *odoosim.Env) error {
		return e.ChangePassword(odoosim.Alice, odooHash(alicePassword))
	}); err != nil {
		t.Fatal(err)
	}
	alice := open(t, d)
	alice.signInWithPassword("alice@example.com", alicePassword)
	if role := alice.text(byTest("whoami-role")); role != "self" {
		t.Errorf("alice's role %q", role)
	}
	if n := len(alice.texts(pick)); n != 0 {
		t.Error("a source selector for a user who sees one source")
	}
	seen := browsertest.Get(alice.Browser, chromedp.Evaluate[string](`fetch('/api/v1/sources').then((r) => r.text())`, chromedp.EvalAwaitPromise))
	if !strings.Contains(seen, `"erp_a"`) || strings.Contains(seen, "erp_b") {
		t.Errorf("alice's sources: %s", seen)
	}
	alice.expect("404", "/api/v1/events?source=erp_b")
	if st := browsertest.Get(alice.Browser, chromedp.Evaluate[float64](`fetch('/api/v1/events?source=erp_b').then((r) => r.status)`, chromedp.EvalAwaitPromise)); st != 404 {
		t.Errorf("erp_b for alice: %v", st)
	}
	alice.checkClean()
}
