package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/odoosim"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

// odooStore is a directory laid out as Odoo 18's data_dir/sessions, written
// as werkzeug writes it (a temporary file in the root renamed into
// <sid[:2]>/<sid>; testdata/odoo18/sessions).
type odooStore struct {
	t   *testing.T
	dir string
}

func (s odooStore) save(sid string, uid int64) { s.saveAt(sid, uid, time.Time{}) }

// saveAt saves a session last written at mtime (zero: now).
func (s odooStore) saveAt(sid string, uid int64, mtime time.Time) {
	s.t.Helper()
	sess := map[string]any{"db": "erp", "login": nil, "uid": nil, "session_token": nil, "context": map[string]any{}, "_trace": []any{}}
	if uid != 0 {
		sess["uid"], sess["login"], sess["session_token"] = uid, "user", "a-secret-token"
	}
	b, _ := json.Marshal(sess)
	tmp, err := os.CreateTemp(s.dir, "tmp*.__wz_sess")
	if err != nil {
		s.t.Fatal(err)
	}
	tmp.Write(b)
	tmp.Close()
	if !mtime.IsZero() {
		os.Chtimes(tmp.Name(), mtime, mtime)
	}
	os.Mkdir(filepath.Join(s.dir, sid[:2]), 0o755)
	if err := os.Rename(tmp.Name(), filepath.Join(s.dir, sid[:2], sid)); err != nil {
		s.t.Fatal(err)
	}
}

func (s odooStore) path(sid string) string { return filepath.Join(s.dir, sid[:2], sid) }

// login is an Odoo 18 login: res_users_log, the session file, then the
// first request's device row.
func (r *odooRig) loginWithFile(st odooStore, uid int64, d odoosim.Device) *odoosim.Session {
	r.t.Helper()
	r.ok(r.sim.Login(r.ctx, uid))
	s := r.newSim().NewDevice(uid, d)
	st.save(s.SID, uid)
	r.ok(s.Visit(r.ctx))
	return s
}

// waitSessionEnd waits until `cdcaudit sessions` (through the daemon) shows
// the session ended, and returns it.
func waitSessionEnd(t *testing.T, r *odooRig, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(catchUpTimeout)
	for {
		for _, s := range listSessions(t, r.dataDir) {
			if s["id"] == id && s["end_reason"] != nil && s["end_reason"] != "" {
				return s
			}
		}
		if err := r.d.exited(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s did not end; sessions: %v", id, listSessions(t, r.dataDir))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitSessionReason waits for session id to end with reason, and returns
// it as last listed (ended otherwise when the wait is over).
func waitSessionReason(t *testing.T, r *odooRig, id, reason string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(catchUpTimeout)
	for {
		s := waitSessionEnd(t, r, id)
		if s["end_reason"] == reason || time.Now().After(deadline) {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func accessLog(t *testing.T, dir string) []map[string]any {
	t.Helper()
	st, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out []map[string]any
	if _, err := st.AccessLog(context.Background(), 0, false, 0, func(rec sink.AccessRecord) error {
		var m map[string]any
		if err := json.Unmarshal(rec.Record, &m); err != nil {
			return err
		}
		if m["action"] == "end_session" {
			out = append(out, m)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSessionControlOdooFileStore: cdcaudit watches Odoo's file session
// store and ends sessions the way Odoo revokes them.
//
//   - bob logs out (Odoo removes his file and writes an anonymous one):
//     his session ends logged_out, though the database recorded nothing;
//   - 'cdcaudit sessions end' ends alice's session through the daemon: her
//     file is gone, her device row revoked on a normal connection, and
//     that UPDATE arrives in the trail attributed through cdcaudit's
//     logical message; the session ends terminated; the access log says
//     who asked;
//   - an id that is no session id, or climbs out of the store, is refused
//     and nothing outside the store is touched.
func TestSessionControlOdooFileStore(t *testing.T) {
	st := odooStore{t, t.TempDir()}
	outside := filepath.Join(filepath.Dir(st.dir), "outside")
	os.MkdirAll(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "keep"), []byte("keep"), 0o600)
	r := startOdoo(t, "--session-store", st.dir)
	alice := r.loginWithFile(st, odoosim.Alice, aliceLaptop)
	bob := r.loginWithFile(st, odoosim.Bob, bobDesktop)
	carol := r.loginWithFile(st, odoosim.Carol, carolMac)
	aliceID, bobID := sessions.Pseudonym(alice.Identifier()), sessions.Pseudonym(bob.Identifier())
	r.catchUp()

	// bob logs out: Odoo's rotation.
	if err := os.Remove(st.path(bob.SID)); err != nil {
		t.Fatal(err)
	}
	st.save(odoosim.NewSessionID(), 0)
	if s := waitSessionEnd(t, r, bobID); s["end_reason"] != sessions.EndLoggedOut || s["end_inferred"] == true {
		t.Errorf("bob after his logout: %v", s)
	}

	// Refused: not session ids; nothing is touched.
	for _, bad := range []string{"../outside/keep", "s" + strings.Repeat("../", 8)} {
		if _, _, code := runCLI(t, "sessions", "end", bad, "--data-dir", r.dataDir); code == 0 {
			t.Errorf("sessions end %q: exit 0", bad)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("outside the store: %v", err)
	}

	// cdcaudit ends alice's session (by the short id the list shows).
	out, errOut, code := runCLI(t, "sessions", "end", aliceID[:12], "--data-dir", r.dataDir)
	if code != 0 || !strings.Contains(out, aliceID) || !strings.Contains(out, " ok ") {
		t.Fatalf("sessions end: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, err := os.Stat(st.path(alice.SID)); !os.IsNotExist(err) {
		t.Errorf("alice's session file: %v", err)
	}
	var revoked bool
	var writeUID int64
	if err := r.ctl.QueryRow(r.ctx, `SELECT bool_and(revoked), max(write_uid) FROM res_device_log WHERE session_identifier = $1`,
		alice.Identifier()).Scan(&revoked, &writeUID); err != nil || !revoked || writeUID != 1 {
		t.Errorf("alice's device rows: revoked %v by %d (%v), want by 1 (__system__: the CLI's user is no Odoo user)", revoked, writeUID, err)
	}
	// The revoke arrives in the stream first (revoked, by __system__), or
	// cdcaudit's own news of it (terminated): either way it ends as
	// terminated once both have been seen.
	if s := waitSessionReason(t, r, aliceID, sessions.EndTerminated); s["end_reason"] != sessions.EndTerminated {
		t.Errorf("alice's session: %v", s)
	}
	// Again: already gone.
	out, _, code = runCLI(t, "sessions", "end", aliceID, "--data-dir", r.dataDir)
	if code != 0 || !strings.Contains(out, "not_found") {
		t.Errorf("second end: %d %s", code, out)
	}
	evs := r.stop()

	var revokes []*event
	for _, e := range evs {
		if e.Table == "res_device_log" && e.Op == "update" {
			revokes = append(revokes, e)
		}
	}
	if len(revokes) != 1 {
		t.Fatalf("%d res_device_log updates, want 1", len(revokes))
	}
	var actor struct {
		UserID  *int64 `json:"user_id"`
		UserVia string `json:"user_via"`
	}
	if err := json.Unmarshal(revokes[0].Actor, &actor); err != nil || actor.UserVia != "message" || actor.UserID == nil || *actor.UserID != 1 {
		t.Errorf("the revoke's actor: %s", revokes[0].Actor)
	}
	for _, e := range evs {
		if strings.Contains(e.Raw, alice.Identifier()) || strings.Contains(e.Raw, bob.SID[42:]) {
			t.Errorf("a session identifier in the trail: %s", e.ID)
		}
	}
	// The daemon stopped: the command does it itself, with the
	// configuration it is given.
	out, errOut, code = runCLI(t, "sessions", "end", "--user", "carol@example.com", "--all", "--data-dir", r.dataDir,
		"--dsn", r.db.dsn, "--session-store", st.dir, "--profile", "odoo")
	if code != 0 || !strings.Contains(out, " ok ") {
		t.Errorf("sessions end --user carol --all, stopped daemon: %d\n%s\n%s", code, out, errOut)
	}
	if _, err := os.Stat(st.path(carol.SID)); !os.IsNotExist(err) {
		t.Errorf("carol's session file: %v", err)
	}
	log := accessLog(t, r.dataDir)
	if len(log) != 3 || log[0]["result"] != "ok" || log[0]["via"] != "socket" || log[0]["session"] != aliceID || log[1]["result"] != "not_found" ||
		log[2]["via"] != "cli" || log[2]["user"] != "carol@example.com" {
		t.Errorf("access log: %v", log)
	}
	if b, _ := os.ReadFile(r.d.logPath); strings.Contains(string(b), alice.Identifier()) || strings.Contains(string(b), bob.Identifier()) {
		t.Error("a session identifier in the daemon's log")
	}
}

// TestSessionPolicyIdleTimeout: a session idle for the timeout (1m, the
// least there is: the test waits for it) is ended once by the policy, and
// not again after a restart; in dry run nothing is ended and what would be
// is recorded once, across a restart too. Logins excepted stay.
func TestSessionPolicyIdleTimeout(t *testing.T) {
	for _, dry := range []bool{true, false} {
		t.Run(map[bool]string{true: "dry_run", false: "ends"}[dry], func(t *testing.T) {
			t.Parallel()
			st := odooStore{t, t.TempDir()}
			args := []string{"--session-store", st.dir, "--policy-idle-timeout", "1m", "--policy-exceptions", "login:admin", "--log-level", "debug"}
			if dry {
				args = append(args, "--policy-dry-run")
			}
			r := startOdoo(t, args...)
			alice := r.loginWithFile(st, odoosim.Alice, aliceLaptop)
			admin := r.loginWithFile(st, odoosim.Admin, adminDesk)
			r.catchUp()
			aliceID := sessions.Pseudonym(alice.Identifier())
			waitLog(t, r.d.log, "end session", 1, r.d)
			evaluated := strings.Count(r.d.log(), "session policies evaluated")
			waitLog(t, r.d.log, "session policies evaluated", evaluated+1, r.d) // a round after the one that fired
			r.d.stopClean()
			r.restart()
			waitLog(t, r.d.log, "session policies evaluated", strings.Count(r.d.log(), "session policies evaluated")+2, r.d)
			r.d.stopClean()

			log := accessLog(t, r.dataDir)
			want := "ok"
			if dry {
				want = "dry_run"
			}
			if len(log) != 1 || log[0]["result"] != want || log[0]["via"] != "policy:idle_timeout" || log[0]["session"] != aliceID {
				t.Fatalf("access log: %v", log)
			}
			_, fileErr := os.Stat(st.path(alice.SID))
			var revoked bool
			r.ctl.QueryRow(r.ctx, `SELECT bool_and(revoked) FROM res_device_log WHERE session_identifier = $1`, alice.Identifier()).Scan(&revoked)
			if dry && (fileErr != nil || revoked) {
				t.Errorf("dry run ended something: file %v, revoked %v", fileErr, revoked)
			}
			if !dry && (!os.IsNotExist(fileErr) || !revoked) {
				t.Errorf("idle timeout: file %v, revoked %v", fileErr, revoked)
			}
			if _, err := os.Stat(st.path(admin.SID)); err != nil {
				t.Errorf("the excepted admin's session: %v", err)
			}
			sess := listSessions(t, r.dataDir)
			for _, s := range sess {
				if s["id"] == aliceID {
					ended := s["end_reason"] == sessions.EndTerminated
					if ended == dry {
						t.Errorf("alice's session after the policy: %v", s)
					}
				}
			}
		})
	}
}
