package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/internal/odoosim"
	"github.com/cdcaudit/cdcaudit/internal/smtptest"
)

// webhookSink is a real HTTP endpoint that verifies every call's signature
// as a receiver would and keeps the alerts it took.
type webhookSink struct {
	t      *testing.T
	secret []byte
	mu     sync.Mutex
	got    []alerts.Alert
	bad    int
}

func (w *webhookSink) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := alerts.VerifySignature(w.secret, body, r.Header.Get(alerts.SignatureHeader), time.Now(), alerts.DefaultReplayWindow); err != nil {
		w.mu.Lock()
		w.bad++
		w.mu.Unlock()
		http.Error(rw, err.Error(), http.StatusUnauthorized)
		return
	}
	var a alerts.Alert
	if err := json.Unmarshal(body, &a); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	w.got = append(w.got, a)
	w.mu.Unlock()
}

func (w *webhookSink) alerts() []alerts.Alert {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.got)
}

// listAlerts runs 'cdcaudit alerts --format json' (through the daemon's
// socket while it runs).
func listAlerts(t *testing.T, dataDir string, args ...string) []alerts.Listed {
	t.Helper()
	out, errOut, code := runCLI(t, append([]string{"alerts", "--data-dir", dataDir, "--format", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("cdcaudit alerts: exit %d: %s", code, errOut)
	}
	var list []alerts.Listed
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("cdcaudit alerts: %v\n%s", err, out)
	}
	return list
}

// waitAlerts waits until the alerts listed satisfy ok.
func waitAlerts(t *testing.T, dataDir string, what string, ok func([]alerts.Listed) bool, args ...string) []alerts.Listed {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		list := listAlerts(t, dataDir, args...)
		if ok(list) {
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 3 minutes, still not %s: %+v", what, list)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func delivered(l alerts.Listed, targets ...string) bool {
	for _, t := range targets {
		if !l.Deliveries[t].OK {
			return false
		}
	}
	return true
}

// mailsTo counts the messages to an address about an alert.
func mailsTo(msgs []smtptest.Message, to, alertID string) int {
	n := 0
	for _, m := range msgs {
		if slices.Contains(m.To, to) && strings.Contains(string(m.Data), "Alert id: "+alertID) {
			n++
		}
	}
	return n
}

// The alerts end to end, on the real daemon against a real PostgreSQL, a
// real SMTP server and a real webhook endpoint: a new-device alert is mailed
// to the user (at the address of her contact) and to the security mailbox,
// once, and not again after a SIGKILL and a restart; an orm_bypass change
// is posted, signed, with its events as evidence; a new-device alert raised
// while the mail server is down is delivered once it is up again, across a
// SIGKILL, once.
func TestAlertsEndToEnd(t *testing.T) {
	srv := smtptest.Start(t, smtptest.None, "cdcaudit", "smtp-pass-0123")
	secrets := t.TempDir()
	pwFile, secretFile := filepath.Join(secrets, "smtp-password"), filepath.Join(secrets, "webhook-secret")
	secret := []byte("webhook-secret-0123456789abcdef")
	os.WriteFile(pwFile, []byte("smtp-pass-0123\n"), 0o600)
	os.WriteFile(secretFile, secret, 0o600)
	hook := &webhookSink{t: t, secret: secret}
	hs := httptest.NewServer(hook)
	defer hs.Close()

	r := startOdooPrepared(t, true, func(ctl *pgx.Conn) {
		// alice's address is her contact's, not her login.
		mustExec(t, ctl, "UPDATE res_partner SET email = 'alice.martin@mail.example' WHERE id = 7")
	}, "--smtp-addr", srv.Addr, "--smtp-tls", "none", "--smtp-user", "cdcaudit", "--smtp-password-file", pwFile,
		"--smtp-from", "cdcaudit@example.com", "--alert-mailbox", "security@example.com",
		"--webhook-url", hs.URL+"/hooks/cdcaudit", "--webhook-secret-file", secretFile,
		"--alert-routes", "kind=new_device channel=email to=user,security; kind=orm_bypass channel=webhook")

	laptop := odoosim.Device{IP: "203.0.113.10", Platform: "windows", Browser: "chrome"}
	phone := odoosim.Device{IP: "198.51.100.23", Platform: "iphone", Browser: "safari", Country: "France", City: "Lyon"}
	// alice's first sign-in is no new device; her phone is.
	r.request(r.sim.NewDevice(odoosim.Alice, laptop), func(e *odoosim.Env) error { return nil })
	aPhone := r.sim.NewDevice(odoosim.Alice, phone)
	r.request(aPhone, func(e *odoosim.Env) error { return nil })
	aliceID := "new_device/" + sid(aPhone)
	msgs := srv.WaitFor(2)
	if mailsTo(msgs, "alice.martin@mail.example", aliceID) != 1 || mailsTo(msgs, "security@example.com", aliceID) != 1 {
		t.Fatalf("mails %+v", msgs)
	}
	for _, m := range msgs {
		text := string(m.Data)
		for _, want := range []string{"alice@example.com (user 6)", "198.51.100.23", "safari", "iphone", "mobile", "Lyon, France"} {
			if !strings.Contains(text, want) {
				t.Errorf("the mail to %v lacks %q:\n%s", m.To, want, text)
			}
		}
		if strings.Contains(text, aPhone.Identifier()) || strings.Contains(text, "smtp-pass") {
			t.Errorf("the mail holds a secret:\n%s", text)
		}
	}

	// A change made outside the application: one signed webhook call, the
	// change as evidence.
	r.ok(r.sim.RawSQLEdit(r.ctx, odoosim.Orders[0], "999.00"))
	var bypass alerts.Alert
	waitAlerts(t, r.dataDir, "the orm_bypass alert delivered", func(l []alerts.Listed) bool {
		for _, a := range l {
			if a.Kind == alerts.KindORMBypass && delivered(a, alerts.TargetWebhook) {
				bypass = a.Alert
				return true
			}
		}
		return false
	})
	if got := hook.alerts(); len(got) != 1 || got[0].ID != bypass.ID || len(got[0].Events) != 1 {
		t.Fatalf("webhook got %+v", got)
	}
	waitAlerts(t, r.dataDir, "alice's alert recorded as delivered", func(l []alerts.Listed) bool {
		return len(l) == 1 && delivered(l[0], alerts.TargetEmailUser, alerts.TargetEmailSecurity)
	}, "--kind", "new_device")

	// SIGKILL, restart: nothing is sent again; the phone is known now.
	r.d.kill()
	r.restart()
	r.request(r.sim.NewDevice(odoosim.Alice, phone), func(e *odoosim.Env) error { return nil })

	// The mail server goes down; bob signs in from a new device.
	srv.Stop()
	r.request(r.sim.NewDevice(odoosim.Bob, laptop), func(e *odoosim.Env) error { return nil })
	bPhone := r.sim.NewDevice(odoosim.Bob, phone)
	r.request(bPhone, func(e *odoosim.Env) error { return nil })
	bobID := "new_device/" + sid(bPhone)
	waitAlerts(t, r.dataDir, "bob's delivery failed", func(l []alerts.Listed) bool {
		return len(l) == 1 && l[0].ID == bobID && l[0].Deliveries[alerts.TargetEmailSecurity].Attempts > 0
	}, "--user", "bob@example.com")
	metrics := scrape(t, metricsURL(r.d))
	if !strings.Contains(metrics, `cdcaudit_alerts_delivered_total{channel="email",result="failed",source="`) ||
		!regexp.MustCompile(`(?m)^cdcaudit_alerts_queued\{source="[^"]+"\} 2$`).MatchString(metrics) {
		t.Errorf("metrics after a failed delivery:\n%s", grepLines(metrics, "cdcaudit_alerts"))
	}
	if !strings.Contains(r.d.log(), "alerts: delivery failed; will retry") {
		t.Error("no log line says a delivery failed")
	}

	// SIGKILL; the mail server comes back; the daemon delivers bob's alert
	// once its backoff has passed, once.
	r.d.kill()
	srv.Restart()
	r.restart()
	waitAlerts(t, r.dataDir, "bob's alert delivered", func(l []alerts.Listed) bool {
		return len(l) == 1 && delivered(l[0], alerts.TargetEmailUser, alerts.TargetEmailSecurity)
	}, "--user", "bob@example.com")
	// One more alert after bob's, so that a pass of the deliverer after
	// his delivery has certainly run: nothing of before is sent again.
	carolOld := r.sim.NewDevice(odoosim.Carol, laptop)
	r.request(carolOld, func(e *odoosim.Env) error { return nil })
	cPhone := r.sim.NewDevice(odoosim.Carol, phone)
	r.request(cPhone, func(e *odoosim.Env) error { return nil })
	msgs = srv.WaitFor(4) // bob's two
	carolID := "new_device/" + sid(cPhone)
	deadline := time.Now().Add(3 * time.Minute)
	for mailsTo(srv.Messages(), "security@example.com", carolID) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	events := r.stop()

	msgs = srv.Messages()
	for _, c := range []struct {
		to, id string
	}{{"alice.martin@mail.example", aliceID}, {"security@example.com", aliceID},
		{"bob@example.com", bobID}, {"security@example.com", bobID},
		{"carol@example.com", carolID}, {"security@example.com", carolID}} {
		if n := mailsTo(msgs, c.to, c.id); n != 1 {
			t.Errorf("%d mails to %s about %s, want 1", n, c.to, c.id)
		}
	}
	if len(msgs) != 6 {
		t.Errorf("%d mails, want 6", len(msgs))
	}
	if got := hook.alerts(); len(got) != 1 || hook.bad != 0 {
		t.Errorf("webhook: %d calls taken, %d refused; want 1, 0", len(got), hook.bad)
	}
	list := listAlerts(t, r.dataDir)
	if len(list) != 4 {
		t.Errorf("%d alerts, want 3 new devices and 1 orm_bypass: %+v", len(list), list)
	}
	// The orm_bypass alert's evidence is the flagged event in the store.
	var flagged []string
	for _, e := range events {
		if slices.Contains(e.FlagList, "orm_bypass") {
			flagged = append(flagged, e.ID)
		}
	}
	if !slices.Equal(flagged, bypass.Events) {
		t.Errorf("orm_bypass evidence %v, flagged events in the store %v", bypass.Events, flagged)
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	if url == "" {
		t.Fatal("no metrics address in the log")
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
