package pipeline

import (
	"context"
	"time"

	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
	"github.com/cdcaudit/cdcaudit/snapshot"
)

// Metrics is what the pipeline reports to (metrics.Metrics): the stream's
// and the snapshot's observers, and the store's and the sessions' figures.
type Metrics interface {
	replication.Observer
	snapshot.Observer
	// BatchCommitted: one store commit, its events, the replays among
	// them, the bytes written, how long it took, the checkpoint it wrote
	// and the commit time of its last transaction.
	BatchCommitted(events, duplicates int, bytes int64, d time.Duration, checkpoint uint64, lastCommitTime time.Time)
	StoreSize(bytes int64)
	// AddEvents and AddTransactions count what became durable.
	AddEvents(schema, table, op string, n int)
	AddTransactions(n int)
	// Pending names the oldest transaction received and not yet durable
	// (0: none), for the lag.
	Pending(firstLSN uint64, commitTime time.Time)
	// SessionsFrom gives the function the session figures are read from
	// when they are scraped (safe for concurrent use).
	SessionsFrom(f func() (open, users int, skipped uint64))
	// SessionDetailFrom, likewise: sessions started, and the open ones by
	// browser, OS, device and country.
	SessionDetailFrom(f func() (started uint64, browser, os, device, country map[string]int))
	// AddFlagged counts durable events carrying a flag (orm_bypass, …).
	AddFlagged(flag string, n int)
	pruneMetrics
}

// submitter is where chain records, coverage and snapshot state go: the
// store's writer, in order with the events.
type submitter interface {
	Submit(ctx context.Context, b sink.Batch) error
	Flush(ctx context.Context) error
}

// storeWriter is the consumer's way into the store (sink.Writer): batches
// group-committed in order, and how far is durable.
type storeWriter interface {
	submitter
	// Close flushes, stops and returns the writer's error.
	Close() error
	// Durable is the checkpoint the store holds: the flush position.
	Durable() uint64
	// Pending counts the batches submitted and not yet durable.
	Pending() int64
	// Err is why the writer stopped; Failed is closed then.
	Err() error
	Failed() <-chan struct{}
}

var _ storeWriter = (*sink.Writer)(nil)

// StateSink stores state records through the store's writer, in order with
// the stream's batches, and returns once they are durable (or with the
// writer's or ctx's error; then they may or may not have been stored, and
// the caller retries or gives up). Records must be in buckets of the
// caller's own: stream stages own theirs.
//
// Safe for concurrent use. Never call it from the pipeline's own goroutine
// (a stage): it waits for the writer, which that goroutine feeds.
//
// An alias, so that a source declares its parameter as the plain func type
// without importing this package (a method such as
// Run(ctx, state func(context.Context, []sink.StateRecord) error) error is
// a Source as it is).
type StateSink = func(ctx context.Context, recs []sink.StateRecord) error

// Source is work beside the stream that writes to the store: the app-log
// tailer, the session-store watcher, the pg_stat_activity sampler, the alert
// deliverer. Run starts each (Config.Sources) on a goroutine of its own once
// the store's writer runs, and cancels ctx before it closes the writer,
// waiting for the source to return. A source retries what fails on its own;
// an error it returns is logged and does not stop the pipeline (a source is
// not the audit trail), nor is the source restarted. Its error says which
// source it is.
type Source func(ctx context.Context, state StateSink) error

// stateSink is the StateSink of a writer: a batch of state records only,
// then a flush.
func stateSink(w submitter) StateSink {
	return func(ctx context.Context, recs []sink.StateRecord) error {
		if len(recs) == 0 {
			return nil
		}
		if err := w.Submit(ctx, sink.Batch{State: recs}); err != nil {
			return err
		}
		return w.Flush(ctx)
	}
}
