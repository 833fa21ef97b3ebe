package console

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/internal/browsertest"
	"github.com/cdcaudit/cdcaudit/internal/odoosim"
	"github.com/cdcaudit/cdcaudit/manifest"
)

// The console driven in headless Chromium against a daemon fed by the real
// pipeline: every page, as an administrator signed in with an API token and
// as a user signed in with their Odoo password, who sees only their own.
func TestConsoleInABrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and Chromium")
	}
	d := newDaemon(t, true)
	t.Run("Admin", func(t *testing.T) { adminTour(t, d) })
	t.Run("Self", func(t *testing.T) { selfTour(t, d) })
	t.Run("OneTimeLink", func(t *testing.T) { oneTimeLink(t, d) })
	t.Run("TwoFactor", func(t *testing.T) { twoFactor(t, d) })
	t.Run("Empty", func(t *testing.T) { emptyTour(t, newDaemon(t, false)) })
	t.Run("TwoSources", func(t *testing.T) { twoSourcesTour(t, newDaemonOf(t, false, []string{"erp_a", "erp_b"})) })
}

// page wraps a browser with the steps the tours repeat.
type page struct {
	*browsertest.Browser
	t   *testing.T
	url string
	// expected are the browser's error lines a tour provokes on purpose:
	// the API's refusals (the browser logs every 4xx answer).
	expected []string
}

// expect allows one logged problem that holds all of parts.
func (p *page) expect(parts ...string) {
	p.expected = append(p.expected, strings.Join(parts, "\x00"))
}

// checkClean fails the test when the page made a request off the daemon's
// origin, or logged a problem the tour did not provoke.
func (p *page) checkClean() {
	p.t.Helper()
	if off := p.OffOrigin(p.url); len(off) > 0 {
		p.t.Errorf("requests left %s:\n  %s", p.url, strings.Join(off, "\n  "))
	}
	if len(p.Requests()) == 0 {
		p.t.Error("no request recorded")
	}
	for _, problem := range p.Problems() {
		if !slices.ContainsFunc(p.expected, func(e string) bool {
			for part := range strings.SplitSeq(e, "\x00") {
				if !strings.Contains(problem, part) {
					return false
				}
			}
			return true
		}) {
			p.t.Errorf("the page logged: %s", problem)
		}
	}
}

func open(t *testing.T, d *daemon) *page {
	return &page{Browser: browsertest.New(t), t: t, url: d.URL}
}

func byTest(name string) string { return `[data-test="` + name + `"]` }

// ready waits until view has drawn itself.
func (p *page) ready(view string) {
	p.t.Helper()
	p.Run(chromedp.WaitVisible(chromedp.CSS(`main[data-ready="` + view + `"]`)))
}

func (p *page) click(css string) {
	p.t.Helper()
	p.Run(chromedp.Click(chromedp.CSS(css)))
}

// poll waits until the expression is true.
func (p *page) poll(js string) {
	p.t.Helper()
	browsertest.Get(p.Browser, chromedp.Poll[bool](js))
}

func (p *page) text(css string) string {
	p.t.Helper()
	return browsertest.Get(p.Browser, chromedp.Text(chromedp.CSS(css)))
}

func eval[T any](p *page, js string) T {
	p.t.Helper()
	return browsertest.Get(p.Browser, chromedp.Evaluate[T](js))
}

// goTo follows the console's own link to hash (what a bookmark does).
func (p *page) goTo(hash, view string) {
	p.t.Helper()
	eval[any](p, `location.hash = `+jsString(hash)+`; null`)
	p.ready(view)
}

func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// shoot saves the page on the laptop screen and on a phone.
func (p *page) shoot(name string) {
	p.t.Helper()
	p.Screenshot(name + "-laptop")
	p.SetViewport(browsertest.Phone)
	p.Screenshot(name + "-phone")
	p.SetViewport(browsertest.Laptop)
}

// texts returns the text of every element css selects.
func (p *page) texts(css string) []string {
	p.t.Helper()
	return eval[[]string](p, `Array.from(document.querySelectorAll(`+jsString(css)+`)).map((e) => e.textContent)`)
}

func (p *page) attrs(css, name string) []string {
	p.t.Helper()
	return eval[[]string](p, `Array.from(document.querySelectorAll(`+jsString(css)+`)).map((e) => e.getAttribute(`+jsString(name)+`))`)
}

// signInWithToken opens the console with no credentials: it lands on
// sign-in, takes the token, and shows who signed in.
func (p *page) signInWithToken(token string) {
	p.t.Helper()
	p.expect("401", "/api/v1/whoami")
	p.Run(chromedp.Navigate(p.url + "/#/sessions"))
	p.ready("signin")
	p.shoot("signin")
	p.Run(
		chromedp.SendKeys(chromedp.CSS(byTest("signin-token")), token),
		chromedp.Click(chromedp.CSS(byTest("signin-token-submit"))),
	)
	// Back where it was going before it had to sign in.
	p.ready("sessions")
}

func (p *page) signInWithPassword(login, password string) {
	p.t.Helper()
	p.expect("401", "/api/v1/whoami")
	p.Run(chromedp.Navigate(p.url + "/"))
	p.ready("signin")
	p.Run(
		chromedp.SendKeys(chromedp.CSS(byTest("signin-login")), login),
		chromedp.SendKeys(chromedp.CSS(byTest("signin-password")), password),
		chromedp.Click(chromedp.CSS(byTest("signin-submit"))),
	)
	p.ready("activity")
}

func adminTour(t *testing.T, d *daemon) {
	p := open(t, d)
	p.signInWithToken(d.adminToken)
	if role := p.text(byTest("whoami-role")); role != "admin" {
		t.Errorf("role shown %q", role)
	}
	if who := p.text(byTest("whoami-login")); !strings.Contains(who, d.tokenName) {
		t.Errorf("who shown %q, want the token's name", who)
	}

	// Sessions: alice's phone session, active, with its device and place.
	aliceSession := d.sessionOf(t, "alice@example.com")
	row := `tr[data-session="` + aliceSession + `"]`
	p.Run(chromedp.WaitVisible(chromedp.CSS(row)))
	rowText := p.text(row)
	for _, want := range []string{"active", "alice@example.com", "198.51.100.11", "Lyon", "France"} {
		if !strings.Contains(rowText, want) {
			t.Errorf("alice's session row lacks %q: %q", want, rowText)
		}
	}
	if kind := p.attrs(row+" "+byTest("device"), "data-kind"); !slices.Equal(kind, []string{"mobile"}) {
		t.Errorf("alice's device %q", kind)
	}
	if users := p.attrs(byTest("session-row"), "data-user"); !slices.Contains(users, "bob@example.com") {
		t.Errorf("an admin sees bob's session too: %q", users)
	}
	if dis := eval[bool](p, `document.querySelector(`+jsString(row+" "+byTest("session-terminate"))+`).disabled`); !dis {
		t.Error("Terminate is a placeholder until session control")
	}
	ended := `tr[data-user="bob@example.com"] [data-test="session-state"][data-state="ended"]`
	if s := p.text(ended); !strings.Contains(s, "ended") || !strings.Contains(s, "revoked") || !strings.Contains(s, "by admin") {
		t.Errorf("bob's logged out session: %q", s)
	}
	p.shoot("sessions")

	// Its events: alice's edit of order 1, and what it changed.
	p.click(row + " " + byTest("session-open"))
	p.ready("session")
	ev := `[data-test="event"][data-op="update"]`
	p.Run(chromedp.WaitVisible(chromedp.CSS(ev)))
	who := p.text(ev + " " + byTest("event-who"))
	if !strings.Contains(who, "alice@example.com") {
		t.Errorf("who: %q", who)
	}
	p.click(ev + " " + byTest("event-expand"))
	note := ev + ` [data-test="diff-row"][data-field="note"]`
	p.Run(chromedp.WaitVisible(chromedp.CSS(note)))
	if changed := p.attrs(note, "data-changed"); !slices.Equal(changed, []string{"true"}) {
		t.Errorf("note not marked changed: %q", changed)
	}
	if after := p.text(note + " " + byTest("diff-after")); after != "Deliver before noon" {
		t.Errorf("note after: %q", after)
	}
	if before := p.text(note + " " + byTest("diff-before")); before == "Deliver before noon" || before == "" {
		t.Errorf("note before: %q", before)
	}
	if changed := p.attrs(ev+` [data-test="diff-row"][data-field="name"]`, "data-changed"); !slices.Equal(changed, []string{"false"}) {
		t.Errorf("an unchanged field is marked: %q", changed)
	}
	p.shoot("session-events")

	// The record's history: the edit, then the psql edit, flagged.
	p.click(ev + " " + byTest("record-link"))
	p.ready("records")
	items := p.attrs(byTest("history-item")+" "+byTest("event"), "data-op")
	if len(items) < 2 || items[len(items)-1] != "update" {
		t.Errorf("history ops %q", items)
	}
	history := strings.Join(p.texts(byTest("history-item")), "\n")
	if !strings.Contains(history, "changed outside the application") {
		t.Errorf("the psql edit is not flagged in the history:\n%s", history)
	}
	p.shoot("record-history")

	// Activity: newest first, the psql edit on top with its red badge.
	p.click(byTest("nav-activity"))
	p.ready("activity")
	first := byTest("events") + " > article:first-child"
	if flags := p.text(first + " .flag-bypass"); flags != "changed outside the application" {
		t.Errorf("newest event's flag %q", flags)
	}
	p.click(first + " " + byTest("event-expand"))
	amount := first + ` [data-test="diff-row"][data-field="amount_total"]`
	p.Run(chromedp.WaitVisible(chromedp.CSS(amount)))
	if a := p.text(amount + " " + byTest("diff-after")); a != "999.00" {
		t.Errorf("amount after %q", a)
	}
	p.shoot("activity")

	// One event on its own page.
	p.click(first + " " + byTest("event-link"))
	p.ready("event")
	if note := p.text(byTest("bypass-note")); !strings.Contains(note, "did not go through the application") {
		t.Errorf("bypass note %q", note)
	}
	p.shoot("event")

	// A password change: the hash is never stored, and the page says so.
	p.goTo("#/activity?table=res_users&op=update", "activity")
	first = byTest("events") + " > article:first-child"
	p.click(first + " " + byTest("event-expand"))
	pw := first + ` [data-test="diff-row"][data-field="password"]`
	p.Run(chromedp.WaitVisible(chromedp.CSS(pw)))
	if r := p.text(pw + " " + byTest("diff-after")); !strings.HasPrefix(r, "redacted") {
		t.Errorf("the new password hash shows as %q", r)
	}
	if strings.Contains(p.text("main"), "pbkdf2") {
		t.Error("a password hash on the page")
	}
	if ops := p.attrs(byTest("events")+" > article", "data-op"); len(ops) == 0 || slices.ContainsFunc(ops, func(op string) bool { return op != "update" }) {
		t.Errorf("filtered by op=update: %q", ops)
	}

	// An update of a record written before capture began, its large
	// value left as it was: the old values and the value are not known.
	p.goTo("#/activity?table=doc_note", "activity")
	p.click(first + " " + byTest("event-expand"))
	body := first + ` [data-test="diff-row"][data-field="body"]`
	p.Run(chromedp.WaitVisible(chromedp.CSS(body)))
	if v := p.text(body + " " + byTest("diff-after")); v != "unchanged (large value)" {
		t.Errorf("the unsent large value shows as %q", v)
	}
	if n := p.text(first + " .diff-wrap .note"); !strings.Contains(n, "old values are not known") {
		t.Errorf("no word of the unknown old row: %q", n)
	}
	if c := p.texts(first + " .changed-list"); !slices.Equal(c, []string{"changed fields not known"}) {
		t.Errorf("changed fields: %q", c)
	}

	// The user page.
	p.goTo("#/users/alice@example.com", "user")
	if s := p.attrs(byTest("user-sessions")+" "+byTest("session-row"), "data-session"); !slices.Equal(s, []string{aliceSession}) {
		t.Errorf("alice's sessions %q", s)
	}
	if n := len(p.texts(byTest("user-logins") + " " + byTest("login"))); n != 1 {
		t.Errorf("alice's logins: %d", n)
	}
	p.shoot("user")

	// The dashboard: every chart drawn, with numbers written out.
	p.click(byTest("nav-dashboard"))
	p.ready("dashboard")
	for _, c := range []string{"chart-changes-hour", "chart-changes-table", "chart-logins", "chart-sessions-browser",
		"chart-sessions-os", "chart-sessions-device", "chart-sessions-country", "chart-users", "chart-bypass"} {
		if n := len(p.texts(byTest(c) + " svg")); n == 0 {
			t.Errorf("%s: no chart: %q", c, p.texts(byTest(c)))
		}
	}
	if users := p.texts(byTest("chart-users") + " text"); !slices.Contains(users, "alice@example.com") {
		t.Errorf("most active users: %q", users)
	}
	if total := p.text(byTest("bypass-total") + " strong"); total != "1" {
		t.Errorf("changes outside the application: %q", total)
	}
	p.shoot("dashboard")

	d.checkExport(t, p, "csv", "alice@example.com")
	p.shoot("exports")

	p.click(byTest("nav-activity"))
	p.ready("activity")
	d.checkLive(t, p)
	// One source: no choice of it, and no request names it.
	if n := len(p.texts(byTest("source-select"))); n != 0 {
		t.Errorf("a source selector with one source")
	}
	for _, r := range p.Requests() {
		if strings.Contains(r, "source=") {
			t.Errorf("a request names the one source: %s", r)
		}
	}
	p.checkClean()
}

// checkLive makes changes while the activity page is open: they appear
// without a reload, and wait while paused.
func (d *daemon) checkLive(t *testing.T, p *page) {
	t.Helper()
	ctx := context.Background()
	xid, err := d.bobSession.Request(ctx, func(e *odoosim.Env) error {
		return e.WritePartner(odoosim.Customers[1], odoosim.Vals{"city": "Antwerp"})
	})
	if err != nil {
		t.Fatal(err)
	}
	d.waitXID(t, xid)
	p.Run(chromedp.WaitVisible(chromedp.CSS(byTest("events") + ` > article.fresh[data-op="update"]`)))

	p.click(byTest("live-pause"))
	before := len(p.texts(byTest("events") + " > article"))
	xid, err = d.bobSession.Request(ctx, func(e *odoosim.Env) error {
		return e.WritePartner(odoosim.Customers[2], odoosim.Vals{"city": "Ghent"})
	})
	if err != nil {
		t.Fatal(err)
	}
	d.waitXID(t, xid)
	p.poll((`document.querySelector('[data-test="live-status"]').textContent.includes('waiting')`))
	if n := len(p.texts(byTest("events") + " > article")); n != before {
		t.Errorf("paused, yet the list went from %d to %d events", before, n)
	}
	p.click(byTest("live-pause"))
	p.poll((`document.querySelectorAll('[data-test="events"] > article').length > ` + strconv.Itoa(before)))
}

// checkExport exports user's events in format from the Exports page,
// saves the file and its manifest, and proves them as `cdcaudit verify
// --export` does, with the instance's key.
func (d *daemon) checkExport(t *testing.T, p *page, format, user string) {
	t.Helper()
	p.click(byTest("nav-exports"))
	p.ready("exports")
	if user != "" && eval[bool](p, `!!document.querySelector('#x-user')`) {
		p.Run(chromedp.SendKeys(chromedp.CSS("#x-user"), user))
	}
	p.click(byTest("export-format-" + format))
	p.click(byTest("export-start"))
	p.Run(chromedp.WaitVisible(chromedp.CSS(byTest("export-manifest"))))
	p.click(byTest("export-file"))
	file := p.WaitDownload()
	p.click(byTest("export-manifest"))
	mpath := p.WaitDownload()
	if !strings.HasSuffix(file, "."+format) || mpath != file+".manifest.json" {
		t.Errorf("saved %s and %s", file, mpath)
	}
	b, err := os.ReadFile(mpath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	res, err := manifest.Check(file, m, d.key.Public())
	if err != nil || !res.OK() || !res.KeyTrusted || res.Events == 0 {
		t.Fatalf("verify --export: %+v %v", res, err)
	}
	if user != "" && m.Filter.User != user {
		t.Errorf("the manifest's filter %+v", m.Filter)
	}
	if got := p.text(byTest("export-key")); got != d.key.Public() {
		t.Errorf("key shown %q", got)
	}
}

// A user signed in with their Odoo password sees their own sessions and
// changes, and nothing of bob's anywhere.
func selfTour(t *testing.T, d *daemon) {
	p := open(t, d)
	p.signInWithPassword("alice@example.com", alicePassword)
	if role := p.text(byTest("whoami-role")); role != "self" {
		t.Errorf("role shown %q", role)
	}
	if who := p.text(byTest("whoami-login")); who != "alice@example.com" {
		t.Errorf("who shown %q", who)
	}
	noBob := func(where string) {
		t.Helper()
		// The page's text but its title (which may name whom it asked for).
		body := eval[string](p, `(() => { const m = document.querySelector('main').cloneNode(true); m.querySelectorAll('h1').forEach((e) => e.remove()); return m.textContent; })()`)
		if strings.Contains(body, "bob@example.com") || strings.Contains(body, "Namur") {
			t.Errorf("%s shows bob's data:\n%s", where, body)
		}
	}
	if users := p.texts(byTest("events") + " " + byTest("user-link")); len(users) == 0 || slices.ContainsFunc(users, func(u string) bool { return u != "alice@example.com" }) {
		t.Errorf("activity users %q", users)
	}
	noBob("activity")
	p.shoot("self-activity")

	// From the keyboard: the first stop skips to the content; a change
	// unfolds with Enter.
	p.Run(chromedp.Reload())
	p.ready("activity")
	p.Run(chromedp.KeyEvent(kb.Tab))
	if f := eval[string](p, `document.activeElement.textContent`); f != "Skip to content" {
		t.Errorf("the first stop is %q", f)
	}
	expand := byTest("events") + " > article:first-child " + byTest("event-expand")
	p.Run(chromedp.Focus(chromedp.CSS(expand)), chromedp.KeyEvent(kb.Enter))
	p.Run(chromedp.WaitVisible(chromedp.CSS(byTest("events") + " > article:first-child " + byTest("diff"))))

	// Times in the browser's zone, UTC on hover.
	for _, title := range p.attrs("main time", "title") {
		if !strings.HasSuffix(title, " UTC") {
			t.Errorf("a time's title %q", title)
		}
	}

	p.click(byTest("nav-sessions"))
	p.ready("sessions")
	if users := p.attrs(byTest("session-row"), "data-user"); !slices.Equal(users, []string{"alice@example.com"}) {
		t.Errorf("sessions of %q", users)
	}
	noBob("sessions")

	bobSession := d.sessionOf(t, "bob@example.com")
	p.expect("404", "/api/v1/sessions/"+bobSession)
	p.goTo("#/sessions/"+bobSession, "session")
	if e := p.text(byTest("error")); e == "" {
		t.Error("bob's session opened")
	}
	noBob("bob's session")

	p.goTo("#/users/bob@example.com", "user")
	noBob("bob's user page")

	p.click(byTest("nav-dashboard"))
	p.ready("dashboard")
	noBob("dashboard")

	d.checkExport(t, p, "jsonl", "")

	// Signing out ends the session: the pages send back to sign-in.
	p.click(byTest("signout"))
	p.ready("signin")
	p.goTo("#/activity", "signin")
	p.checkClean()
}

// The link `cdcaudit demo` prints signs in once: the code leaves the
// address bar, a reload keeps the session (and can still sign out), and
// the same link does not work twice.
func oneTimeLink(t *testing.T, d *daemon) {
	code, err := d.auth.OneTimeCode(access.Admin, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	p := open(t, d)
	p.Run(chromedp.Navigate(p.url + "/#once=" + code))
	p.ready("activity")
	if role := p.text(byTest("whoami-role")); role != "admin" {
		t.Errorf("role shown %q", role)
	}
	if loc := browsertest.Get(p.Browser, chromedp.Location()); strings.Contains(loc, code) || strings.Contains(loc, "once") {
		t.Errorf("the code stayed in the address bar: %s", loc)
	}
	for _, r := range p.Requests() {
		if strings.Contains(r, code) {
			t.Errorf("the code was sent in a URL: %s", r)
		}
	}
	p.Run(chromedp.Reload())
	p.ready("activity")
	p.click(byTest("signout"))
	p.ready("signin")
	p.checkClean()

	again := open(t, d)
	again.expect("401", "/api/v1/signin")
	again.Run(chromedp.Navigate(again.url + "/#once=" + code))
	again.ready("signin")
	if e := again.text(byTest("signin-error")); !strings.Contains(e, "did not work") {
		t.Errorf("a used code: %q", e)
	}
	again.checkClean()
}

// carol has two-factor authentication on: her password alone makes the
// page ask for the code; with it she is in, as a viewer (Sales /
// Administrator is the viewer group here).
func twoFactor(t *testing.T, d *daemon) {
	p := open(t, d)
	p.expect("401", "/api/v1/whoami")
	p.expect("401", "/api/v1/signin")
	p.Run(chromedp.Navigate(p.url + "/"))
	p.ready("signin")
	p.Run(
		chromedp.SendKeys(chromedp.CSS(byTest("signin-login")), "carol@example.com"),
		chromedp.SendKeys(chromedp.CSS(byTest("signin-password")), carolPassword),
		chromedp.Click(chromedp.CSS(byTest("signin-submit"))),
		chromedp.WaitVisible(chromedp.CSS(byTest("signin-error"))),
	)
	if hint := p.text(".hint.ask"); !strings.Contains(hint, "code") {
		t.Errorf("the page does not ask for the code: %q", hint)
	}
	if f := eval[string](p, `document.activeElement.getAttribute('data-test')`); f != "signin-totp" {
		t.Errorf("focus on %q, not the code", f)
	}
	if pw := eval[string](p, `document.querySelector('[data-test="signin-password"]').value`); pw != "" {
		t.Error("the password stays in the form after a refusal")
	}
	p.Run(
		chromedp.SendKeys(chromedp.CSS(byTest("signin-password")), carolPassword),
		chromedp.SendKeys(chromedp.CSS(byTest("signin-totp")), totpNow(t, odoosim.CarolTOTPSecret)),
		chromedp.Click(chromedp.CSS(byTest("signin-submit"))),
	)
	p.ready("activity")
	if role := p.text(byTest("whoami-role")); role != "viewer" {
		t.Errorf("carol's role %q", role)
	}
	p.checkClean()
}

// Before anything was recorded each page says so, and what to do.
func emptyTour(t *testing.T, d *daemon) {
	p := open(t, d)
	p.signInWithToken(d.adminToken)
	if e := p.text(byTest("empty")); !strings.Contains(e, "No sessions yet") || !strings.Contains(e, "cdcaudit check") {
		t.Errorf("sessions, empty: %q", e)
	}
	p.shoot("empty-sessions")
	p.click(byTest("nav-activity"))
	p.ready("activity")
	if e := p.text(byTest("empty")); !strings.Contains(e, "No change recorded yet") {
		t.Errorf("activity, empty: %q", e)
	}
	p.click(byTest("nav-dashboard"))
	p.ready("dashboard")
	if e := p.texts(byTest("empty")); len(e) < 8 || e[0] != "Nothing in this period." {
		t.Errorf("dashboard, empty: %q", e)
	}
	p.checkClean()
}
