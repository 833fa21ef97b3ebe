package readpace

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock advances only when work says so; the waits are real timers of
// the durations the pacer computes from it.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }

func newPaced(behind *atomic.Bool, share float64) (*Pacer, *fakeClock) {
	c := &fakeClock{}
	c.t.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	p := New(behind.Load, share)
	p.now = c.now
	return p, c
}

func TestBehindReadersWaitTheirShare(t *testing.T) {
	var behind atomic.Bool
	behind.Store(true)
	p, clock := newPaced(&behind, 0.5)
	ctx := context.Background()
	ran := 0
	for range 3 {
		if err := p.Do(ctx, func() error { ran++; clock.advance(20 * time.Millisecond); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	// Share 0.5: each 20 ms of work owes 20 ms of rest. The first work
	// waited for nothing; the second and third each for the rest of the one
	// before (the fake clock stands still while they wait).
	if ran != 3 {
		t.Fatalf("ran %d works, want 3", ran)
	}
	if got, want := p.Waited(), 40*time.Millisecond; got != want {
		t.Fatalf("waited %v, want %v", got, want)
	}
}

func TestCaughtUpReadersRunFreely(t *testing.T) {
	var behind atomic.Bool
	p, clock := newPaced(&behind, 0.1)
	for range 5 {
		if err := p.Do(context.Background(), func() error { clock.advance(time.Second); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if p.Waited() != 0 {
		t.Fatalf("readers waited %v while ingest was not behind", p.Waited())
	}
	// Falling behind later charges only the work done from then on.
	behind.Store(true)
	_ = p.Do(context.Background(), func() error { clock.advance(10 * time.Millisecond); return nil })
	_ = p.Do(context.Background(), func() error { return nil })
	if got, want := p.Waited(), 90*time.Millisecond; got != want {
		t.Fatalf("waited %v, want %v", got, want)
	}
}

func TestWaitEndsWithTheContext(t *testing.T) {
	var behind atomic.Bool
	behind.Store(true)
	p, clock := newPaced(&behind, 0.001)
	_ = p.Do(context.Background(), func() error { clock.advance(time.Second); return nil }) // owes ~17 minutes
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	err := p.Do(ctx, func() error { called = true; return nil })
	if !errors.Is(err, context.Canceled) || called {
		t.Fatalf("Do with a cancelled context: err %v, work called %v", err, called)
	}
}

func TestNilPacerRunsWork(t *testing.T) {
	var p *Pacer
	want := errors.New("work's error")
	if err := p.Do(context.Background(), func() error { return want }); err != want {
		t.Fatalf("nil pacer: %v", err)
	}
	if p.Waited() != 0 {
		t.Fatal("nil pacer waited")
	}
}
