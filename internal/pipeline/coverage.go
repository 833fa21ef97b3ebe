package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

// stateCoverage is the state bucket that records, per table and
// operations, from when on they are captured (or no longer are): keys are
// "<schema.table> <ops> <LSN, 16 hex digits>" ("*" for every table), values
// coverageRecord. Every change is kept: a window in which a table was not
// captured stays on record after it is captured again.
const stateCoverage = "coverage"

type coverageRecord struct {
	Captured bool      `json:"captured"`
	LSN      string    `json:"lsn"`
	Time     time.Time `json:"time"`
	Reason   string    `json:"reason,omitempty"`
}

// coverageRecords stores replication's coverage changes in the store. Those
// of Prepare come before the store's writer exists and wait for it.
type coverageRecords struct {
	log     *slog.Logger
	mu      sync.Mutex
	pending []sink.StateRecord
	w       submitter
}

func (r *coverageRecords) add(c replication.Coverage) {
	v, _ := json.Marshal(coverageRecord{Captured: c.Captured, LSN: audit.FormatLSN(c.LSN), Time: c.Time.UTC(), Reason: c.Reason})
	rec := sink.StateRecord{Bucket: stateCoverage, Key: fmt.Sprintf("%s %s %016X", c.Table, c.Ops, c.LSN), Value: v}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == nil {
		r.pending = append(r.pending, rec)
		return
	}
	if err := r.w.Submit(context.Background(), sink.Batch{State: []sink.StateRecord{rec}}); err != nil {
		r.log.Error("cannot record coverage in the store", "table", c.Table, "ops", c.Ops, "err", err)
	}
}

// attach submits what waited and sends later records straight to w.
func (r *coverageRecords) attach(w submitter) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.w = w
	if len(r.pending) == 0 {
		return nil
	}
	err := w.Submit(context.Background(), sink.Batch{State: r.pending})
	r.pending = nil
	return err
}
