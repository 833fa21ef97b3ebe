package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/internal/odoosim"
	"github.com/cdcaudit/cdcaudit/sink"
)

// TestSuspiciousAndAppLog: the real daemon with the rules and the app-log
// tailer. A failed-login burst from a tailed log (rotated mid-burst)
// alerts once; alice's mass change and first system parameter are hits,
// bob's three updates are not; and after a SIGKILL and a restart that
// replays the stream, nothing is recorded or alerted twice.
func TestSuspiciousAndAppLog(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "odoo.log")
	r := startOdoo(t, "--app-log", logFile, "--rule-mass-change", "3/10m", "--rule-sensitive-models", "ir.config_parameter",
		"--rule-impossible-travel", "off", "--rule-bulk-export", "off")
	const (
		alice = 6
		bob   = 7
	)
	write := func(s *odoosim.Sim, uid int64, ids ...int64) uint32 {
		return r.ok(s.Transaction(r.ctx, uid, func(e *odoosim.Env) error {
			for _, id := range ids {
				if err := e.WritePartner(id, odoosim.Vals{"city": "Brussels"}); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	massXID := write(r.sim, alice, 10, 11, 12, 13)
	write(r.sim, bob, 10, 11, 12) // three: not more than three
	paramXID := r.ok(r.sim.Transaction(r.ctx, alice, func(e *odoosim.Env) error { return e.SetConfigParameter("web.base.url", "http://erp.example.com") }))
	r.ok(r.sim.Transaction(r.ctx, alice, func(e *odoosim.Env) error { return e.SetConfigParameter("web.base.url", "http://erp2.example.com") }))

	// Odoo's log: bob logs in, then five failures for mallory from one
	// address, the log rotated after the third.
	line := func(at int, result, login, ip string) string {
		what := map[string]string{"ok": "successful", "failed": "failed"}[result]
		return fmt.Sprintf("2026-12-03 06:%02d:%02d,000 28896 INFO erp odoo.addons.base.models.res_users: Login %s for db:erp login:%s from %s \n",
			at/60, at%60, what, login, ip)
	}
	appendLog := func(lines ...string) {
		f, err := os.OpenFile(logFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(strings.Join(lines, "")); err != nil {
			t.Fatal(err)
		}
	}
	appendLog(line(0, "ok", "bob@example.com", "198.51.100.7"), line(10, "failed", "mallory", "192.0.2.66"),
		line(11, "failed", "mallory", "192.0.2.66"), line(12, "failed", "mallory", "192.0.2.66"))
	waitLogins(t, r.dataDir, 4)
	if err := os.Rename(logFile, logFile+".1"); err != nil {
		t.Fatal(err)
	}
	appendLog(line(13, "failed", "mallory", "192.0.2.66"), line(14, "failed", "mallory", "192.0.2.66"))
	waitLogins(t, r.dataDir, 6)
	r.catchUp()

	// A crash, and a restart that streams from the slot's position again.
	r.d.kill()
	r.restart()
	appendLog(line(20, "ok", "alice@example.com", "203.0.113.10"))
	waitLogins(t, r.dataDir, 7)
	r.stop()

	got := storedAlerts(t, r.dataDir)
	var kinds []string
	for _, a := range got {
		kinds = append(kinds, a.Kind+":"+a.Rule+":"+a.Login)
	}
	slices.Sort(kinds)
	want := []string{"failed_login_burst::mallory", "suspicious:mass_change:alice@example.com", "suspicious:sensitive_model:alice@example.com"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("alerts %q, want %q", kinds, want)
	}
	for _, a := range got {
		switch a.Rule {
		case "mass_change":
			if a.Detail["count"] != "4" || a.Detail["model"] != "res.partner" || len(a.Events) != 2 || !eventOf(a.Events[1], massXID, r) {
				t.Errorf("mass change: %+v", a)
			}
		case "sensitive_model":
			if !eventOf(a.Events[0], paramXID, r) {
				t.Errorf("sensitive model: %+v", a)
			}
		}
	}
}

// eventOf reports whether the stored event id belongs to transaction xid.
func eventOf(id string, xid uint32, r *odooRig) bool {
	for _, e := range readStore(r.t, r.dataDir) {
		if e.ID == id {
			return e.XID == xid
		}
	}
	return false
}

// waitLogins waits (generously) until `cdcaudit logins` lists n logins,
// through the running daemon's socket.
func waitLogins(t *testing.T, dir string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, errOut, code := runCLI(t, "logins", "--data-dir", dir, "--format", "json")
		var list []map[string]any
		if code == 0 && json.Unmarshal([]byte(out), &list) == nil && len(list) >= n {
			if len(list) != n {
				t.Fatalf("%d logins, want %d:\n%s", len(list), n, out)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cdcaudit logins: exit %d, %d logins, want %d\n%s\n%s", code, len(list), n, out, errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// storedAlerts reads the queued alerts of a stopped daemon's store.
func storedAlerts(t *testing.T, dir string) []alerts.Alert {
	t.Helper()
	st, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out []alerts.Alert
	err = st.LoadState(alerts.Bucket, func(k, v []byte) error {
		if !strings.HasPrefix(string(k), "q/") {
			return nil
		}
		var a alerts.Alert
		if err := json.Unmarshal(v, &a); err != nil {
			return err
		}
		out = append(out, a)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
