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
