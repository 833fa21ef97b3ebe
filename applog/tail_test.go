package applog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/sink"
)

var base = time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)

// line is an Odoo log line at base+at.
func line(at time.Duration, result, login, ip string) string {
	what := map[string]string{ResultOK: "successful", ResultFailed: "failed"}[result]
	return fmt.Sprintf("%s 28896 INFO erp odoo.addons.base.models.res_users: Login %s for db:erp login:%s from %s \n",
		strings.Replace(base.Add(at).Format("2006-01-02 15:04:05.000"), ".", ",", 1), what, login, ip)
}

func appendFile(t *testing.T, path string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		// Other lines of Odoo's log in between: they are no logins.
		appendRaw(t, path, "2026-12-03 06:00:00,000 28896 INFO erp werkzeug: 127.0.0.1 - - \"GET /odoo HTTP/1.1\" 200 -\n"+l)
	}
}

func appendRaw(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// harness is a real store written through its real writer, and a tailer
// following path.
type harness struct {
	t      *testing.T
	store  *sink.Store
	w      *sink.Writer
	path   string
	stop   func()
	failAt atomic.Int64 // fail the state call with this number (1-based), once
	calls  atomic.Int64
}

func newHarness(t *testing.T) *harness {
	dir := t.TempDir()
	store, err := sink.Open(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, store: store, w: sink.NewWriter(store, sink.WriterOptions{}), path: filepath.Join(dir, "odoo.log")}
	t.Cleanup(func() {
		h.halt()
		h.w.Close()
		store.Close()
	})
	return h
}

func (h *harness) state(ctx context.Context, recs []sink.StateRecord) error {
	if n := h.calls.Add(1); n == h.failAt.Load() {
		return errors.New("the store is down")
	}
	if err := h.w.Submit(ctx, sink.Batch{State: recs}); err != nil {
		return err
	}
	return h.w.Flush(ctx)
}

func (h *harness) start(burst Burst) {
	h.halt()
	ctx, cancel := context.WithCancel(context.Background())
	tl := New(Options{Path: h.path, Burst: burst, Poll: 20 * time.Millisecond}, h.store.LoadState)
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx, h.state) }()
	h.stop = func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("tailer: %v", err)
		}
	}
}

func (h *harness) halt() {
	if h.stop != nil {
		h.stop()
		h.stop = nil
	}
}

func (h *harness) logins() []Record {
	h.t.Helper()
	recs, err := ReadLogins(h.store.LoadState)
	if err != nil {
		h.t.Fatal(err)
	}
	return recs
}

func (h *harness) alerts() []alerts.Alert {
	h.t.Helper()
	var out []alerts.Alert
	err := h.store.LoadState(alerts.Bucket, func(k, v []byte) error {
		var a alerts.Alert
		if err := json.Unmarshal(v, &a); err != nil {
			return err
		}
		out = append(out, a)
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// waitLogins waits (generously) until n logins are stored.
func (h *harness) waitLogins(n int) []Record {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		recs := h.logins()
		if len(recs) >= n || time.Now().After(deadline) {
			if len(recs) != n {
				h.t.Fatalf("%d logins stored, want %d: %+v", len(recs), n, recs)
			}
			return recs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTailRotationTruncationBurst(t *testing.T) {
	h := newHarness(t)
	h.start(DefaultBurst)
	// The file does not exist yet: the tailer waits for it.
	appendFile(t, h.path, line(0, ResultOK, "alice", "203.0.113.10"), line(time.Second, ResultFailed, "bob", "198.51.100.99"))
	recs := h.waitLogins(2)
	if recs[1].Login.Login != "bob" || recs[1].Result != ResultFailed || recs[1].IP != "198.51.100.99" {
		t.Errorf("bob's failure: %+v", recs[1])
	}

	// Five failures for one login (no such user) from one address: one
	// alert; the burst goes on across a rotation (rename + new file) and
	// raises nothing more.
	for i := range 4 {
		appendFile(t, h.path, line(time.Minute+time.Duration(i)*time.Second, ResultFailed, "mallory", "192.0.2.66"))
	}
	// The fifth is the old file's last line, without its newline.
	last := line(time.Minute+4*time.Second, ResultFailed, "mallory", "192.0.2.66")
	appendFile(t, h.path, strings.TrimSuffix(last, "\n"))
	if err := os.Rename(h.path, h.path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, h.path, line(2*time.Minute, ResultFailed, "mallory", "192.0.2.66"), line(3*time.Minute, ResultOK, "carol", "192.0.2.44"))
	h.waitLogins(9)
	as := h.alerts()
	if len(as) != 1 {
		t.Fatalf("%d alerts, want one for the burst: %+v", len(as), as)
	}
	a := as[0]
	if a.Kind != alerts.KindFailedLoginBurst || a.Login != "mallory" || a.IP != "192.0.2.66" || a.Detail["by"] != "login,ip" ||
		!a.Time.Equal(base.Add(time.Minute+4*time.Second)) || !strings.HasPrefix(a.ID, alerts.KindFailedLoginBurst+"/applog:") {
		t.Errorf("the burst's alert: %+v", a)
	}

	// A restart reads on from the stored position: nothing twice.
	h.start(DefaultBurst)
	appendFile(t, h.path, line(4*time.Minute, ResultOK, "dave", "192.0.2.45"))
	h.waitLogins(10)

	// copytruncate: the file is emptied in place and written again.
	if err := os.Truncate(h.path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, h.path, line(5*time.Minute, ResultOK, "erin", "192.0.2.46"))
	recs = h.waitLogins(11)
	if recs[10].Login.Login != "erin" {
		t.Errorf("after the truncation: %+v", recs[10])
	}

	// A quiet window later the same attack is a new burst; four failures
	// from one address for four logins are not one.
	var lines []string
	for i := range 5 {
		lines = append(lines, line(30*time.Minute+time.Duration(i)*time.Second, ResultFailed, "mallory", "192.0.2.66"))
	}
	for i := range 4 {
		lines = append(lines, line(time.Hour+time.Duration(i)*time.Second, ResultFailed, fmt.Sprintf("user%d", i), "192.0.2.99"))
	}
	appendFile(t, h.path, lines...)
	h.waitLogins(20)
	if as := h.alerts(); len(as) != 2 {
		t.Fatalf("%d alerts, want 2: %+v", len(as), as)
	}
}

// TestTailStoreFailure: a state call that fails is retried from the
// stored position, and nothing is recorded twice.
func TestTailStoreFailure(t *testing.T) {
	h := newHarness(t)
	h.failAt.Store(2)
	h.start(Burst{Failures: 3, Within: time.Minute})
	appendFile(t, h.path, line(0, ResultFailed, "x", "192.0.2.1"), line(time.Second, ResultFailed, "x", "192.0.2.1"))
	h.waitLogins(2)
	appendFile(t, h.path, line(2*time.Second, ResultFailed, "x", "192.0.2.1"), line(3*time.Second, ResultFailed, "x", "192.0.2.1"))
	h.waitLogins(4)
	if h.calls.Load() < 3 {
		t.Errorf("the failed call was not retried: %d calls", h.calls.Load())
	}
	if as := h.alerts(); len(as) != 1 || as[0].Detail["failures_login"] != "3" {
		t.Errorf("alerts: %+v", as)
	}
}

// TestTailRotatedWhileStopped: lines written to the old file after the
// last stored position are read from its rotated copy at the next start.
func TestTailRotatedWhileStopped(t *testing.T) {
	h := newHarness(t)
	h.start(DefaultBurst)
	appendFile(t, h.path, line(0, ResultOK, "alice", "192.0.2.1"))
	h.waitLogins(1)
	h.halt()
	appendFile(t, h.path, line(time.Second, ResultOK, "bob", "192.0.2.2"))
	if err := os.Rename(h.path, h.path+"-20261203"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, h.path, line(2*time.Second, ResultOK, "carol", "192.0.2.3"))
	h.start(DefaultBurst)
	recs := h.waitLogins(3)
	if recs[1].Login.Login != "bob" || recs[2].Login.Login != "carol" {
		t.Errorf("%+v", recs)
	}
}

// TestTailLongLines: an over-long line is skipped, the next one read.
func TestTailLongLines(t *testing.T) {
	h := newHarness(t)
	tl := New(Options{Path: h.path, MaxLine: 300, Poll: 20 * time.Millisecond}, h.store.LoadState)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx, h.state) }()
	defer func() { cancel(); <-done }()
	long := strings.TrimSuffix(line(0, ResultFailed, strings.Repeat("a", 100<<10), "192.0.2.1"), "\n")
	appendRaw(t, h.path, long[:50<<10]) // half of it now, the rest later
	time.Sleep(100 * time.Millisecond)  // (not needed to pass: lets the tailer see the half)
	appendRaw(t, h.path, long[50<<10:]+"\n"+line(time.Second, ResultOK, "alice", "192.0.2.1"))
	recs := h.waitLogins(1)
	if recs[0].Login.Login != "alice" {
		t.Errorf("%+v", recs)
	}
}

// TestTailRotationRace: lines the old file got between the tailer's last
// read and its seeing the rotation are all read before it switches.
func TestTailRotationRace(t *testing.T) {
	h := newHarness(t)
	appendFile(t, h.path, line(0, ResultOK, "alice", "192.0.2.1"))
	tl := New(Options{Path: h.path, Burst: DefaultBurst}, h.store.LoadState)
	ctx := context.Background()
	if err := tl.restore(); err != nil {
		t.Fatal(err)
	}
	if err := tl.step(ctx, h.state); err != nil {
		t.Fatal(err)
	}
	defer tl.closeFile()
	appendFile(t, h.path, line(time.Second, ResultOK, "bob", "192.0.2.2"), line(2*time.Second, ResultOK, "carol", "192.0.2.3"))
	if err := os.Rename(h.path, h.path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, h.path, line(3*time.Second, ResultOK, "dave", "192.0.2.4"))
	if switched, err := tl.followRotation(ctx, h.state); err != nil || !switched {
		t.Fatalf("switched %v, %v", switched, err)
	}
	if err := tl.step(ctx, h.state); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range h.logins() {
		got = append(got, r.Login.Login)
	}
	if strings.Join(got, ",") != "alice,bob,carol,dave" {
		t.Errorf("logins %v", got)
	}
}
