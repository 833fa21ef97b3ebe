// Package outboxtest holds what the tests of outbox sinks share: a real
// store with its writer, the StateSink the pipeline gives a source, and a
// wait without a wall-clock limit. Tests only.
package outboxtest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/sink"
)

// Store opens a fresh store with its writer, both closed at the end of the
// test, and fills it with transactions 1…n (fill stores one through the
// writer), flushed.
func Store(t *testing.T, n uint64, fill func(t *testing.T, w *sink.Writer, i uint64)) (*sink.Store, *sink.Writer) {
	t.Helper()
	s, err := sink.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	w := sink.NewWriter(s, sink.WriterOptions{})
	t.Cleanup(func() { w.Close(); s.Close() })
	Fill(t, w, 1, n, fill)
	return s, w
}

// Fill stores transactions from…to through the writer and flushes.
func Fill(t *testing.T, w *sink.Writer, from, to uint64, fill func(t *testing.T, w *sink.Writer, i uint64)) {
	t.Helper()
	for i := from; i <= to; i++ {
		fill(t, w, i)
	}
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// State is the pipeline's StateSink over a writer: the records, then a
// flush.
func State(w *sink.Writer) func(context.Context, []sink.StateRecord) error {
	return func(ctx context.Context, recs []sink.StateRecord) error {
		if err := w.Submit(ctx, sink.Batch{State: recs}); err != nil {
			return err
		}
		return w.Flush(ctx)
	}
}

// WaitFor polls until cond holds; only the test's own deadline ends a hang.
func WaitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for !cond() {
		if t.Context().Err() != nil {
			t.Fatal("cancelled")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Start runs a source (an outbox runner's Run) over the writer's
// StateSink; stop cancels it and fails the test on its error.
func Start(t *testing.T, w *sink.Writer, run func(context.Context, func(context.Context, []sink.StateRecord) error) error) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx, State(w)) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
