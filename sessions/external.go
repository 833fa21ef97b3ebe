package sessions

import (
	"slices"
	"time"
)

// EndTerminated: cdcaudit ended the session (a person through the command
// line or the API, or a policy: who is in the access log).
const EndTerminated = "terminated"

// Signal is news of a session from outside the stream: the application's
// session store seen changing (package storewatch), or cdcaudit's own
// action on it (package sessionctl). ID is the session's pseudonym.
type Signal struct {
	ID string
	At time.Time
	// End is "" for activity (the session's file was written), else the
	// end reason: logged_out, expired, deleted or terminated.
	End string
}

// externalEnds are the end reasons a Signal may carry.
var externalEnds = []string{EndLoggedOut, EndExpired, EndDeleted, EndTerminated}

// recordedEnds are explicit ends that cdcaudit's own termination explains
// when they come right after it: Odoo's rows marked revoked and its files
// removed by the action itself.
var recordedEnds = []string{EndRevoked, EndDeleted, EndLoggedOut}

// maxAnnounced bounds the sessions announced by activity before the stream
// names them.
const maxAnnounced = 4096

// terminationSlack is how much earlier than the termination's own time an
// end it caused may be dated (the database's clock against cdcaudit's).
const terminationSlack = time.Minute

// Apply takes a Signal, on the goroutine that observes the stream, between
// transactions: its changes are persisted with the next Dirty like the
// stream's. It never moves the stream clock (the signal's time is another
// clock's). It reports whether it changed a session; a session it does
// not hold (not yet in the stream, or forgotten) is left alone.
//
// Activity moves the session's last activity and marks it store-watched
// (its logout will be seen). An end ends an open session; a termination
// also renames an end that the termination itself caused — the revoke of
// its device-log rows or the removal of its files, seen first — so the
// session says who ended it.
func (t *Tracker) Apply(sig Signal) bool {
	if sig.ID == "" || sig.At.IsZero() || (sig.End != "" && !slices.Contains(externalEnds, sig.End)) {
		return false
	}
	at := sig.At.UTC()
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.sessions[sig.ID]
	if s == nil {
		if sig.End == "" {
			// A login's file comes before its device-log row: the row
			// opens the session store-watched.
			if len(t.announced) >= maxAnnounced {
				clear(t.announced)
			}
			t.announced[sig.ID] = struct{}{}
		}
		return false
	}
	switch {
	case sig.End == "":
		if !s.Ended.IsZero() {
			return false
		}
		changed := !s.StoreWatched || at.After(s.LastActivity)
		s.StoreWatched = true
		if at.After(s.LastActivity) {
			s.LastActivity = at
		}
		if changed {
			t.touched(s, true)
		}
		return changed
	case s.Ended.IsZero():
		s.StoreWatched = true
		t.end(s, at, sig.End, nil)
		return true
	case sig.End == EndTerminated && slices.Contains(recordedEnds, s.EndReason) && !s.Ended.Before(at.Add(-terminationSlack)):
		s.EndReason, s.EndedBy = EndTerminated, nil
		t.touched(s, true)
		return true
	}
	return false
}
