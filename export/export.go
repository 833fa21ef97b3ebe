// Package export streams stored audit events as JSON Lines or CSV.
//
// Events come out in commit (key) order, one at a time: nothing holds the
// whole export in memory, and a record is parsed only when a filter or the
// CSV format needs its fields. JSON Lines output is the stored records
// verbatim, so each line still verifies against its hash.
package export

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
)

// Source is what an export reads: the store's ascending scan (sink.Store
// implements it). from and to bound the keys (to exclusive; nil is open);
// record is valid only during fn.
type Source interface {
	Scan(from, to []byte, fn func(key, record []byte) error) error
}

// Filter selects events; zero values select everything.
type Filter struct {
	Since time.Time // commit_time >= Since
	Until time.Time // commit_time < Until
	// Tables are matched against "table" and "schema.table" with
	// path.Match globs ("sale_*", "public.res_*").
	Tables []string
	// Ops selects operations; snapshot records (audit.OpSnapshot: rows as
	// read, not changes) are written only when it lists them.
	Ops []audit.Op
}

func (f *Filter) empty() bool {
	return f.Since.IsZero() && f.Until.IsZero() && len(f.Tables) == 0 && len(f.Ops) == 0
}

func (f *Filter) match(r *audit.Record) bool {
	if !f.Since.IsZero() && r.CommitTime.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !r.CommitTime.Before(f.Until) {
		return false
	}
	if len(f.Ops) > 0 && !slices.ContainsFunc(f.Ops, func(o audit.Op) bool { return o.String() == r.Op }) {
		return false
	}
	if len(f.Tables) > 0 {
		qualified := r.Schema + "." + r.Table
		if !slices.ContainsFunc(f.Tables, func(p string) bool {
			ok1, _ := path.Match(p, r.Table)
			ok2, _ := path.Match(p, qualified)
			return ok1 || ok2
		}) {
			return false
		}
	}
	return true
}

// Formats are the supported export formats.
var Formats = []string{"jsonl", "csv"}

// Columns is the CSV header.
var Columns = []string{"id", "lsn", "commit_lsn", "xid", "commit_time", "database", "schema", "table", "model", "op",
	"key", "before", "after", "changed", "unchanged_toast", "redacted", "actor", "flags", "prev_hash", "hash",
	"before_source"} // added last, so the columns before it keep their places

// ContentType returns the HTTP media type of a format.
func ContentType(format string) string {
	if format == "csv" {
		return "text/csv; charset=utf-8"
	}
	return "application/x-ndjson"
}

// Write writes the events of st that pass f to w in format ("jsonl" or
// "csv") and returns how many it wrote. Bad arguments fail before anything
// is written.
func Write(w io.Writer, st Source, f Filter, format string) (n uint64, err error) {
	if format != "jsonl" && format != "csv" {
		return 0, fmt.Errorf("export: unknown format %q (want jsonl or csv)", format)
	}
	for _, p := range f.Tables {
		if _, err := path.Match(p, ""); err != nil {
			return 0, fmt.Errorf("export: bad table pattern %q: %w", p, err)
		}
	}
	for _, o := range f.Ops {
		if _, err := audit.ParseOp(o.String()); err != nil {
			return 0, fmt.Errorf("export: %w", err)
		}
	}

	bw := bufio.NewWriterSize(w, 64<<10)
	var cw *csv.Writer
	row := make([]string, len(Columns))
	if format == "csv" {
		cw = csv.NewWriter(bw)
		if err := cw.Write(Columns); err != nil {
			return 0, err
		}
	}
	parse := format == "csv" || !f.empty()
	snapshots := slices.Contains(f.Ops, audit.OpSnapshot)

	err = st.Scan(nil, nil, func(key, record []byte) error {
		if !snapshots && audit.IsSnapshotRecord(record) {
			return nil
		}
		var r *audit.Record
		if parse {
			var err error
			if r, err = audit.ParseRecord(record); err != nil {
				return fmt.Errorf("export: event at key %x: %w", key, err)
			}
			if !f.match(r) {
				return nil
			}
		}
		n++
		if cw == nil {
			bw.Write(record)
			return bw.WriteByte('\n') // bufio keeps the first error: checking the last write suffices
		}
		csvRow(row, r)
		return cw.Write(row)
	})
	// Also after a failure: the buffers hold whole records only, and a
	// record cut at a buffer boundary may already be half written.
	if cw != nil {
		cw.Flush()
		if err == nil {
			err = cw.Error()
		}
	}
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return n, err
}

// csvRow fills row with r's members; structured members stay compact JSON
// text (the stored bytes). Those start with {, [, " or n, never with = + -
// or @, so spreadsheets do not take them for formulas.
func csvRow(row []string, r *audit.Record) {
	model := ""
	if r.Model != nil {
		model = *r.Model
	}
	copy(row, []string{
		r.ID, r.LSN, r.CommitLSN, strconv.FormatUint(uint64(r.XID), 10),
		string(audit.AppendTime(nil, r.CommitTime)), r.Database, r.Schema, r.Table, model, r.Op,
		string(r.Key), string(r.Before), string(r.After), string(r.Changed), string(r.UnchangedToast),
		string(r.Redacted), string(r.Actor), string(r.Flags), r.PrevHash, r.Hash,
		r.BeforeSource,
	})
}
