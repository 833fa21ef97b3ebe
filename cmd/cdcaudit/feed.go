package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
)

// feed prints audit events as they become durable, one line each (render
// makes the line), counts them and lets a caller wait for a transaction.
type feed struct {
	mu     sync.Mutex
	w      io.Writer
	render func(*audit.Event) string

	events uint64
	txs    uint64
	lastTx uint64 // commit LSN of the last transaction seen

	seen      map[uint32]struct{} // XIDs of recent transactions
	seenOrder []uint32
	seenCond  *sync.Cond
}

func newFeed(w io.Writer, render func(*audit.Event) string) *feed {
	f := &feed{w: w, render: render, seen: map[uint32]struct{}{}}
	f.seenCond = sync.NewCond(&f.mu)
	return f
}

const seenXIDs = 4096

// print is the pipeline's Feed callback.
func (f *feed) print(e *audit.Event) {
	line := f.render(e)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events++
	if e.CommitLSN != f.lastTx {
		f.txs++
		f.lastTx = e.CommitLSN
	}
	if _, ok := f.seen[e.XID]; !ok {
		f.seen[e.XID] = struct{}{}
		f.seenOrder = append(f.seenOrder, e.XID)
		if len(f.seenOrder) > seenXIDs {
			delete(f.seen, f.seenOrder[0])
			f.seenOrder = f.seenOrder[1:]
		}
		f.seenCond.Broadcast()
	}
	fmt.Fprintln(f.w, line)
}

// println prints a line of its own (status, banners) between events.
func (f *feed) println(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintln(f.w, s)
}

func (f *feed) counts() (events, txs uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.events, f.txs
}

// waitXID waits until an event of transaction xid was printed, or timeout.
func (f *feed) waitXID(xid uint32, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	t := time.AfterFunc(timeout, func() {
		f.mu.Lock()
		f.seenCond.Broadcast()
		f.mu.Unlock()
	})
	defer t.Stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		if _, ok := f.seen[xid]; ok {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		f.seenCond.Wait()
	}
}
