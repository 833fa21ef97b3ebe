package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

func init() {
	commandFlags["sessions"] = []string{"data-dir", "active", "user", "format", "db", "config"}
}

// sessionsStore writes, through a real tracker and the store, the state of
// an Odoo 18 stream: alice on a laptop (active) and a phone (idle), bob
// revoked by the admin, carol expired.
func sessionsStore(t *testing.T) (dir string, now time.Time, alice, phone, bob string) {
	t.Helper()
	t0 := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	tr, err := sessions.New(profile.Odoo(), sessions.Options{PresentTables: []string{"public.res_device_log"}})
	if err != nil {
		t.Fatal(err)
	}
	lsn := uint64(0x1000)
	val := func(v any) []byte {
		switch x := v.(type) {
		case int:
			return []byte(strconv.Itoa(x))
		case nil:
			return []byte("null")
		case bool:
			return []byte(strconv.FormatBool(x))
		case time.Time:
			return []byte(`"` + x.Format("2006-01-02 15:04:05.999999") + `"`)
		}
		b, _ := json.Marshal(v)
		return b
	}
	send := func(op audit.Op, table string, at time.Time, kv ...any) {
		var r audit.Row
		for i := 0; i < len(kv); i += 2 {
			r = append(r, audit.Column{Name: kv[i].(string), Value: val(kv[i+1])})
		}
		lsn += 0x100
		e := &audit.Event{CommitLSN: lsn, Ordinal: 1, CommitTime: at, Schema: "public", Table: table, Op: op,
			Key: r[:1], After: r}
		if op == audit.OpUpdate {
			e.Changed = nil
		}
		tr.Observe(e)
	}
	device := func(id int, sid string, user int, ip, platform, browser, kind, country, city string, first, last time.Time, revoked bool, writeUID any) []any {
		return []any{"id", id, "session_identifier", sid, "user_id", user, "ip_address", ip, "platform", platform,
			"browser", browser, "device_type", kind, "country", country, "city", city,
			"first_activity", first, "last_activity", last, "revoked", revoked, "write_uid", writeUID}
	}
	for id, login := range map[int]string{2: "admin", 6: "alice@example.com", 7: "bob@example.com", 8: "carol@example.com"} {
		send(audit.OpInsert, "res_users", t0.Add(-30*24*time.Hour), "id", id, "login", login, "password", "x")
	}
	send(audit.OpInsert, "res_device_log", t0.Add(-10*24*time.Hour), device(1, "carol-session-identifier-0123456789abcdefgh", 8, "10.0.0.8", "linux", "firefox", "computer", "", "", t0.Add(-10*24*time.Hour), t0.Add(-10*24*time.Hour), false, nil)...)
	send(audit.OpInsert, "res_device_log", t0.Add(3*time.Hour), device(2, "alice-laptop-identifier-0123456789abcdefgh", 6, "81.2.69.142", "windows", "chrome", "computer", "United Kingdom", "London", t0, t0.Add(3*time.Hour), false, nil)...)
	send(audit.OpInsert, "res_device_log", t0.Add(time.Hour), device(3, "alice-phone-identifier-0123456789abcdefghi", 6, "172.16.0.7", "iphone", "safari", "mobile", "", "", t0, t0.Add(time.Hour), false, nil)...)
	send(audit.OpInsert, "res_device_log", t0.Add(time.Hour), device(4, "bob-desktop-identifier-0123456789abcdefghi", 7, "10.0.0.7", "macos", "safari", "computer", "", "", t0, t0.Add(time.Hour), false, nil)...)
	send(audit.OpUpdate, "res_device_log", t0.Add(2*time.Hour), device(4, "bob-desktop-identifier-0123456789abcdefghi", 7, "10.0.0.7", "macos", "safari", "computer", "", "", t0, t0.Add(time.Hour), true, 2)...)
	send(audit.OpInsert, "res_users_log", t0, "id", 1, "create_uid", 6, "create_date", t0)

	var state []sink.StateRecord
	for _, u := range tr.Dirty() {
		state = append(state, sink.StateRecord{Bucket: "sessions", Key: u.Key, Value: u.Value})
	}
	dir = t.TempDir()
	store, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append([]sink.Batch{{State: state}}); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, t0.Add(3*time.Hour + 2*time.Minute),
		sessions.Pseudonym("alice-laptop-identifier-0123456789abcdefgh"),
		sessions.Pseudonym("alice-phone-identifier-0123456789abcdefghi"),
		sessions.Pseudonym("bob-desktop-identifier-0123456789abcdefghi")
}

func fixNow(t *testing.T, now time.Time) {
	old := sessionsNow
	sessionsNow = func() time.Time { return now }
	t.Cleanup(func() { sessionsNow = old })
}

func TestSessionsCommandTable(t *testing.T) {
	dir, now, alice, phone, bob := sessionsStore(t)
	fixNow(t, now)
	out, errOut, code := runCLI(t, nil, "sessions", "--data-dir", dir)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	t.Logf("\n%s", out)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 8 {
		t.Fatalf("want a header, 4 sessions, a blank line, a summary and the note on inferred ends:\n%s", out)
	}
	for _, h := range []string{"USER", "SESSION", "IP", "BROWSER", "OS", "DEVICE", "LOCATION", "FIRST ACTIVITY", "LAST ACTIVITY", "DURATION", "STATE"} {
		if !strings.Contains(lines[0], h) {
			t.Errorf("header lacks %s: %s", h, lines[0])
		}
	}
	for i, want := range [][]string{
		{"alice@example.com", alice[:13], "81.2.69.142", "chrome", "windows", "computer", "London, United Kingdom", "2026-11-23 09:00:00", "2026-11-23 12:00:00", "3h02m", "active *"},
		{"alice@example.com", phone[:13], "172.16.0.7", "safari", "iphone", "mobile", " - ", "2026-11-23 10:00:00", "3h02m", "idle *"},
		{"bob@example.com", bob[:13], "10.0.0.7", "macos", "2h00m", "ended (revoked by admin)"},
		{"carol@example.com", "10.0.0.8", "firefox", "2026-11-13 09:00:00", "0s", "ended (expired, inferred)"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[1+i], w) {
				t.Errorf("line %d lacks %q:\n%s", 1+i, w, lines[1+i])
			}
		}
	}
	if want := "4 sessions: 1 active, 1 idle, 2 ended (as of 2026-11-23 12:02:00 UTC; idle after 5m, expired after 7d00h without activity)."; lines[6] != want {
		t.Errorf("summary:\n got %s\nwant %s", lines[6], want)
	}
	// Odoo 18 writes nothing on logout: the open sessions may have ended.
	if !strings.HasPrefix(lines[7], "* open as far as the database shows") || !strings.Contains(lines[7], "inferred") {
		t.Errorf("note on inferred ends: %s", lines[7])
	}
	if strings.Contains(lines[3], "inferred") {
		t.Errorf("a revocation is recorded, not inferred: %s", lines[3])
	}
	// The table never shows a raw session identifier.
	if strings.Contains(out, "identifier-0123") {
		t.Errorf("raw identifier in output:\n%s", out)
	}

	out, _, _ = runCLI(t, nil, "sessions", "--data-dir", dir, "--active")
	if n := strings.Count(out, "alice@example.com"); n != 2 || strings.Contains(out, "bob@") || strings.Contains(out, "carol@") {
		t.Errorf("--active:\n%s", out)
	}
	out, _, _ = runCLI(t, map[string]string{"CDCAUDIT_DATA_DIR": dir}, "sessions", "--user", "bob@example.com")
	if !strings.Contains(out, "bob@example.com") || strings.Contains(out, "alice@") || !strings.Contains(out, "1 session: 0 active, 0 idle, 1 ended") {
		t.Errorf("--user bob:\n%s", out)
	}
	out, _, _ = runCLI(t, nil, "sessions", "--data-dir", dir, "--user", "#6", "--active")
	if strings.Count(out, "alice@example.com") != 2 {
		t.Errorf("--user #6:\n%s", out)
	}
	out, errOut, code = runCLI(t, nil, "sessions", "--data-dir", dir, "--user", "mallory")
	if code != 0 || !strings.Contains(out, "No sessions.") || !strings.Contains(errOut, `no user "mallory"`) {
		t.Errorf("--user mallory: %d\n%s\n%s", code, out, errOut)
	}
}

func TestSessionsCommandJSON(t *testing.T) {
	dir, now, alice, _, bob := sessionsStore(t)
	fixNow(t, now)
	out, errOut, code := runCLI(t, nil, "sessions", "--data-dir", dir, "--format", "json")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(got) != 4 {
		t.Fatalf("%d sessions", len(got))
	}
	a := got[0]
	if a["id"] != alice || a["login"] != "alice@example.com" || a["user_id"] != 6.0 || a["state"] != "active" ||
		a["duration_seconds"] != float64(3*3600+120) || a["city"] != "London" || a["first_activity"] != "2026-11-23T09:00:00Z" {
		t.Errorf("alice: %v", a)
	}
	b := got[2]
	if b["id"] != bob || b["state"] != "ended" || b["end_reason"] != "revoked" || b["ended_by"] != 2.0 || b["ended_by_login"] != "admin" {
		t.Errorf("bob: %v", b)
	}
	c := got[3]
	if c["state"] != "ended" || c["end_reason"] != "expired" || c["ended"] != "2026-11-20T09:00:00Z" {
		t.Errorf("carol (expired): %v", c)
	}
	// An open session of res_device_log and an expiry are inferences; a
	// revocation is recorded.
	for i, want := range []bool{true, true, false, true} {
		if got[i]["end_inferred"] != want {
			t.Errorf("session %d: end_inferred %v, want %v", i, got[i]["end_inferred"], want)
		}
	}
	out, _, _ = runCLI(t, nil, "sessions", "--data-dir", dir, "--format", "json", "--user", "nobody@example.com")
	if strings.TrimSpace(out) != "[]" {
		t.Errorf("empty JSON = %q", out)
	}
}

func TestSessionsCommandErrors(t *testing.T) {
	// An empty store: says how sessions get there.
	dir := t.TempDir()
	s, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	out, _, code := runCLI(t, nil, "sessions", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "No session state") {
		t.Errorf("empty store: %d %q", code, out)
	}
	if _, errOut, code := runCLI(t, nil, "sessions"); code != exitUsage || !strings.Contains(errOut, "data") {
		t.Errorf("no --data-dir: %d %q", code, errOut)
	}
	if _, errOut, code := runCLI(t, nil, "sessions", "--data-dir", dir, "--format", "csv"); code != exitUsage || !strings.Contains(errOut, "--format") {
		t.Errorf("--format csv: %d %q", code, errOut)
	}
	if _, errOut, code := runCLI(t, nil, "sessions", "--data-dir", t.TempDir()+"/none"); code != exitFail || !strings.Contains(errOut, "no cdcaudit store") {
		t.Errorf("missing store: %d %q", code, errOut)
	}
	if _, _, code := runCLI(t, nil, "sessions", "--data-dir", dir, "extra"); code != exitUsage {
		t.Errorf("extra argument: %d", code)
	}
}

func TestSessionsHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 42 * time.Second: "42s", 12*time.Minute + 5*time.Second: "12m",
		3*time.Hour + 5*time.Minute: "3h05m", 50 * time.Hour: "2d02h",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%s) = %s, want %s", d, got, want)
		}
	}
}
