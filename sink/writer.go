package sink

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// Group commit limits: an Append takes whatever is queued, up to about this
// much (a single larger batch still goes in whole).
const (
	maxGroupEvents = 50_000
	maxGroupBytes  = 16 << 20
)

// A group of fewer than lingerEvents events (and lingerBytes of bodies),
// when the last commit was less than minCommitInterval ago, waits until
// then, taking what comes meanwhile every gatherStep: at most about 20
// commits (fsyncs) a second under a stream of small transactions. A
// commit's fixed cost (its fsyncs, the pages every commit rewrites) is
// then shared by 5 times as many changes as with 10 ms (measured:
// BenchmarkWriterTrickle); the slot's confirmation lags by 50 ms more.
const (
	minCommitInterval = 50 * time.Millisecond
	gatherStep        = 10 * time.Millisecond
	lingerEvents      = 4096
	lingerBytes       = 4 << 20
)

// ErrClosed is returned by Submit after Close.
var ErrClosed = errors.New("sink: writer closed")

// CommitInfo describes one group commit, for metrics.
type CommitInfo struct {
	Batches    int
	Stored     int
	Duplicates int
	Bytes      int64
	Checkpoint uint64 // durable checkpoint after the commit
	Duration   time.Duration
	// LastCommitTime is the commit time of the last transaction stored, for
	// the replication lag in seconds (zero when the group had none).
	LastCommitTime time.Time
	// Flags counts the row events stored by flag (Result.Flags).
	Flags map[string]int
}

// WriterOptions are a Writer's callbacks and queue size, fixed at
// construction: the writer goroutine reads them without synchronisation.
type WriterOptions struct {
	// OnCommit, when set, is called on the writer goroutine after every
	// successful Append.
	OnCommit func(CommitInfo)
	// Release, when set, is called on the writer goroutine with every batch
	// once the store is done with it (stored, or dropped after a failure):
	// the store never keeps a reference to Body, so its memory may be reused.
	Release func(Batch)
	// Queue is how many batches may wait for the writer (at least 1).
	Queue int
}

// Writer group-commits batches: one goroutine takes everything queued into
// one Append (one fsync), however many Submits it came from.
type Writer struct {
	opts WriterOptions
	s    *Store
	ch   chan item
	done chan struct{}
	// room bounds the body bytes queued and not yet stored. Every Submit
	// and Flush holds some of it from before it enqueues until the writer
	// is done with its item, so Close, by taking all of it, knows that no
	// one is sending: only then is ch closed.
	room    *semaphore.Weighted
	closed  atomic.Bool
	durable atomic.Uint64
	pending atomic.Int64 // batches submitted and not yet stored
	err     atomic.Pointer[error]
	failed  chan struct{} // closed when err is set (by the writer goroutine, once)
}

// item is a batch, or a Flush marker: the channel is FIFO, so once the
// writer reaches a marker everything submitted before it is in hand.
type item struct {
	b       Batch
	weight  int64 // of room, held until the writer is done with the item
	flushed chan struct{}
}

// maxQueuedBytes bounds the bodies waiting for the writer: Submit waits
// while more than this is queued, so a decoder faster than the disk (or one
// huge transaction) cannot grow memory without limit.
const maxQueuedBytes = 32 << 20

// MaxHeldBytes is about the most record bytes a Writer holds at once (the
// room Submit waits for is released only after the commit): what a
// producer reusing its buffers needs to keep.
const MaxHeldBytes = maxQueuedBytes

// NewWriter starts a writer; Submit blocks when opts.Queue batches or more
// than maxQueuedBytes are waiting, which bounds memory.
func NewWriter(s *Store, opts WriterOptions) *Writer {
	opts.Queue = max(opts.Queue, 1)
	w := &Writer{opts: opts, s: s, ch: make(chan item, opts.Queue), done: make(chan struct{}),
		failed: make(chan struct{}), room: semaphore.NewWeighted(maxQueuedBytes)}
	w.durable.Store(s.Checkpoint())
	go w.run()
	return w
}

// Submit queues a batch. It returns the writer's error once an Append has
// failed, ErrClosed after Close, or ctx's error while waiting for room.
func (w *Writer) Submit(ctx context.Context, b Batch) error {
	if err := w.Err(); err != nil {
		return err
	}
	// A batch bigger than the bound takes all of it: it waits until the
	// queue is empty, and goes alone. Every item weighs at least 1 byte,
	// so Close can wait for it.
	it := item{b: b, weight: min(max(batchBytes(b), 1), maxQueuedBytes)}
	w.pending.Add(1)
	if err := w.send(ctx, it); err != nil {
		w.pending.Add(-1)
		return err
	}
	return nil
}

func batchBytes(b Batch) int64 {
	n := int64(0)
	for i := range b.Events {
		n += int64(len(b.Events[i].Body))
	}
	for i := range b.Images {
		n += int64(len(b.Images[i].Key) + len(b.Images[i].Value))
	}
	return n
}

// send takes the item's room, then queues it; on failure it gives the room
// back.
func (w *Writer) send(ctx context.Context, it item) error {
	if err := w.room.Acquire(ctx, it.weight); err != nil {
		return err
	}
	if w.closed.Load() {
		w.room.Release(it.weight)
		return ErrClosed
	}
	select {
	case w.ch <- it:
		return nil
	case <-ctx.Done():
		w.room.Release(it.weight)
		return ctx.Err()
	}
}

// Pending returns how many submitted batches are not yet durable: while it
// is not zero, received data is in flight.
func (w *Writer) Pending() int64 { return w.pending.Load() }

// Flush waits until everything submitted before it is durable (or has
// failed: then it returns the writer's error).
func (w *Writer) Flush(ctx context.Context) error {
	c := make(chan struct{})
	if err := w.send(ctx, item{weight: 1, flushed: c}); err != nil {
		if err == ErrClosed {
			return w.Err() // Close flushed everything already
		}
		return err
	}
	select {
	case <-c:
		return w.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close flushes what was submitted, stops the writer and returns its error.
// It does not close the Store. Submits and Flushes after it return ErrClosed
// (a Flush: the writer's error).
func (w *Writer) Close() error {
	// All the room: every item queued is done, and no one is sending.
	w.room.Acquire(context.Background(), maxQueuedBytes)
	if !w.closed.Swap(true) {
		close(w.ch)
	}
	w.room.Release(maxQueuedBytes)
	<-w.done
	return w.Err()
}

// Durable returns the checkpoint that is durable in the store: the flush
// position to report to the server.
func (w *Writer) Durable() uint64 { return w.durable.Load() }

// Failed is closed when an Append fails (Err then returns why): whoever
// streams into the writer must stop, even when it has nothing more to submit.
func (w *Writer) Failed() <-chan struct{} { return w.failed }

// Err returns the error that stopped the writer, if any. After a failed
// Append nothing more is stored: the caller must stop and restart from the
// store's checkpoint.
func (w *Writer) Err() error {
	if p := w.err.Load(); p != nil {
		return *p
	}
	return nil
}

func (w *Writer) run() {
	defer close(w.done)
	var group []Batch
	var waiters []chan struct{}
	var lastCommit time.Time
	for open := true; open; {
		it, ok := <-w.ch
		if !ok {
			return
		}
		events, size := 0, 0
		var weight int64
		add := func(it item) {
			weight += it.weight
			if it.flushed != nil {
				waiters = append(waiters, it.flushed)
				return
			}
			group = append(group, it.b)
			events += len(it.b.Events)
			for i := range it.b.Events {
				size += len(it.b.Events[i].Body)
			}
		}
		// drain takes what is queued, up to the group's limits; false once
		// the queue is closed.
		drain := func() bool {
			for events < maxGroupEvents && size < maxGroupBytes {
				select {
				case it, ok := <-w.ch:
					if !ok {
						return false
					}
					add(it)
				default:
					return true
				}
			}
			return true
		}
		add(it)
		open = drain()
		// A trickle of small transactions is gathered for a moment: an
		// fsync for each would cost the disk, which the database usually
		// shares, far more than those milliseconds cost the slot's
		// confirmation. Sleeping in steps (rather than waking for every
		// Submit) spares the CPU too. A Flush, or a group big enough, goes
		// at the end of the step it came in.
		for open && len(waiters) == 0 && events < lingerEvents && size < lingerBytes {
			wait := time.Until(lastCommit.Add(minCommitInterval))
			if wait <= 0 {
				break
			}
			time.Sleep(min(wait, gatherStep))
			open = drain()
		}
		w.commit(group)
		lastCommit = time.Now()
		w.room.Release(weight)
		for _, c := range waiters {
			close(c)
		}
		clear(group) // drop references to the bodies
		group, waiters = group[:0], waiters[:0]
	}
}

// commit appends a group. After a failure it keeps draining the queue (so
// Submit, Flush and Close never hang) but stores nothing more: a later
// batch must never be chained after a gap.
func (w *Writer) commit(group []Batch) {
	if len(group) > 0 && w.Err() == nil {
		start := time.Now()
		res, err := w.s.Append(group)
		if err != nil {
			err = fmt.Errorf("sink: writer stopped: %w", err)
			w.err.Store(&err)
			close(w.failed)
		} else {
			w.durable.Store(res.Checkpoint)
			if w.opts.OnCommit != nil {
				var last time.Time
				for i := len(group) - 1; i >= 0 && last.IsZero(); i-- {
					last = group[i].CommitTime
				}
				w.opts.OnCommit(CommitInfo{
					Batches: len(group), Stored: res.Stored, Duplicates: res.Duplicates,
					Bytes: res.Bytes, Checkpoint: res.Checkpoint, Duration: time.Since(start),
					LastCommitTime: last, Flags: res.Flags,
				})
			}
		}
	}
	w.pending.Add(-int64(len(group)))
	if w.opts.Release != nil {
		for _, b := range group {
			w.opts.Release(b)
		}
	}
}
