package sessions

import (
	"testing"
	"time"
)

func TestApplySignals(t *testing.T) {
	s := odoo18(t, Options{})
	at := t0.Add(time.Minute)
	for _, seed := range []string{"lo", "ex", "rv", "te", "tx"} {
		s.insert(devicesT, at, deviceRow18(sid42(seed), 6, "10.0.0.5", "linux", "firefox", "computer", at, at))
	}
	s.tr.Dirty()
	clock := s.tr.Stats()

	// Activity: last activity moves, the session is store-watched, the
	// stream clock does not move.
	act := at.Add(10 * time.Minute)
	if !s.tr.Apply(Signal{ID: Pseudonym(sid42("lo")), At: act}) {
		t.Fatal("activity changed nothing")
	}
	got := mustSession(t, s.tr, Pseudonym(sid42("lo")))
	if !got.LastActivity.Equal(act) || !got.StoreWatched || got.EndInferred(act, 0) {
		t.Errorf("after activity: %+v", got)
	}
	if ups := s.tr.Dirty(); len(ups) != 1 || ups[0].Key != sessionKey(got.ID) {
		t.Errorf("dirty after activity: %v", ups)
	}
	if s.tr.Stats() != clock {
		t.Errorf("stats moved")
	}

	// Ends: logged out; expired; unknown reasons and sessions refused.
	out := at.Add(20 * time.Minute)
	if !s.tr.Apply(Signal{ID: Pseudonym(sid42("lo")), At: out, End: EndLoggedOut}) {
		t.Fatal("logout changed nothing")
	}
	if got := mustSession(t, s.tr, Pseudonym(sid42("lo"))); got.EndReason != EndLoggedOut || !got.Ended.Equal(out) || got.EndInferred(out, 0) {
		t.Errorf("after logout: %+v", got)
	}
	if s.tr.Apply(Signal{ID: Pseudonym(sid42("lo")), At: out.Add(time.Second), End: EndExpired}) {
		t.Error("a second end changed an ended session")
	}
	s.tr.Apply(Signal{ID: Pseudonym(sid42("ex")), At: out, End: EndExpired})
	if got := mustSession(t, s.tr, Pseudonym(sid42("ex"))); got.EndReason != EndExpired {
		t.Errorf("expired: %+v", got)
	}
	for _, bad := range []Signal{{ID: Pseudonym(sid42("rv")), At: out, End: EndRevoked}, {ID: Pseudonym(sid42("rv")), At: out, End: "x"},
		{ID: Pseudonym(sid42("nope")), At: out, End: EndLoggedOut}, {ID: Pseudonym(sid42("rv")), End: EndLoggedOut}} {
		if s.tr.Apply(bad) {
			t.Errorf("%+v accepted", bad)
		}
	}

	// Files removed (deleted) before the revoke that removed them arrives:
	// the revoke says who.
	s.tr.Apply(Signal{ID: Pseudonym(sid42("rv")), At: out, End: EndDeleted})
	s.update(devicesT, out.Add(time.Second), nil, with(deviceRow18(sid42("rv"), 6, "10.0.0.5", "linux", "firefox", "computer", at, at), "revoked", true, "write_uid", 2))
	if got := mustSession(t, s.tr, Pseudonym(sid42("rv"))); got.EndReason != EndRevoked || got.EndedBy == nil || *got.EndedBy != 2 || !got.Ended.Equal(out) {
		t.Errorf("deleted then revoked: %+v", got)
	}

	// cdcaudit's termination: its own revoke seen first is renamed; an
	// end well before the termination is not.
	term := at.Add(30 * time.Minute)
	s.update(devicesT, term.Add(time.Second), nil, with(deviceRow18(sid42("te"), 6, "10.0.0.5", "linux", "firefox", "computer", at, at), "revoked", true, "write_uid", 1))
	if !s.tr.Apply(Signal{ID: Pseudonym(sid42("te")), At: term, End: EndTerminated}) {
		t.Error("termination after its own revoke changed nothing")
	}
	if got := mustSession(t, s.tr, Pseudonym(sid42("te"))); got.EndReason != EndTerminated || got.EndedBy != nil {
		t.Errorf("terminated: %+v", got)
	}
	if s.tr.Apply(Signal{ID: Pseudonym(sid42("lo")), At: term.Add(time.Hour), End: EndTerminated}) {
		t.Error("a termination an hour after a logout renamed it")
	}
	s.tr.Apply(Signal{ID: Pseudonym(sid42("tx")), At: term, End: EndTerminated})
	s.update(devicesT, term.Add(time.Second), nil, with(deviceRow18(sid42("tx"), 6, "10.0.0.5", "linux", "firefox", "computer", at, at), "revoked", true, "write_uid", 1))
	if got := mustSession(t, s.tr, Pseudonym(sid42("tx"))); got.EndReason != EndTerminated {
		t.Errorf("revoke after termination: %+v", got)
	}
}

func TestApplyAnnouncedBeforeTheRow(t *testing.T) {
	s := odoo18(t, Options{})
	at := t0.Add(time.Minute)
	if s.tr.Apply(Signal{ID: Pseudonym(sid42("nw")), At: at}) {
		t.Error("activity of an unknown session changed something")
	}
	s.insert(devicesT, at, deviceRow18(sid42("nw"), 6, "10.0.0.5", "linux", "firefox", "computer", at, at))
	s.insert(devicesT, at, deviceRow18(sid42("ol"), 6, "10.0.0.5", "linux", "firefox", "computer", at, at))
	if got := mustSession(t, s.tr, Pseudonym(sid42("nw"))); !got.StoreWatched {
		t.Errorf("announced session not store-watched: %+v", got)
	}
	if got := mustSession(t, s.tr, Pseudonym(sid42("ol"))); got.StoreWatched {
		t.Errorf("unannounced session store-watched: %+v", got)
	}
}
