package export

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/storebench"
	"github.com/cdcaudit/cdcaudit/sink"
)

// The golden store (testdata/golden-store.db.gz) was written by the
// cdcaudit of before the indexes (store format 2, commit cb2d0cd), and
// testdata/golden.txt holds what that cdcaudit's export wrote of it for
// each filter below: the count and the SHA-256 of the output. An export
// must stay byte-identical, whatever the store's on-disk form and however
// the events are found.
var (
	updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden.txt from the export of this tree (only ever with the cdcaudit the golden store was written by)")
	writeStore   = flag.Bool("write-golden-store", false, "rewrite testdata/golden-store.db.gz (then -update-golden)")
)

const (
	goldenStore = "testdata/golden-store.db.gz"
	goldenFile  = "testdata/golden.txt"
)

// goldenStart is the golden workload's first commit time: its 1,500
// events span about a day and a half.
var goldenStart = time.Date(2026, 3, 9, 22, 0, 0, 0, time.UTC)

func goldenFilters() []struct {
	name string
	f    sink.Query
} {
	day := func(d, h int) time.Time { return goldenStart.Add(time.Duration(d*24+h) * time.Hour) }
	return []struct {
		name string
		f    sink.Query
	}{
		{"all", sink.Query{}},
		{"since", sink.Query{Since: day(0, 9)}},
		{"until", sink.Query{Until: day(0, 14)}},
		{"window", sink.Query{Since: day(0, 2), Until: day(1, 2)}},
		{"empty window", sink.Query{Since: day(5, 0), Until: day(6, 0)}},
		{"table", sink.Query{Tables: []string{"sale_order"}}},
		{"schema.table", sink.Query{Tables: []string{"acct.res_company"}}},
		{"globs", sink.Query{Tables: []string{"sale_*", "public.stock_*"}}},
		{"other schema glob", sink.Query{Tables: []string{"acct.*"}}},
		{"ops", sink.Query{Ops: []audit.Op{audit.OpDelete, audit.OpTruncate}}},
		{"update", sink.Query{Ops: []audit.Op{audit.OpUpdate}}},
		{"snapshots", sink.Query{Ops: []audit.Op{audit.OpSnapshot}}},
		{"snapshots and inserts", sink.Query{Ops: []audit.Op{audit.OpSnapshot, audit.OpInsert}, Tables: []string{"res_partner"}}},
		{"combined", sink.Query{Since: day(0, 5), Until: day(1, 0), Tables: []string{"account_*", "mail_message"}, Ops: []audit.Op{audit.OpUpdate, audit.OpInsert}}},
		{"no table", sink.Query{Tables: []string{"nope"}}},
	}
}

// openGolden unpacks the golden store into a new directory and opens it
// as export opens a store: read-only. indexed builds its indexes first
// (cdcaudit reindex); without them, queries read every event.
func openGolden(t *testing.T, indexed bool) *sink.Store {
	t.Helper()
	dir := t.TempDir()
	in, err := os.Open(goldenStore)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(filepath.Join(dir, sink.FileName), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, zr); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if indexed {
		if err := sink.Reindex(t.Context(), dir, nil); err != nil {
			t.Fatal(err)
		}
	}
	s, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if complete, err := s.IndexComplete(); err != nil || complete != indexed {
		t.Fatalf("indexes complete: %v, %v; want %v", complete, err, indexed)
	}
	return s
}

// goldenLine is one line of golden.txt.
func goldenLine(t *testing.T, s Source, name string, f sink.Query, format string) string {
	t.Helper()
	h := sha256.New()
	n, err := Write(h, s, f, format)
	if err != nil {
		t.Fatalf("%s %s: %v", name, format, err)
	}
	return fmt.Sprintf("%s\t%s\t%d\t%s", name, format, n, hex.EncodeToString(h.Sum(nil)))
}

func TestExportByteIdentical(t *testing.T) {
	if *writeStore {
		writeGoldenStore(t)
	}
	// The store as the cdcaudit of before left it (queries read every
	// event), and with its indexes built.
	for _, indexed := range []bool{false, true} {
		t.Run(fmt.Sprintf("indexed=%v", indexed), func(t *testing.T) { checkGolden(t, openGolden(t, indexed)) })
	}
}

func checkGolden(t *testing.T, s *sink.Store) {
	var got []string
	for _, c := range goldenFilters() {
		for _, format := range []string{"jsonl", "csv"} { // the formats of before
			got = append(got, goldenLine(t, s, c.name, c.f, format))
		}
	}
	if *updateGolden {
		if err := os.WriteFile(goldenFile, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(want) != len(got) {
		t.Fatalf("%d golden lines, %d filters", len(want), len(got))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("export differs from the export of before:\n got %s\nwant %s", got[i], want[i])
		}
	}
	// The golden filters select something, mostly: they test more than "empty".
	nonEmpty := 0
	for _, l := range want {
		if !strings.Contains(l, "\t0\t") {
			nonEmpty++
		}
	}
	if nonEmpty < len(want)-4 {
		t.Errorf("only %d of %d golden exports hold events", nonEmpty, len(want))
	}
}

// writeGoldenStore writes the golden store: snapshot records of a table
// first, then 1,500 generated events, then a gap chain record.
func writeGoldenStore(t *testing.T) {
	dir := t.TempDir()
	s, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b sink.Batch
	lsn := uint64(0x100000)
	for i := 1; i <= 30; i++ {
		id := []byte(fmt.Sprint(i))
		e := &audit.Event{LSN: lsn, CommitLSN: lsn, Ordinal: uint32(i), CommitTime: goldenStart.Add(-time.Hour),
			Database: "odoo", Schema: "public", Table: "res_partner", Model: "res.partner", Op: audit.OpSnapshot,
			Key: audit.Row{{Name: "id", Value: id}}, After: audit.Row{{Name: "id", Value: id}, {Name: "name", Value: []byte(`"Partner ` + string(id) + `"`)}}}
		b.Events = append(b.Events, sink.Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil), Snapshot: true})
	}
	b.Checkpoint = lsn + 8
	if _, err := s.Append([]sink.Batch{b}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	w := storebench.Default(1500, 1)
	w.EventsPerDay, w.Start = 1000, goldenStart
	if _, err := storebench.Build(dir, w, 400, nil); err != nil {
		t.Fatal(err)
	}
	if s, err = sink.Open(dir); err != nil {
		t.Fatal(err)
	}
	gap := s.ChainRecord(sink.MarkGap, 0, goldenStart.Add(48*time.Hour), sink.LSNField("from", 0x7000000), sink.LSNField("to", 0x7100000))
	if _, err := s.Append([]sink.Batch{{Events: []sink.Encoded{gap}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(filepath.Join(dir, sink.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(goldenStore)
	if err != nil {
		t.Fatal(err)
	}
	zw, _ := gzip.NewWriterLevel(out, gzip.BestCompression)
	if _, err := io.Copy(zw, bufio.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// Every row of the golden store's CSV and XLSX exports gives back its
// stored record byte for byte (RecordOfRow), records of every encoding
// the store holds (snapshot records, before the indexes) included.
func TestRowsGiveBackTheRecords(t *testing.T) {
	s := openGolden(t, true)
	q := sink.Query{Ops: []audit.Op{audit.OpInsert, audit.OpUpdate, audit.OpDelete, audit.OpTruncate, audit.OpSnapshot}}
	var records [][]byte
	if _, err := s.Query(t.Context(), q, func(_, rec []byte) error { records = append(records, bytes.Clone(rec)); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"csv", "xlsx"} {
		path, n := writeFile(t, s, q, format)
		rows := readAll(t, path, format)
		if int(n) != len(records) || len(rows) != len(records) || n < 1500 {
			t.Fatalf("%s: %d events, %d rows, %d records", format, n, len(rows), len(records))
		}
		for i, r := range rows {
			rec, err := RecordOfRow(r.cells)
			if err != nil || !bytes.Equal(rec, records[i]) {
				t.Fatalf("%s %v: %v\n got %s\nwant %s", format, r.at, err, rec, records[i])
			}
		}
	}
}
