package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/sink"
)

// ExportBucket is the state of the bulk-export rule: the access log
// entry read last ("c") and each principal's recent exports ("p/<who>").
const ExportBucket = "rules_export"

// AccessLog is the store's access log (sink.Store.AccessLog).
type AccessLog interface {
	AccessLog(ctx context.Context, after uint64, desc bool, limit int, fn func(sink.AccessRecord) error) (uint64, error)
}

// Exports watches the access log for bulk exports: more than Rate.N events
// exported by one principal (an API sign-in's login, or a token's name)
// within Rate.Within. The access log is written by the API, not the
// stream: Exports reads it from beside the stream and stores the entry it
// read up to, the windows and the alerts in one call of the pipeline's
// StateSink, so a restart neither skips an export nor alerts twice. Times
// are the entries' own.
type Exports struct {
	rate Rate
	log  AccessLog
	load func(bucket string, fn func(key, value []byte) error) error
	poll time.Duration
	slog *slog.Logger

	after   uint64
	windows map[string]*massWindow
}

// NewExports makes the watcher; load reads its state back (sink.Store.LoadState).
func NewExports(rate Rate, log AccessLog, load func(bucket string, fn func(key, value []byte) error) error, logger *slog.Logger) *Exports {
	if logger == nil {
		logger = slog.Default()
	}
	return &Exports{rate: rate, log: log, load: load, poll: 5 * time.Second, slog: logger}
}

// pageSize is how many access log entries one store call covers.
const pageSize = 1000

// Run reads the access log until ctx ends.
func (x *Exports) Run(ctx context.Context, state func(ctx context.Context, recs []sink.StateRecord) error) error {
	if x.rate.N == 0 {
		return nil
	}
	loaded := false
	for {
		if !loaded {
			if err := x.restore(); err != nil {
				return err
			}
			loaded = true
		}
		more, err := x.step(ctx, state)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			x.slog.Warn("bulk-export rule: cannot read the access log or record; retrying", "err", err)
			loaded = false
		}
		if more && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(x.poll):
		}
	}
}

func (x *Exports) restore() error {
	x.after, x.windows = 0, map[string]*massWindow{}
	return x.load(ExportBucket, func(k, v []byte) error {
		key := string(k)
		switch {
		case key == "c":
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				return fmt.Errorf("rules: %s/c: malformed", ExportBucket)
			}
			x.after = n
		case strings.HasPrefix(key, "p/"):
			w := &massWindow{}
			if err := json.Unmarshal(v, w); err != nil {
				return fmt.Errorf("rules: %s/%s: malformed", ExportBucket, key)
			}
			x.windows[key[2:]] = w
		}
		return nil
	})
}

// accessEntry is what the rule reads of an access log entry.
type accessEntry struct {
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Action string    `json:"action"`
	Result string    `json:"result"`
	Role   string    `json:"role"`
	Login  string    `json:"login"`
	Via    string    `json:"via"`
	Addr   string    `json:"address"`
	Count  int       `json:"count"`
	Export string    `json:"export"`
}

// step reads a page of entries and stores what it found; more: a full
// page was read.
func (x *Exports) step(ctx context.Context, state func(ctx context.Context, recs []sink.StateRecord) error) (bool, error) {
	var entries []accessEntry
	var last uint64
	read := 0
	_, err := x.log.AccessLog(ctx, x.after, false, pageSize, func(r sink.AccessRecord) error {
		last = r.Seq
		read++
		var e accessEntry
		if json.Unmarshal(r.Record, &e) == nil && e.Action == "export" && e.Count > 0 {
			entries = append(entries, e)
		}
		return nil
	})
	if err != nil || last == 0 {
		return false, err
	}
	var recs []sink.StateRecord
	dirty := map[string]bool{}
	for _, e := range entries {
		who := e.Login
		if who == "" {
			who = "via:" + e.Via
		}
		w := x.windows[who]
		if w == nil {
			w = &massWindow{}
			x.windows[who] = w
		}
		dirty[who] = true
		total, crossed := w.add(e.Time, e.Count, e.ID, x.rate)
		if !crossed {
			continue
		}
		first := w.Entries[0].First
		a := alerts.Alert{
			ID: alerts.KindSuspicious + "/" + RuleBulkExport + "/" + e.ID, Kind: alerts.KindSuspicious, Rule: RuleBulkExport,
			Time: e.Time, Login: e.Login, IP: e.Addr,
			Summary: fmt.Sprintf("%s exported %d events within %s", who, total, shortDuration(x.rate.Within)),
			Detail: map[string]string{"count": strconv.Itoa(total), "threshold": x.rate.String(), "role": e.Role,
				"via": e.Via, "access_entries": first + " … " + e.ID, "export": e.Export},
		}
		recs = append(recs, alerts.Queue(a))
	}
	if len(entries) > 0 {
		now := entries[len(entries)-1].Time
		for who, w := range x.windows {
			if w.stale(now, x.rate.Within) {
				delete(x.windows, who)
				dirty[who] = true
			}
		}
	}
	keys := make([]string, 0, len(dirty))
	for k := range dirty {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, who := range keys {
		r := sink.StateRecord{Bucket: ExportBucket, Key: "p/" + who}
		if w := x.windows[who]; w != nil {
			r.Value, _ = json.Marshal(w)
		}
		recs = append(recs, r)
	}
	recs = append(recs, sink.StateRecord{Bucket: ExportBucket, Key: "c", Value: strconv.AppendUint(nil, last, 10)})
	if err := state(ctx, recs); err != nil {
		return false, err
	}
	x.after = last
	return read == pageSize, nil
}
