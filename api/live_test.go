package api

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// TestReadsWhileTheStoreIsWritten pages through the events while the
// store takes new ones, as it does under 'cdcaudit run': every page
// answers, in commit order, with no event twice.
func TestReadsWhileTheStoreIsWritten(t *testing.T) {
	f := newFixture(t)
	h := f.handler(t, &viewer)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		lsn := uint64(0x100000)
		for i := range 50 {
			var b sink.Batch
			for j := range 20 {
				lsn += 0x100
				e := &audit.Event{LSN: lsn - 0x10, CommitLSN: lsn, Ordinal: 1, Database: "odoo", CommitTime: t0.Add(time.Duration(i*20+j) * time.Second),
					Schema: "public", Table: "stock_move", Op: audit.OpInsert, Key: audit.Row{{Name: "id", Value: []byte("1")}}}
				b.Events = append(b.Events, sink.Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil)})
			}
			b.Checkpoint = lsn + 8
			if _, err := f.store.Append([]sink.Batch{b}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var ids []string
	cursor := ""
	for range 2000 {
		a := serve(h, newGet("/api/v1/events?limit=7&cursor="+cursor))
		if a.status != 200 {
			t.Fatalf("%d %s", a.status, a.body)
		}
		var p page
		a.json(t, &p)
		ids = append(ids, p.ids(t)...)
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	wg.Wait()
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) || len(ids) < 8 {
		t.Errorf("%d ids, sorted %v", len(ids), slices.IsSorted(ids))
	}
}
