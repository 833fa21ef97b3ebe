package demo

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/history"
	"github.com/cdcaudit/cdcaudit/sink"
)

// tail shows the events of a store as they become durable, in commit
// order, reading the store as any reader of it does: whenever the chain's
// head moved, the records after the last one shown. Snapshot records (rows
// as read, not changes) are not shown. It counts what it showed and lets a
// caller wait for a transaction.
type tail struct {
	store *sink.Store
	show  func(*audit.Event)

	look     sync.Mutex // one look at the store at a time
	head     []byte     // the chain's head at the last look
	lastKey  []byte     // of the last event shown
	lastTxID uint64     // commit LSN of the last event shown

	mu        sync.Mutex
	events    uint64
	txs       uint64
	seen      map[uint32]struct{} // XIDs of recent transactions shown
	seenOrder []uint32
	seenCond  *sync.Cond
}

func newTail(store *sink.Store, show func(*audit.Event)) *tail {
	t := &tail{store: store, show: show, seen: map[uint32]struct{}{}}
	t.seenCond = sync.NewCond(&t.mu)
	return t
}

const seenXIDs = 4096

// follow looks at the store every interval until ctx is done. A look that
// fails ends it with the error.
func (t *tail) follow(ctx context.Context, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := t.poll(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// poll shows what the store holds after the last event shown.
func (t *tail) poll() error {
	t.look.Lock()
	defer t.look.Unlock()
	head, _, _ := t.store.Head()
	if head != nil && bytes.Equal(head, t.head) {
		return nil
	}
	var from []byte
	if t.lastKey != nil {
		from = append(slices.Clone(t.lastKey), 0) // the first key after it
	}
	var events []*audit.Event
	var last []byte
	err := t.store.Scan(from, nil, func(key, record []byte) error {
		last = append(last[:0], key...) // key is the store's only during the call
		if audit.IsSnapshotRecord(record) {
			return nil
		}
		e, err := history.EventOf(record)
		if err != nil {
			return err
		}
		events = append(events, e)
		return nil
	})
	if err != nil {
		return err
	}
	if last != nil {
		t.lastKey = last // snapshot records are passed over too
	}
	t.head = head
	for _, e := range events {
		t.shown(e)
	}
	return nil
}

// shown shows e, counts it and its transaction, and wakes waitXID.
func (t *tail) shown(e *audit.Event) {
	t.show(e)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events++
	if e.CommitLSN != t.lastTxID {
		t.txs++
		t.lastTxID = e.CommitLSN
	}
	if _, ok := t.seen[e.XID]; !ok {
		t.seen[e.XID] = struct{}{}
		t.seenOrder = append(t.seenOrder, e.XID)
		if len(t.seenOrder) > seenXIDs {
			delete(t.seen, t.seenOrder[0])
			t.seenOrder = t.seenOrder[1:]
		}
		t.seenCond.Broadcast()
	}
}

// counts returns how many events were shown, of how many transactions.
func (t *tail) counts() (events, txs uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.events, t.txs
}

// waitXID waits until an event of transaction xid was shown, or timeout.
func (t *tail) waitXID(xid uint32, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		t.mu.Lock()
		t.seenCond.Broadcast()
		t.mu.Unlock()
	})
	defer timer.Stop()
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if _, ok := t.seen[xid]; ok {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		t.seenCond.Wait()
	}
}
