package export

import (
	"archive/zip"
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/xuri/excelize/v2"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// formulaLike are values a spreadsheet would take for formulas if they
// were typed in.
var formulaLike = []string{`=HYPERLINK("http://x","y")`, `+1+2`, `-3`, `@SUM(A1:A2)`, `=cmd|' /C calc'!A0`}

// richStore is a real store whose events exercise what a cell must carry:
// formula-like names and values, quotes, commas, newlines, leading and
// trailing spaces, characters outside the BMP, a value longer than a cell
// holds (once cut at a surrogate pair), models, actors, before-images.
func richStore(t *testing.T) *sink.Store {
	t.Helper()
	s, err := sink.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	long := strings.Repeat("x", 40000)
	// Cut where a surrogate pair straddles the room left before the mark.
	straddle := strings.Repeat("y", MaxCellChars-utf16Len(CutMark+"40001"+cutTail)-2) + "a😀" + strings.Repeat("z", 7000)
	uid := int64(6)
	var b sink.Batch
	values := append([]string{"plain", "  padded  ", "tab\there", "cr\rlf\r\n", "_x0041_ literal", "😀 emoji", long, straddle}, formulaLike...)
	for i, v := range values {
		commit := uint64(i+1) << 8
		e := &audit.Event{
			LSN: commit - 0x10, CommitLSN: commit, Ordinal: 1, XID: uint32(4294967295 - i),
			CommitTime: t0.AddDate(0, 0, i), Database: "odoo", Schema: "public", Table: "res_partner", Model: "res.partner",
			Op: audit.OpUpdate, Key: audit.Row{{Name: "id", Value: []byte("1")}},
			Before:       audit.Row{{Name: "id", Value: []byte("1")}, {Name: "name", Value: []byte(`null`)}},
			BeforeSource: audit.BeforeReconstructed,
			After:        audit.Row{{Name: "id", Value: []byte("1")}, {Name: "name", Value: audit.AppendString(nil, v)}},
			Changed:      []string{"name"},
			Actor:        audit.Actor{UserID: &uid, Login: "alice@example.com", UserVia: "session_row", SessionID: "s1", SessionVia: "same_tx"},
			Flags:        []string{"orm_bypass"},
		}
		if i >= len(values)-len(formulaLike) {
			// The names reach the sheet as they are, not as JSON text.
			e.Schema, e.Table, e.Model, e.Database = v, v, v, v
		}
		if i == 0 {
			e.Model, e.Op, e.Before, e.BeforeSource = "", audit.OpInsert, nil, audit.BeforeNone
		}
		b.Events = append(b.Events, sink.Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil)})
		b.Checkpoint = commit + 8
	}
	if _, err := s.Append([]sink.Batch{b}); err != nil {
		t.Fatal(err)
	}
	return s
}

// writeFile exports st in format to a file and returns its path.
func writeFile(t *testing.T, st Source, q sink.Query, format string) (string, uint64) {
	t.Helper()
	var buf bytes.Buffer
	n, err := Write(&buf, st, q, format)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "export."+format)
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, n
}

type readRow struct {
	at    Where
	cells []string
}

func readAll(t *testing.T, path, format string) []readRow {
	t.Helper()
	var rows []readRow
	keep := func(at Where, row []string) error {
		rows = append(rows, readRow{at, append([]string(nil), row...)})
		return nil
	}
	var err error
	if format == "csv" {
		f, ferr := os.Open(path)
		if ferr != nil {
			t.Fatal(ferr)
		}
		defer f.Close()
		err = ReadCSV(f, keep)
	} else {
		err = ReadXLSX(path, keep)
	}
	if err != nil {
		t.Fatalf("read %s: %v", format, err)
	}
	return rows
}

// The XLSX export holds the CSV export's cells, read back with excelize:
// the same values, except a value longer than a cell, cut and marked.
func TestXLSXHoldsTheCSVCells(t *testing.T) {
	s := richStore(t)
	csvPath, nc := writeFile(t, s, sink.Query{}, "csv")
	xlsxPath, nx := writeFile(t, s, sink.Query{}, "xlsx")
	if nc != nx || nc != 13 {
		t.Fatalf("csv %d events, xlsx %d", nc, nx)
	}
	want, got := readAll(t, csvPath, "csv"), readAll(t, xlsxPath, "xlsx")
	if len(want) != len(got) {
		t.Fatalf("csv %d rows, xlsx %d", len(want), len(got))
	}
	cut := 0
	for i := range want {
		if got[i].at.Sheet != "events" || got[i].at.Line != i+2 {
			t.Errorf("row %d read at %v", i, got[i].at)
		}
		for c, name := range Columns {
			w, g := want[i].cells[c], got[i].cells[c]
			if w == g {
				continue
			}
			if utf16Len(w) <= MaxCellChars || !IsCut(g) {
				t.Errorf("event %s column %s:\n got %.80q\nwant %.80q", want[i].cells[0], name, g, w)
				continue
			}
			cut++
			kept := g[:strings.LastIndex(g, CutMark)]
			if !strings.HasPrefix(w, kept) || utf16Len(g) > MaxCellChars || !utf8.ValidString(g) ||
				!strings.Contains(g, fmt.Sprintf("%d characters in all", utf8.RuneCountInString(w))) {
				t.Errorf("event %s column %s: cut to %d UTF-16 units, not a prefix and the mark: …%q", want[i].cells[0], name, utf16Len(g), g[len(g)-120:])
			}
		}
	}
	if cut != 2 {
		t.Errorf("%d values cut, want 2 (the long ones)", cut)
	}
	// A CSV or XLSX row gives back the stored record, whose hash recomputes
	// (a cut one cannot).
	for _, rows := range [][]readRow{want, got} {
		checked := 0
		for _, r := range rows {
			rec, err := RecordOfRow(r.cells)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := audit.Check(rec); err != nil {
				if !IsCut(r.cells[12]) {
					t.Errorf("%v: %v\n%s", r.at, err, rec)
				}
				continue
			}
			checked++
		}
		if checked != len(rows)-cut && checked != len(rows) {
			t.Errorf("%d rows rechecked of %d", checked, len(rows))
		}
	}
}

// A value that begins with = + - or @ is a text cell, never a formula.
func TestXLSXFormulaLikeValuesStayText(t *testing.T) {
	s := richStore(t)
	path, _ := writeFile(t, s, sink.Query{}, "xlsx")
	f, err := excelize.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	found := 0
	rows, err := f.GetRows("events")
	if err != nil {
		t.Fatal(err)
	}
	for r, row := range rows {
		for c, v := range row {
			cell, _ := excelize.CoordinatesToCellName(c+1, r+1)
			formula, err := f.GetCellFormula("events", cell)
			if err != nil || formula != "" {
				t.Errorf("%s holds formula %q (%v)", cell, formula, err)
			}
			typ, _ := f.GetCellType("events", cell)
			for _, fl := range formulaLike {
				if v == fl {
					found++
					if typ != excelize.CellTypeInlineString {
						t.Errorf("%s %q: cell type %v, want text", cell, v, typ)
					}
				}
			}
			if Columns[c] == "xid" && r > 0 && typ != excelize.CellTypeUnset && typ != excelize.CellTypeNumber {
				t.Errorf("%s: xid cell type %v, want a number", cell, typ)
			}
		}
	}
	if found != 4*len(formulaLike) { // database, schema, table, model
		t.Errorf("%d formula-like cells found, want %d", found, 4*len(formulaLike))
	}
}

// Past a sheet's row limit the export goes on in a new sheet, header
// first; the rows read back in order.
func TestXLSXSheetRollover(t *testing.T) {
	old := sheetRows
	sheetRows = 4 // the header and 3 events
	t.Cleanup(func() { sheetRows = old })
	s := store(t, append(append(append([]spec{}, basic...), basic...), basic[:1]...)) // 11 events
	path, n := writeFile(t, s, sink.Query{}, "xlsx")
	if n != 11 {
		t.Fatalf("%d events", n)
	}
	f, err := excelize.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sheets := f.GetSheetList()
	if strings.Join(sheets, ",") != "events,events 2,events 3,events 4" {
		t.Fatalf("sheets %q", sheets)
	}
	for i, sh := range sheets {
		rows, _ := f.GetRows(sh)
		if want := min(3, 11-3*i) + 1; len(rows) != want || strings.Join(rows[0], ",") != strings.Join(Columns, ",") {
			t.Errorf("sheet %s: %d rows, header %v; want %d rows and the header", sh, len(rows), rows[0], want)
		}
	}
	f.Close()
	csvPath, _ := writeFile(t, s, sink.Query{}, "csv")
	want, got := readAll(t, csvPath, "csv"), readAll(t, path, "xlsx")
	if len(got) != len(want) {
		t.Fatalf("%d rows read, want %d", len(got), len(want))
	}
	for i := range want {
		if strings.Join(got[i].cells, "\x00") != strings.Join(want[i].cells, "\x00") {
			t.Errorf("row %d (%v) differs from the CSV's", i, got[i].at)
		}
	}
	if got[3].at != (Where{Sheet: "events 2", Line: 2}) {
		t.Errorf("the 4th event read at %v, want sheet events 2 row 2", got[3].at)
	}

	// The size bound rolls over too (here: every event on its own sheet).
	oldBytes := sheetBytes
	sheetRows, sheetBytes = old, 100
	t.Cleanup(func() { sheetBytes = oldBytes })
	path, _ = writeFile(t, s, sink.Query{}, "xlsx")
	if f, err = excelize.OpenFile(path); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.GetSheetList()) != 11 {
		t.Errorf("%d sheets for 11 events over the size bound", len(f.GetSheetList()))
	}
}

// An XLSX export of nothing is a workbook with the header only.
func TestXLSXEmpty(t *testing.T) {
	s := store(t, basic)
	path, n := writeFile(t, s, sink.Query{Tables: []string{"nope"}}, "xlsx")
	if n != 0 {
		t.Fatal(n)
	}
	if rows := readAll(t, path, "xlsx"); len(rows) != 0 {
		t.Fatalf("%d rows", len(rows))
	}
}

func TestCellText(t *testing.T) {
	for _, s := range []string{"", "short", strings.Repeat("é", MaxCellChars), strings.Repeat("😀", MaxCellChars/2)} {
		if cellText(s) != s {
			t.Errorf("a value that fits (%d UTF-16 units) was changed", utf16Len(s))
		}
	}
	for _, s := range []string{strings.Repeat("a", MaxCellChars+1), strings.Repeat("😀", MaxCellChars/2+1), strings.Repeat("\xff", 40000)} {
		c := cellText(s)
		if !IsCut(c) || utf16Len(c) > MaxCellChars || !utf8.ValidString(c[:strings.LastIndex(c, CutMark)]) && s[0] != '\xff' {
			t.Errorf("cut of %d units: %d units, cut=%v", utf16Len(s), utf16Len(c), IsCut(c))
		}
	}
	if IsCut("short" + CutMark + "5" + cutTail) {
		t.Error("a short value that spells the mark is not a cut value")
	}
}

// A CSV file is read a row at a time, and a row has a bound: a file of
// one endless quoted field is refused, not held in memory.
func TestReadCSVBoundsARow(t *testing.T) {
	old := maxRowBytes
	maxRowBytes = 10_000
	t.Cleanup(func() { maxRowBytes = old })
	s := store(t, basic)
	var buf bytes.Buffer
	if _, err := Write(&buf, s, sink.Query{}, "csv"); err != nil {
		t.Fatal(err)
	}
	rows := 0
	if err := ReadCSV(bytes.NewReader(buf.Bytes()), func(Where, []string) error { rows++; return nil }); err != nil || rows != 5 {
		t.Fatalf("%d rows, %v", rows, err)
	}
	endless := strings.Join(Columns, ",") + "\n\"" + strings.Repeat("x", 100_000)
	err := ReadCSV(strings.NewReader(endless), func(Where, []string) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "a row longer than 10000 bytes") {
		t.Fatalf("an endless field: %v", err)
	}
	// Another file's header is not an export's.
	if err := ReadCSV(strings.NewReader("a,b\n1,2\n"), func(Where, []string) error { return nil }); err == nil {
		t.Fatal("a CSV with another header was read")
	}
}

// The size a sheet is bounded by is estimated from above: the sheet's XML
// is never larger than the estimate, whatever the escaping.
func TestXLSXSizeEstimate(t *testing.T) {
	s := richStore(t)
	path, _ := writeFile(t, s, sink.Query{}, "xlsx")
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var actual int64
	for _, f := range zr.File {
		if f.Name == "xl/worksheets/sheet1.xml" {
			actual = int64(f.UncompressedSize64)
		}
	}
	var estimate int64
	for _, r := range readAll(t, path, "xlsx") {
		for _, c := range r.cells {
			estimate += xmlLen(cellText(c))
		}
	}
	estimate += 64 * int64(len(Columns)) // the header
	const frame = 4096                   // the sheet's XML around its rows
	if actual == 0 || actual > estimate+frame {
		t.Fatalf("sheet XML %d bytes, estimated %d", actual, estimate)
	}
	// A value made of what escaping lengthens most.
	for _, v := range []string{strings.Repeat(`"`, 1000), strings.Repeat("_x0041_", 1000), strings.Repeat("&\t\r<>'", 100)} {
		var b strings.Builder
		xml.EscapeText(&b, []byte(v))
		got := strings.ReplaceAll(strings.ReplaceAll(b.String(), "_x", "_x005F_x"), "&#xA;", "\n")
		if int64(len(got)) > xmlLen(v) {
			t.Errorf("%.20q…: escaped to %d bytes, estimated %d", v, len(got), xmlLen(v))
		}
	}
}
