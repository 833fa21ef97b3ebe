package export

import (
	"archive/zip"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/klauspost/compress/flate"
	"github.com/xuri/excelize/v2"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// An XLSX export holds the CSV export's columns and values, one sheet after
// another: a sheet ends at Excel's row limit (or before its XML reaches the
// size where the archive needs ZIP64 entries, which Excel does not read
// back reliably) and the next one, "events 2", "events 3", …, begins with
// the header again. Every value is a text cell (xid a number): a value
// that begins with = + - or @ is never a formula. A value longer than a
// cell holds is cut and marked (CutMark); the JSONL and CSV exports hold
// it whole.
var (
	// sheetRows is the most rows a sheet holds, its header included;
	// tests lower it.
	sheetRows = excelize.TotalRows
	// sheetBytes bounds a sheet's XML (as estimated by xmlLen), below the
	// 4 GiB of a plain ZIP entry; tests lower it.
	sheetBytes int64 = 3 << 30
)

// MaxCellChars is the most characters a cell holds, counted as Excel
// counts them (UTF-16 code units).
const MaxCellChars = excelize.TotalCellChars

// CutMark begins the text that ends a value cut to fit a cell:
// "…[cut by cdcaudit: N characters in all; …]".
const CutMark = "…[cut by cdcaudit: "

const cutTail = " characters in all; the JSONL and CSV exports hold the whole value]"

// IsCut reports whether a cell's text is a value cut by the XLSX export:
// it ends with the mark, and only a value longer than a cell is cut.
func IsCut(cell string) bool {
	i := strings.LastIndex(cell, CutMark)
	return i >= 0 && strings.HasSuffix(cell, cutTail) && utf16Len(cell) > MaxCellChars-2
}

// cellText returns s, or when it is longer than a cell holds, its start
// and the mark (at most MaxCellChars UTF-16 units; never half a rune).
func cellText(s string) string {
	if len(s) <= MaxCellChars { // never more UTF-16 units than bytes
		return s
	}
	if utf16Len(s) <= MaxCellChars {
		return s
	}
	mark := CutMark + strconv.Itoa(utf8.RuneCountInString(s)) + cutTail
	room := MaxCellChars - utf16Len(mark)
	end := 0
	for i, r := range s {
		if room -= utf16.RuneLen(max(r, 0)); room < 0 {
			break
		}
		end = i + utf8.RuneLen(r)
		if r == utf8.RuneError {
			end = i + 1 // an invalid byte: one U+FFFD, one byte
		}
	}
	return s[:end] + mark
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// xmlLen estimates, from above, how many bytes a cell holding s takes in
// the sheet's XML: its text with the characters escaping lengthens, and
// the cell's tags (its row's share of the row's tags included).
func xmlLen(s string) int64 {
	n := int64(len(s)) + 64
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '&', '<', '>', '"', '\'', '\t', '\r':
			n += 4 // &amp; &#34; &#x9; …
		case '_':
			if i+1 < len(s) && s[i+1] == 'x' {
				n += 6 // _x0041_ is written _x005F_x0041_
			}
		}
	}
	return n
}

// xlsxWriter writes the rows of an XLSX export through excelize's
// streaming writer: each sheet's XML goes to a temporary file (in
// os.TempDir) as rows arrive, and the archive is written to w at the end.
type xlsxWriter struct {
	f      *excelize.File
	sw     *excelize.StreamWriter
	sheets int
	row    int   // rows written on the current sheet
	size   int64 // the current sheet's estimated XML size
	bold   int   // the header's style
	cells  []any
}

func newXLSXWriter(w io.Writer) (*xlsxWriter, error) {
	f := excelize.NewFile()
	// excelize writes the archive into a buffer, then the buffer to w:
	// the whole file in memory. Given a zip writer of ours on w, it writes
	// through it and its buffer stays empty, so memory stays constant.
	// klauspost's deflate at its fastest level: the sheets are large, and
	// repetitive, so they still shrink about tenfold.
	f.SetZipWriter(func(io.Writer) excelize.ZipWriter {
		zw := zip.NewWriter(w)
		zw.RegisterCompressor(zip.Deflate, func(out io.Writer) (io.WriteCloser, error) {
			return flate.NewWriter(out, flate.BestSpeed)
		})
		return zw
	})
	x := &xlsxWriter{f: f, cells: make([]any, len(Columns))}
	var err error
	if x.bold, err = f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true}}); err != nil {
		f.Close()
		return nil, err
	}
	if err = x.nextSheet(); err != nil {
		f.Close()
		return nil, err
	}
	return x, nil
}

// sheetName is the name of the nth sheet (from 1).
func sheetName(n int) string {
	if n == 1 {
		return "events"
	}
	return "events " + strconv.Itoa(n)
}

// nextSheet ends the current sheet, if any, and begins the next with the
// header.
func (x *xlsxWriter) nextSheet() error {
	if x.sw != nil {
		if err := x.sw.Flush(); err != nil {
			return err
		}
	}
	x.sheets++
	name := sheetName(x.sheets)
	if x.sheets == 1 {
		if err := x.f.SetSheetName(x.f.GetSheetName(0), name); err != nil {
			return err
		}
	} else if _, err := x.f.NewSheet(name); err != nil {
		return err
	}
	sw, err := x.f.NewStreamWriter(name)
	if err != nil {
		return err
	}
	x.sw, x.row, x.size = sw, 0, 0
	if err := sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft"}); err != nil {
		return err
	}
	header := make([]any, len(Columns))
	for i, c := range Columns {
		header[i] = c
	}
	return x.add(header, excelize.RowOpts{StyleID: x.bold})
}

// addEvent writes one event's row: the CSV row's values.
func (x *xlsxWriter) addEvent(row []string, xid uint32) error {
	size := int64(0)
	for i, v := range row {
		v = cellText(v)
		size += xmlLen(v)
		x.cells[i] = v
		if v == "" {
			x.cells[i] = nil // no cell
		}
	}
	x.cells[3] = xid // a number, as in the event
	if x.row >= sheetRows || x.row > 1 && x.size+size > sheetBytes {
		if err := x.nextSheet(); err != nil {
			return err
		}
	}
	x.size += size
	return x.add(x.cells)
}

func (x *xlsxWriter) add(cells []any, opts ...excelize.RowOpts) error {
	x.row++
	cell, err := excelize.CoordinatesToCellName(1, x.row)
	if err != nil {
		return err
	}
	return x.sw.SetRow(cell, cells, opts...)
}

// finish writes the archive to w.
func (x *xlsxWriter) finish(w io.Writer) error {
	if err := x.sw.Flush(); err != nil {
		return err
	}
	_, err := x.f.WriteTo(w)
	return err
}

// close removes the temporary files.
func (x *xlsxWriter) close() { x.f.Close() }

// writeXLSX is Write for the xlsx format.
func writeXLSX(ctx context.Context, w io.Writer, st Source, q sink.Query) (n uint64, err error) {
	x, err := newXLSXWriter(w)
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	defer x.close()
	row := make([]string, len(Columns))
	_, err = st.Query(ctx, q, func(key, record []byte) error {
		r, err := audit.ParseRecord(record)
		if err != nil {
			return fmt.Errorf("export: event at key %x: %w", key, err)
		}
		csvRow(row, r)
		n++
		return x.addEvent(row, r.XID)
	})
	if err != nil {
		return n, err
	}
	// Nothing reaches w before here: an export that fails writes nothing.
	return n, x.finish(w)
}
