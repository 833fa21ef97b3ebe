// Package dbsessions watches who is connected to the audited database
// besides the application: it samples pg_stat_activity on an ordinary
// connection, keeps the sessions that are not the application's (by role,
// application_name and client address) with when they opened and closed,
// and flags a change that no application user made while such a session was
// open (flag direct_db, the session among the event's candidates).
//
// The sampler persists what it sees in the state bucket "dbsessions" before
// anyone may act on it; the flag is decided from those persisted intervals
// only, so a replay of the stream decides the same.
//
// Sampling misses a session that connects, changes and disconnects between
// two samples. To narrow that, a commit with no application user asks for a
// sample at once (at most one a second), and the decision waits for it
// briefly: a session still open then is found.
package dbsessions

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cdcaudit/cdcaudit/sink"
)

// Bucket is the state bucket of the sampled sessions (key: the session's
// id) and of the time of the last sample (key sampledKey).
const Bucket = "dbsessions"

const sampledKey = "sampled"

// MaxSessions bounds the sessions kept: when a sample would keep more, the
// closed ones that closed first are forgotten; open sessions beyond it are
// not kept (and logged).
const MaxSessions = 1000

// Session is one database session that is not the application's.
type Session struct {
	// ID is "db:" + pid + "-" + backend_start in Unix microseconds: a pid
	// is reused, a pid and its start are not.
	ID          string `json:"id"`
	PID         int32  `json:"pid"`
	Role        string `json:"role"`
	Client      string `json:"client"` // its address, "local" for a Unix socket
	Application string `json:"application_name"`
	// Start is backend_start: when it connected.
	Start time.Time `json:"backend_start"`
	// State and StateChange are pg_stat_activity's as last sampled.
	State       string     `json:"state,omitempty"`
	StateChange *time.Time `json:"state_change,omitempty"`
	// Closed is the time of the first sample that no longer saw it: it
	// ended between the sample before and then (nil: open).
	Closed *time.Time `json:"closed,omitempty"`
}

// SessionID is the id of the session pid started at start.
func SessionID(pid int32, start time.Time) string {
	return "db:" + strconv.FormatInt(int64(pid), 10) + "-" + strconv.FormatInt(start.UnixMicro(), 10)
}

// OpenAt reports whether the session was (or may have been) open at t:
// connected by then and not seen gone by then.
func (s *Session) OpenAt(t time.Time) bool {
	return !s.Start.After(t) && (s.Closed == nil || s.Closed.After(t))
}

// Book is the persisted sessions, as the sampler last stored them; safe for
// concurrent use. The sampler updates it only once a sample is durable.
type Book struct {
	mu       sync.Mutex
	sessions map[string]*Session
	sampled  time.Time     // the last durable sample (server time)
	changed  chan struct{} // closed and replaced when sampled moves
	live     bool          // a sampler is running and its last sample succeeded
	kick     chan struct{} // asks the sampler for a sample now
}

// NewBook returns an empty book.
func NewBook() *Book {
	return &Book{sessions: map[string]*Session{}, changed: make(chan struct{}), kick: make(chan struct{}, 1)}
}

// ReadBook reads the persisted sessions: load is the store's LoadState of
// Bucket (sink.Store.LoadState, or the daemon's over its socket).
func ReadBook(load func(fn func(k, v []byte) error) error) (*Book, error) {
	b := NewBook()
	err := load(func(k, v []byte) error {
		if string(k) == sampledKey {
			return b.sampled.UnmarshalText(v)
		}
		var s Session
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("database session %q: %w", k, err)
		}
		if s.ID != string(k) {
			return fmt.Errorf("database session %q holds %q", k, s.ID)
		}
		b.sessions[s.ID] = &s
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the database sessions: %w", err)
	}
	return b, nil
}

// Sampled is the time of the last sample stored (zero: none).
func (b *Book) Sampled() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sampled
}

// List returns the sessions: open ones first, most recently started first,
// then closed ones, most recently closed first.
func (b *Book) List() []Session {
	b.mu.Lock()
	out := make([]Session, 0, len(b.sessions))
	for _, s := range b.sessions {
		out = append(out, *s)
	}
	b.mu.Unlock()
	slices.SortFunc(out, Compare)
	return out
}

// Compare orders sessions as List does.
func Compare(a, b Session) int {
	switch {
	case a.Closed == nil && b.Closed != nil:
		return -1
	case a.Closed != nil && b.Closed == nil:
		return 1
	case a.Closed != nil && !a.Closed.Equal(*b.Closed):
		return b.Closed.Compare(*a.Closed)
	case !a.Start.Equal(b.Start):
		return b.Start.Compare(a.Start)
	}
	return cmp.Compare(a.ID, b.ID)
}

// OpenAt returns the sessions open (or that may have been open) at t,
// earliest connected first.
func (b *Book) OpenAt(t time.Time) []Session {
	b.mu.Lock()
	var out []Session
	for _, s := range b.sessions {
		if s.OpenAt(t) {
			out = append(out, *s)
		}
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(a, b Session) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

// record is the state record of s.
func record(s *Session) sink.StateRecord {
	v, _ := json.Marshal(s) // a Session always marshals
	return sink.StateRecord{Bucket: Bucket, Key: s.ID, Value: v}
}

func sampledRecord(t time.Time) sink.StateRecord {
	v, _ := t.UTC().MarshalText()
	return sink.StateRecord{Bucket: Bucket, Key: sampledKey, Value: v}
}

// update is what one sample changes.
type update struct {
	at      time.Time
	put     []*Session // new or changed
	dropped []string   // forgotten
}

func (u *update) records() []sink.StateRecord {
	recs := make([]sink.StateRecord, 0, len(u.put)+len(u.dropped)+1)
	for _, s := range u.put {
		recs = append(recs, record(s))
	}
	for _, id := range u.dropped {
		recs = append(recs, sink.StateRecord{Bucket: Bucket, Key: id})
	}
	return append(recs, sampledRecord(u.at))
}

// apply makes a stored update visible.
func (b *Book) apply(u *update) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range u.put {
		b.sessions[s.ID] = s
	}
	for _, id := range u.dropped {
		delete(b.sessions, id)
	}
	if u.at.After(b.sampled) {
		b.sampled = u.at
		close(b.changed)
		b.changed = make(chan struct{})
	}
}

// setLive says whether a sampler runs and succeeds: a flag waits for a
// sample only then.
func (b *Book) setLive(live bool) {
	b.mu.Lock()
	b.live = live
	b.mu.Unlock()
}

// awaitSample asks for a sample and waits, at most for max, until one taken
// at or after t is stored. It reports whether one is.
func (b *Book) awaitSample(t time.Time, max time.Duration) bool {
	b.mu.Lock()
	if !b.sampled.Before(t) {
		b.mu.Unlock()
		return true
	}
	if !b.live {
		b.mu.Unlock()
		return false
	}
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	timeout := time.NewTimer(max)
	defer timeout.Stop()
	for {
		b.mu.Lock()
		done, changed := !b.sampled.Before(t), b.changed
		b.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-changed:
		case <-timeout.C:
			return false
		}
	}
}
