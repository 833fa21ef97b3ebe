package sink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit limits: an Append takes whatever is queued, up to about this
// much (a single larger batch still goes in whole).
const (
	maxGroupEvents = 50_000
	maxGroupBytes  = 16 << 20
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
}

// Writer group-commits batches: one goroutine takes everything queued into
// one Append (one fsync), however many Submits it came from.
type Writer struct {
	// OnCommit, when set, is called on the writer goroutine after every
	// successful Append. Set it before the first Submit.
	OnCommit func(CommitInfo)
	// Release, when set, is called on the writer goroutine with every batch
	// once the store is done with it (stored, or dropped after a failure):
	// the store never keeps a reference to Body, so its memory may be reused.
	// Set it before the first Submit.
	Release func(Batch)

	s       *Store
	ch      chan item
	done    chan struct{}
	durable atomic.Uint64
	pending atomic.Int64 // batches submitted and not yet stored

	queuedMu sync.Mutex
	queued   int64 // body bytes submitted and not yet stored
	room     *sync.Cond

	mu     sync.RWMutex // Submit/Flush hold it shared while sending; Close exclusive to close ch
	closed bool

	errMu  sync.Mutex
	err    error
	failed chan struct{} // closed when err is set
}

// item is a batch, or a Flush marker: the channel is FIFO, so once the
// writer reaches a marker everything submitted before it is in hand.
type item struct {
	b       Batch
	flushed chan struct{}
}

// maxQueuedBytes bounds the bodies waiting for the writer: Submit waits
// while more than this is queued, so a decoder faster than the disk (or one
// huge transaction) cannot grow memory without limit.
const maxQueuedBytes = 32 << 20

// NewWriter starts a writer with room for queue batches; Submit blocks when
// the queue is full or holds more than maxQueuedBytes, which bounds memory.
func NewWriter(s *Store, queue int) *Writer {
	w := &Writer{s: s, ch: make(chan item, max(queue, 1)), done: make(chan struct{}), failed: make(chan struct{})}
	w.room = sync.NewCond(&w.queuedMu)
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
	size := batchBytes(b)
	w.queuedMu.Lock()
	for w.queued > 0 && w.queued+size > maxQueuedBytes && w.Err() == nil && ctx.Err() == nil {
		w.room.Wait()
	}
	w.queued += size
	w.queuedMu.Unlock()
	w.pending.Add(1)
	if err := w.send(ctx, item{b: b}); err != nil {
		w.pending.Add(-1)
		w.release(size)
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

// release returns queue room taken by Submit.
func (w *Writer) release(size int64) {
	w.queuedMu.Lock()
	w.queued -= size
	w.room.Broadcast()
	w.queuedMu.Unlock()
}

// Pending returns how many submitted batches are not yet durable: while it
// is not zero, received data is in flight.
func (w *Writer) Pending() int64 { return w.pending.Load() }

func (w *Writer) send(ctx context.Context, it item) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	select {
	case w.ch <- it:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush waits until everything submitted before it is durable (or has
// failed: then it returns the writer's error).
func (w *Writer) Flush(ctx context.Context) error {
	c := make(chan struct{})
	if err := w.send(ctx, item{flushed: c}); err != nil {
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
// It does not close the Store.
func (w *Writer) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
	w.mu.Unlock()
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
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

func (w *Writer) run() {
	defer close(w.done)
	var group []Batch
	var waiters []chan struct{}
	for it := range w.ch {
		events, size := 0, 0
		add := func(it item) {
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
		add(it)
	drain:
		for events < maxGroupEvents && size < maxGroupBytes {
			select {
			case it, ok := <-w.ch:
				if !ok {
					break drain
				}
				add(it)
			default:
				break drain
			}
		}
		w.commit(group)
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
			w.errMu.Lock()
			w.err = fmt.Errorf("sink: writer stopped: %w", err)
			w.errMu.Unlock()
			close(w.failed)
		} else {
			w.durable.Store(res.Checkpoint)
			if w.OnCommit != nil {
				var last time.Time
				for i := len(group) - 1; i >= 0 && last.IsZero(); i-- {
					last = group[i].CommitTime
				}
				w.OnCommit(CommitInfo{
					Batches: len(group), Stored: res.Stored, Duplicates: res.Duplicates,
					Bytes: res.Bytes, Checkpoint: res.Checkpoint, Duration: time.Since(start),
					LastCommitTime: last,
				})
			}
		}
	}
	w.pending.Add(-int64(len(group)))
	var size int64
	for _, b := range group {
		size += batchBytes(b)
	}
	w.release(size)
	if w.Release != nil {
		for _, b := range group {
			w.Release(b)
		}
	}
}
