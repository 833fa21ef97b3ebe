package storewatch

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/sessions"
)

// uids are the recording's users (testdata/odoo18/README.md).
var uids = map[string]int64{"admin": 2, "alice": 6, "bob": 7, "carol": 8}

// sidOf makes an 84-character sid from a recorded 8-character prefix.
func sidOf(prefix string) string {
	return prefix + strings.Repeat("Q", 84-len(prefix))
}

// store is a session directory changed the way Odoo 18 changes it.
type store struct {
	t   *testing.T
	dir string
}

// save writes a session as werkzeug does: a temporary file in the root,
// renamed into <sid[:2]>/<sid>.
func (s store) save(sid string, uid int64, mtime time.Time) {
	s.t.Helper()
	sess := map[string]any{"db": "erp", "login": nil, "uid": nil, "session_token": nil, "context": map[string]any{}, "_trace": []any{}}
	if uid != 0 {
		sess["uid"], sess["login"], sess["session_token"] = uid, "u", "secret-token"
	}
	b, _ := json.Marshal(sess)
	tmp, err := os.CreateTemp(s.dir, "tmp*.__wz_sess")
	if err != nil {
		s.t.Fatal(err)
	}
	tmp.Write(b)
	tmp.Close()
	dir := filepath.Join(s.dir, sid[:2])
	os.Mkdir(dir, 0o755)
	if !mtime.IsZero() {
		os.Chtimes(tmp.Name(), mtime, mtime)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, sid)); err != nil {
		s.t.Fatal(err)
	}
}

func (s store) remove(sid string) {
	s.t.Helper()
	if err := os.Remove(filepath.Join(s.dir, sid[:2], sid)); err != nil {
		s.t.Fatal(err)
	}
}

// step is one change of a recorded scenario.
type step struct{ what, prefix, login string }

// recorded reads testdata/odoo18/sessions/<scenario>.txt.
func recorded(t *testing.T, scenario string) [][]step {
	f, err := os.Open(filepath.Join("..", "testdata", "odoo18", "sessions", scenario+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps [][]step
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
		case !strings.HasPrefix(line, "  "):
			steps = append(steps, nil)
		case strings.Contains(line, "(no change)"):
		default:
			var st step
			fields := strings.Fields(line)
			st.what, st.prefix = fields[0], strings.TrimSuffix(fields[1], "…")
			st.login = strings.TrimPrefix(fields[2], "login=")
			steps[len(steps)-1] = append(steps[len(steps)-1], st)
		}
	}
	return steps
}

// apply does a recorded step to the store: removals first (Odoo's rotation
// deletes, then saves).
func (s store) apply(steps []step, lastLogin map[string]string) {
	for _, st := range steps {
		if st.what == "removed" {
			s.remove(sidOf(st.prefix))
		}
	}
	for _, st := range steps {
		if st.what != "removed" {
			s.save(sidOf(st.prefix), uids[st.login], time.Time{})
			lastLogin[st.prefix] = st.login
		}
	}
}

// collect gathers signals until want ends are seen or the timeout.
func collect(t *testing.T, out <-chan sessions.Signal, ends int, quiet time.Duration) []sessions.Signal {
	t.Helper()
	var got []sessions.Signal
	deadline := time.After(30 * time.Second)
	for {
		n := 0
		for _, s := range got {
			if s.End != "" {
				n++
			}
		}
		if n >= ends {
			// A little longer: nothing more may come.
			select {
			case s := <-out:
				got = append(got, s)
				continue
			case <-time.After(quiet):
				return got
			}
		}
		select {
		case s := <-out:
			got = append(got, s)
		case <-deadline:
			t.Fatalf("timed out with %v", got)
		}
	}
}

func id(prefix string) string { return sessions.Pseudonym(sidOf(prefix)[:42]) }

func TestRecordedScenarios(t *testing.T) {
	for _, poll := range []bool{false, true} {
		t.Run(fmt.Sprintf("poll=%v", poll), func(t *testing.T) {
			s := store{t, t.TempDir()}
			w, err := New(Options{Dir: s.dir, ForcePoll: poll, Poll: 50 * time.Millisecond, Rotation: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			// Baseline: an old session before the watcher started
			// signals nothing until it changes.
			s.save(sidOf("OLDsess1"), 2, time.Time{})
			out := make(chan sessions.Signal, 64)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx, out) }()
			defer func() { cancel(); <-done }()
			waitFor(t, func() bool { return w.Stats().Tracked == 1 })

			last := map[string]string{}
			expect := map[string]string{ // a session's end, by the recording's prefix
				"XViQxAVP": sessions.EndLoggedOut, // alice's reload after her password change: rotated to an anonymous one
				"YYZEwxFo": sessions.EndLoggedOut, // bob's old session, replaced by his new login in the same browser
				"laEgMAhp": sessions.EndLoggedOut, // bob logged out
				"FVCJJIFb": sessions.EndDeleted,   // carol's iPhone revoked (the revoke's row update says by whom)
			}
			var got []sessions.Signal
			for _, scenario := range []string{"logins", "edits", "passwords", "sessions", "module", "rawsql"} {
				for _, st := range recorded(t, scenario) {
					s.apply(st, last)
					ends := 0
					for _, c := range st {
						if c.what == "removed" && expect[c.prefix] != "" {
							ends++
						}
					}
					got = append(got, collect(t, out, ends, 150*time.Millisecond)...)
				}
			}
			ended := map[string]string{}
			active := map[string]bool{}
			for _, sig := range got {
				if sig.End != "" {
					if ended[sig.ID] != "" {
						t.Errorf("%s ended twice", sig.ID)
					}
					ended[sig.ID] = sig.End
				} else {
					active[sig.ID] = true
				}
			}
			for prefix, want := range expect {
				if ended[id(prefix)] != want {
					t.Errorf("%s: ended %q, want %q", prefix, ended[id(prefix)], want)
				}
			}
			if len(ended) != len(expect) {
				t.Errorf("ends %v, want %d", ended, len(expect))
			}
			for prefix, login := range last {
				if active[id(prefix)] != (login != "-") {
					t.Errorf("%s (login %s): activity signalled %v", prefix, login, active[id(prefix)])
				}
			}
			if active[id("OLDsess1")] {
				t.Error("the baseline signalled")
			}
			// Odoo's vacuum: a file not written for the lifetime.
			old := sidOf("VACuum01")
			s.save(old, 6, time.Now().Add(-8*24*time.Hour))
			collect(t, out, 0, 200*time.Millisecond)
			s.remove(old)
			sigs := collect(t, out, 1, 100*time.Millisecond)
			if len(sigs) != 1 || sigs[0].ID != id("VACuum01") || sigs[0].End != sessions.EndExpired {
				t.Errorf("vacuum: %+v", sigs)
			}
			if w.Stats().Polling != poll {
				t.Errorf("stats %+v", w.Stats())
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// Not Odoo sessions: wrong names, a symlink out of the store, a directory,
// junk content, too many files. Nothing is signalled for them and nothing
// outside the store is read.
func TestOnlySessionsTracked(t *testing.T) {
	s := store{t, t.TempDir()}
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte(`{"uid": 2}`), 0o600)
	w, err := New(Options{Dir: s.dir, Poll: 20 * time.Millisecond, Rotation: 100 * time.Millisecond, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan sessions.Signal, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, out) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return true })
	time.Sleep(50 * time.Millisecond)

	ab := filepath.Join(s.dir, "ab")
	os.Mkdir(ab, 0o755)
	os.WriteFile(filepath.Join(ab, "short"), []byte(`{"uid":2}`), 0o600)
	os.WriteFile(filepath.Join(ab, sidOf("cdwrong1")), []byte(`{"uid":2}`), 0o600) // not its prefix directory
	os.Symlink(outside, filepath.Join(ab, sidOf("ablink01")))
	os.Mkdir(filepath.Join(ab, sidOf("abdir001")), 0o755)
	os.WriteFile(filepath.Join(ab, sidOf("abjunk01")), []byte("not json"), 0o600)
	os.WriteFile(filepath.Join(ab, sidOf("abneg001")), []byte(`{"uid":-1}`), 0o600)
	s.save(sidOf("abgood01"), 6, time.Time{})
	s.save(sidOf("abgood02"), 7, time.Time{})
	s.save(sidOf("abgood03"), 8, time.Time{}) // past MaxFiles
	sigs := collect(t, out, 0, 300*time.Millisecond)
	if len(sigs) != 2 || sigs[0].ID == sigs[1].ID {
		t.Errorf("signals %+v, want the two first good ones", sigs)
	}
	st := w.Stats()
	if st.Tracked != 2 || st.Ignored == 0 || st.Unusable < 5 {
		t.Errorf("stats %+v", st)
	}
}

func FuzzParseUser(f *testing.F) {
	f.Add([]byte(`{"uid": 7, "login": "bob"}`))
	f.Add([]byte(`{"uid": null}`))
	f.Add([]byte(`{"uid": "7"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		uid, ok := parseUser(b)
		if ok && uid < 0 {
			t.Fatalf("uid %d", uid)
		}
		if !ok && uid != 0 {
			t.Fatalf("uid %d refused", uid)
		}
	})
}

// TestStoreMadeAfterStart: cdcaudit may start before Odoo has made its
// session store; the watcher waits for the directory, then sees the
// sessions in it. A path that is a file is refused.
func TestStoreMadeAfterStart(t *testing.T) {
	parent := t.TempDir()
	s := store{t, filepath.Join(parent, "sessions")}
	if err := ValidateDir(s.dir); err != nil {
		t.Fatalf("a store not made yet: %v", err)
	}
	w, err := New(Options{Dir: s.dir, Poll: 20 * time.Millisecond, Rotation: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan sessions.Signal, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, out) }()
	defer func() { cancel(); <-done }()
	time.Sleep(60 * time.Millisecond) // a few polls find nothing
	if err := os.Mkdir(s.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The watcher takes the directory at its next poll: a session saved
	// after that is seen as it is written.
	deadline := time.Now().Add(30 * time.Second)
	for w.Stats().Tracked == 0 && time.Now().Before(deadline) {
		s.save(sidOf("efgood01"), 6, time.Time{})
		time.Sleep(50 * time.Millisecond)
	}
	if w.Stats().Tracked == 0 {
		t.Fatal("the store made after the start is not watched")
	}
	// A session that begins now is told.
	for len(out) > 0 {
		<-out
	}
	s.save(sidOf("efgood02"), 7, time.Time{})
	if sigs := collect(t, out, 0, 500*time.Millisecond); len(sigs) == 0 {
		t.Fatal("no signal from a session begun once the store existed")
	}
	file := filepath.Join(parent, "file")
	os.WriteFile(file, nil, 0o600)
	if err := ValidateDir(file); err == nil {
		t.Error("a file accepted as the session store")
	}
}
