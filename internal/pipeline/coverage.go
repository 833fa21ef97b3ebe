package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
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
	since   *coveredSince // told of every change, in memory
	mu      sync.Mutex
	pending []sink.StateRecord
	w       submitter
}

func (r *coverageRecords) add(c replication.Coverage) {
	if r.since != nil {
		r.since.note(c.Table, c.Ops, c.Captured, c.LSN)
	}
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

// coveredSince tells, per table, since when its updates and deletes have
// been captured without a break: a record image written before that may
// have missed an update the stream never carried (a table created while
// cdcaudit runs has its inserts captured before it is listed; one whose
// replica identity was unusable for a while), so it must not rebuild a
// before-image. Fed by the coverage changes as they are recorded, and at
// start from the store's coverage records.
type coveredSince struct {
	mu    sync.Mutex
	since map[string]uint64 // "schema.table" as replication names it, or "*"
}

// notNow: updates and deletes of the table are not captured now.
const notNow = ^uint64(0)

func (c *coveredSince) note(table, ops string, captured bool, lsn uint64) {
	if ops != replication.PublishChanges {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.since == nil {
		c.since = map[string]uint64{}
	}
	if !captured {
		lsn = notNow
	}
	c.since[table] = lsn
}

// load reads the store's coverage records, oldest first per table (their
// keys end with the LSN in hex, so they sort in order).
func (c *coveredSince) load(store *sink.Store) error {
	return store.LoadState(stateCoverage, func(key, value []byte) error {
		table, ok := changesCoverageTable(string(key))
		if !ok {
			return nil
		}
		var r coverageRecord
		if err := json.Unmarshal(value, &r); err != nil {
			return fmt.Errorf("coverage record %q: %w", key, err)
		}
		lsn, err := audit.ParseLSN(r.LSN)
		if err != nil {
			return fmt.Errorf("coverage record %q: %w", key, err)
		}
		c.note(table, replication.PublishChanges, r.Captured, lsn)
		return nil
	})
}

// of returns the LSN after which the table's changes are captured without
// a break (notNow: they are not captured now); table as
// replication.QualifiedName names it.
func (c *coveredSince) of(table string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.since["*"], c.since[table])
}

// changesCoverageTable returns the table of a coverage record's key
// ("<table> <ops> <LSN>") when it is about updates and deletes. A quoted
// table name may hold spaces, and ops does ("update, delete").
func changesCoverageTable(key string) (string, bool) {
	key = key[:max(0, strings.LastIndexByte(key, ' '))]
	table, ok := strings.CutSuffix(key, " "+replication.PublishChanges)
	if !ok {
		return "", false
	}
	return table, true
}
