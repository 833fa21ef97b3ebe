package pipeline

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/odoosim"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Session signals reach the tracker between transactions, also while the
// stream is idle, and their state is stored: a session the watched store
// saw logged out ends logged_out, once.
func TestSessionSignalsBetweenTransactions(t *testing.T) {
	dsn, conn := newDB(t)
	ctx := context.Background()
	if err := odoosim.Load(ctx, conn); err != nil {
		t.Fatal(err)
	}
	store, err := sink.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	signals := make(chan sessions.Signal, 8)
	var tracker atomic.Pointer[sessions.Tracker]
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- Run(rctx, Config{Replication: replication.Config{DSN: dsn, Slot: "signals", Publication: "signals", StatusInterval: 100 * time.Millisecond},
			Store: store, Profile: "odoo", SessionSignals: signals, OnTracker: func(tr *sessions.Tracker) { tracker.Store(tr) }})
	}()
	defer func() { cancel(); <-done }()

	waitUntil(t, done, func() bool { return tracker.Load() != nil }) // the slot exists by then
	s := odoosim.New(conn).NewDevice(odoosim.Alice, odoosim.Device{IP: "198.51.100.10", Platform: "linux", Browser: "chrome"})
	if _, err := s.Visit(ctx); err != nil {
		t.Fatal(err)
	}
	id := sessions.Pseudonym(s.Identifier())
	waitUntil(t, done, func() bool {
		tr := tracker.Load()
		if tr == nil {
			return false
		}
		_, ok := tr.Session(id)
		return ok
	})
	// The stream is idle now: the signal is applied and stored all the same.
	at := time.Now().UTC()
	signals <- sessions.Signal{ID: id, At: at, End: sessions.EndLoggedOut}
	waitUntil(t, done, func() bool {
		var got sessions.Session
		store.LoadState("sessions", func(k, v []byte) error {
			if string(k) == "s/"+id {
				json.Unmarshal(v, &got)
			}
			return nil
		})
		return got.EndReason == sessions.EndLoggedOut && got.Ended.Equal(at)
	})
	// Another end of the same session changes nothing.
	signals <- sessions.Signal{ID: id, At: at.Add(time.Minute), End: sessions.EndExpired}
	waitUntil(t, done, func() bool { return len(signals) == 0 })
	if got, _ := tracker.Load().Session(id); got.EndReason != sessions.EndLoggedOut || !got.Ended.Equal(at) {
		t.Errorf("after a second end: %+v", got)
	}
}

func waitUntil(t *testing.T, done chan error, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("pipeline stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
