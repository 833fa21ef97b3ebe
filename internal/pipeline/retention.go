package pipeline

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

// pruneMetrics is what retention reports.
type pruneMetrics interface {
	Pruned(records uint64, cuts int, lastCut time.Time)
	// RetentionHeld: the sink that held a pass back ("" none) and the
	// commit time of the oldest expired record kept for it.
	RetentionHeld(by string, since time.Time)
}

// pruneEvery is how often retention looks for expired events: every few
// minutes, more often for a window shorter than an hour.
func pruneEvery(r sink.Retention) time.Duration {
	return min(max(r.Shortest()/8, time.Second), 5*time.Minute)
}

// startRetention prunes the store in the background while the stream runs,
// in passes of bounded batches (each takes the store's write lock once, so
// appends go on between them). stop ends it and waits for the batch in
// progress; it may be called more than once.
func startRetention(cfg Config, store *sink.Store, log *slog.Logger) (stop func(), err error) {
	r := cfg.Retention
	if !r.Enabled() {
		return func() {}, nil
	}
	if r.Default > 0 {
		r.State = map[string]sink.StateExpiry{stateSessions: sessions.EndedBefore(cfg.SessionLifetime)}
	}
	p, err := store.NewPruner(r)
	if err != nil {
		return nil, err
	}
	var m pruneMetrics
	if cfg.Metrics != nil {
		m = cfg.Metrics
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	every := pruneEvery(r)
	log.Info("retention on", "default", sink.FormatWindow(r.Default), "tables", len(r.Tables), "every", every)
	go func() {
		defer close(done)
		heldBy, heldLogged := "", time.Time{}
		for {
			st, err := p.Prune(ctx)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				log.Error("retention: pruning failed; retrying at the next pass", "err", err)
			}
			if st.Cuts > 0 || st.State > 0 {
				args := []any{"removed", st.Removed, "cuts", st.Cuts, "sessions_state", st.State}
				if c := st.LastCut; c != nil {
					args = append(args, "last_cut", c.ID, "range", c.From+" … "+c.To, "reason", c.Reason)
				}
				log.Info("retention: pruned expired events", args...)
			}
			if m != nil && st.Cuts > 0 {
				m.Pruned(st.Removed, st.Cuts, st.LastCut.MadeAt)
			}
			if st.HeldBy != "" {
				// Logged at each change of who holds it, and every hour.
				if st.HeldBy != heldBy || time.Since(heldLogged) >= time.Hour {
					log.Warn("retention: held back by a sink: expired records it has not acknowledged are kept",
						"sink", st.HeldBy, "oldest_kept", st.HeldSince.UTC().Format(time.RFC3339))
					heldLogged = time.Now()
				}
			} else if heldBy != "" {
				log.Info("retention: no longer held back by a sink", "sink", heldBy)
			}
			heldBy = st.HeldBy
			if m != nil && err == nil {
				m.RetentionHeld(st.HeldBy, st.HeldSince)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }, nil
}
