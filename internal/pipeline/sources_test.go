package pipeline

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Sources run beside the stream: what one stores through its StateSink is
// durable when the call returns, also its last write after the pipeline
// was told to stop; a source that fails is logged and stops nothing.
func TestSources(t *testing.T) {
	dsn, _ := newDB(t)
	dir := t.TempDir()
	store, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	stored := make(chan error, 1)
	var mu sync.Mutex
	var durable bool
	writer := func(ctx context.Context, state StateSink) error {
		err := state(ctx, []sink.StateRecord{{Bucket: "test", Key: "first", Value: []byte("1")}})
		if err == nil {
			// Durable now: readable from the store.
			store.LoadState("test", func(k, v []byte) error {
				mu.Lock()
				durable = durable || string(k) == "first"
				mu.Unlock()
				return nil
			})
		}
		stored <- err
		<-ctx.Done()
		return state(context.Background(), []sink.StateRecord{{Bucket: "test", Key: "last", Value: []byte("2")}})
	}
	failing := func(context.Context, StateSink) error { return errors.New("the watcher cannot read its directory") }
	var log syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Replication: replication.Config{DSN: dsn, Slot: "sources", Publication: "sources"},
			Store: store, Logger: slog.New(slog.NewTextHandler(&log, nil)), Profile: "none", Snapshot: "never",
			Sources: []Source{writer, failing}})
	}()
	select {
	case err := <-stored:
		if err != nil {
			t.Fatal(err)
		}
	case err := <-done:
		t.Fatalf("the pipeline stopped: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the source's write did not return")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	mu.Lock()
	if !durable {
		t.Error("the record was not in the store when the StateSink returned")
	}
	mu.Unlock()
	var keys []string
	store.LoadState("test", func(k, v []byte) error { keys = append(keys, string(k)); return nil })
	if strings.Join(keys, ",") != "first,last" {
		t.Errorf("stored %v, want first and last (written while stopping)", keys)
	}
	if !strings.Contains(log.String(), "the watcher cannot read its directory") {
		t.Errorf("the failing source is not logged:\n%s", log.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
