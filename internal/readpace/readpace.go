// Package readpace keeps readers of the audit trail (the HTTP API and the
// data-dir socket) from slowing its recording: while ingest is behind the
// server, their work together is held to a share of the wall time, and
// they run freely again once it has caught up. Recording comes first: an
// export finishes later, the trail never falls further behind because of
// one.
package readpace

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Share is the part of the wall time readers may work, together, while
// ingest is behind: on a machine of two cores, recording (the daemon and its
// walsender) needs most of both.
const Share = 0.2

// Pacer paces readers. Its methods may be called from many goroutines; a
// nil *Pacer paces nothing.
type Pacer struct {
	behind func() bool
	share  float64
	now    func() time.Time

	mu   sync.Mutex
	next time.Time // readers wait until then

	waited atomic.Int64 // nanoseconds readers have waited, in all
}

// New returns a Pacer that holds readers to share of the wall time while
// behind reports true.
func New(behind func() bool, share float64) *Pacer {
	return &Pacer{behind: behind, share: share, now: time.Now}
}

// Do runs work when the readers' share allows it and charges its duration
// to them: while ingest is behind, a reader that worked d waits
// d×(1−share)/share in all before the next work of any reader, so that the
// readers' work, however many run at once, stays within share of the time.
func (p *Pacer) Do(ctx context.Context, work func() error) error {
	if err := p.wait(ctx); err != nil {
		return err
	}
	if p == nil {
		return work()
	}
	start := p.now()
	err := work()
	p.spent(start, p.now())
	return err
}

// Waited is how long readers have waited for ingest, in all.
func (p *Pacer) Waited() time.Duration {
	if p == nil {
		return 0
	}
	return time.Duration(p.waited.Load())
}

func (p *Pacer) wait(ctx context.Context) error {
	if p == nil || !p.behind() {
		return ctx.Err()
	}
	p.mu.Lock()
	d := p.next.Sub(p.now())
	p.mu.Unlock()
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	p.waited.Add(int64(d))
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Pacer) spent(start, end time.Time) {
	if !p.behind() {
		return
	}
	rest := time.Duration(float64(end.Sub(start)) * (1 - p.share) / p.share)
	p.mu.Lock()
	p.next = later(p.next, end).Add(rest)
	p.mu.Unlock()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
