package sessions

import (
	"maps"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/profile"
)

// Stats.Started counts each session the stream opened once (a second row
// of the same session is no new login; sessions loaded at a restart are
// not counted), and OpenBy breaks the open sessions down by browser, OS,
// device and country, a revoked one no longer among them.
func TestStartedAndOpenBy(t *testing.T) {
	store := persisted{}
	s := odoo18(t, Options{})
	at := t0.Add(time.Minute)
	s.insert(devicesT, at, deviceRow18(sid42("k1"), 6, "10.0.0.5", "windows", "chrome", "computer", at, at))
	s.insert(devicesT, at, deviceRow18(sid42("k2"), 6, "10.0.0.6", "iphone", "safari", "mobile", at, at))
	dev3 := deviceRow18(sid42("k3"), 7, "10.0.0.7", "windows", "firefox", "computer", at, at)
	s.insert(devicesT, at, dev3)
	// The same session's row again (a refresh): not a login.
	s.update(devicesT, at.Add(time.Minute), nil, deviceRow18(sid42("k1"), 6, "10.0.0.5", "windows", "chrome", "computer", at, at.Add(time.Minute)))
	if st := s.tr.Stats(); st.Started != 3 || st.Open != 3 {
		t.Fatalf("started %d, open %d; want 3 and 3", st.Started, st.Open)
	}
	browser, os, device, country := s.tr.OpenBy()
	if !maps.Equal(browser, map[string]int{"chrome": 1, "safari": 1, "firefox": 1}) ||
		!maps.Equal(os, map[string]int{"windows": 2, "iphone": 1}) ||
		!maps.Equal(device, map[string]int{"computer": 2, "mobile": 1}) ||
		!maps.Equal(country, map[string]int{"": 3}) {
		t.Errorf("OpenBy: %v %v %v %v", browser, os, device, country)
	}
	s.update(devicesT, at.Add(2*time.Minute), nil, with(dev3, "revoked", true, "write_uid", 2))
	if browser, _, device, _ := s.tr.OpenBy(); !maps.Equal(browser, map[string]int{"chrome": 1, "safari": 1}) || device["computer"] != 1 {
		t.Errorf("after a revoke: %v %v", browser, device)
	}
	if st := s.tr.Stats(); st.Started != 3 {
		t.Errorf("a revoke changed started: %d", st.Started)
	}

	// Restart: the sessions are back, none of them started by this stream.
	store.take(s.tr)
	r := newStream(t, profile.Odoo(), Options{PresentTables: []string{devicesT}})
	if err := store.load(func(k, v []byte) error { return r.tr.Load(string(k), v) }); err != nil {
		t.Fatal(err)
	}
	if st := r.tr.Stats(); st.Started != 0 || st.Open != 2 {
		t.Errorf("after a restart: started %d, open %d; want 0 and 2", st.Started, st.Open)
	}
}
