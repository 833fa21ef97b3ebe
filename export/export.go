// Package export streams stored audit events as JSON Lines, CSV or XLSX.
//
// Events come out in commit (key) order, one at a time: nothing holds the
// whole export in memory. The store's query API finds them (through its
// indexes, so a narrow filter reads little of a large store); a record is
// parsed only for the CSV and XLSX formats. JSON Lines output is the stored
// records verbatim, so each line still verifies against its hash; a CSV or
// XLSX row holds every member, so the record can be rebuilt from it
// (RecordOfRow) and its hash recomputed.
package export

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Source is what an export reads: the store's query API (sink.Store
// implements it). record is valid only during fn.
type Source interface {
	Query(ctx context.Context, q sink.Query, fn func(key, record []byte) error) (next string, err error)
}

// Formats are the supported export formats.
var Formats = []string{"jsonl", "csv", "xlsx"}

// Columns is the CSV header.
var Columns = []string{"id", "lsn", "commit_lsn", "xid", "commit_time", "database", "schema", "table", "model", "op",
	"key", "before", "after", "changed", "unchanged_toast", "redacted", "actor", "flags", "prev_hash", "hash",
	"before_source", "source"} // added last, so the columns before them keep their places

// ContentType returns the HTTP media type of a format.
func ContentType(format string) string {
	switch format {
	case "csv":
		return "text/csv; charset=utf-8"
	case "xlsx":
		return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	}
	return "application/x-ndjson"
}

// Write writes the events of st that q selects to w in format ("jsonl",
// "csv" or "xlsx") and returns how many it wrote; the zero query selects
// every event (snapshot records aside). Bad arguments fail before anything
// is written.
func Write(w io.Writer, st Source, q sink.Query, format string) (n uint64, err error) {
	return WriteContext(context.Background(), w, st, q, format)
}

// WriteContext is Write stopped by ctx: an XLSX export writes to w only
// at its end, so a failing writer cannot stop it earlier.
func WriteContext(ctx context.Context, w io.Writer, st Source, q sink.Query, format string) (n uint64, err error) {
	if !slices.Contains(Formats, format) {
		return 0, fmt.Errorf("export: unknown format %q (want jsonl, csv or xlsx)", format)
	}
	for _, p := range q.Tables {
		if _, err := path.Match(p, ""); err != nil {
			return 0, fmt.Errorf("export: bad table pattern %q: %w", p, err)
		}
	}
	for _, o := range q.Ops {
		if _, err := audit.ParseOp(o.String()); err != nil {
			return 0, fmt.Errorf("export: %w", err)
		}
	}

	bw := bufio.NewWriterSize(w, 64<<10)
	if format == "xlsx" {
		n, err = writeXLSX(ctx, bw, st, q)
		if ferr := bw.Flush(); err == nil {
			err = ferr
		}
		return n, err
	}
	var cw *csv.Writer
	row := make([]string, len(Columns))
	if format == "csv" {
		cw = csv.NewWriter(bw)
		if err := cw.Write(Columns); err != nil {
			return 0, err
		}
	}
	_, err = st.Query(ctx, q, func(key, record []byte) error {
		n++
		if cw == nil {
			bw.Write(record)
			return bw.WriteByte('\n') // bufio keeps the first error: checking the last write suffices
		}
		r, err := audit.ParseRecord(record)
		if err != nil {
			return fmt.Errorf("export: event at key %x: %w", key, err)
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
// or @, so spreadsheets do not take them for formulas. The names (database,
// source, schema, table, model) are written as they are, whatever they begin with:
// the row must give back the event exactly (RecordOfRow).
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
		r.BeforeSource, r.Source,
	})
}

// Observe returns src, calling fn with each record it hands on once the
// export has written it (fn's error stops the export): how a manifest
// learns which events a file holds while it is written.
func Observe(src Source, fn func(record []byte) error) Source {
	return observed{src, fn}
}

type observed struct {
	src Source
	fn  func(record []byte) error
}

func (o observed) Query(ctx context.Context, q sink.Query, fn func(key, record []byte) error) (string, error) {
	return o.src.Query(ctx, q, func(key, record []byte) error {
		if err := fn(key, record); err != nil {
			return err
		}
		return o.fn(record)
	})
}
