package export

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/xuri/excelize/v2"

	"github.com/cdcaudit/cdcaudit/audit"
)

// Where is the place of a row in a CSV or XLSX export.
type Where struct {
	Sheet string // "" in a CSV file
	Line  int    // the CSV line, or the sheet's row, from 1
}

func (w Where) String() string {
	if w.Sheet == "" {
		return "line " + strconv.Itoa(w.Line)
	}
	return fmt.Sprintf("sheet %q row %d", w.Sheet, w.Line)
}

// ErrHeader is returned for a file whose header is not Columns.
var ErrHeader = errors.New("the header is not the one cdcaudit export writes")

// maxRowBytes bounds a row that ReadCSV reads (the file is untrusted: a
// CSV reader holds a whole row in memory); tests lower it.
var maxRowBytes = 256 << 20

// ReadCSV calls fn with each row of a CSV export after its header, in
// order. row is valid only during fn.
func ReadCSV(r io.Reader, fn func(at Where, row []string) error) error {
	lr := &rowLimit{r: r}
	cr := csv.NewReader(lr)
	cr.FieldsPerRecord = len(Columns)
	cr.ReuseRecord = true
	for first := true; ; first = false {
		row, err := cr.Read()
		if err == io.EOF {
			if first {
				return fmt.Errorf("%w: the file is empty", ErrHeader)
			}
			return nil
		}
		if err != nil {
			return err
		}
		line, _ := cr.FieldPos(0)
		if first {
			if !isHeader(row) {
				return fmt.Errorf("line %d: %w", line, ErrHeader)
			}
			continue
		}
		if err := fn(Where{Line: line}, row); err != nil {
			return err
		}
		lr.n = 0
	}
}

// rowLimit fails a read once more than maxRowBytes were read since n was
// last reset (at each row; the CSV reader reads ahead a little).
type rowLimit struct {
	r io.Reader
	n int
}

func (l *rowLimit) Read(p []byte) (int, error) {
	if l.n > maxRowBytes {
		return 0, fmt.Errorf("a row longer than %d bytes", maxRowBytes)
	}
	n, err := l.r.Read(p)
	l.n += n
	return n, err
}

// ReadXLSX calls fn with each row of an XLSX export after each sheet's
// header, sheet by sheet, in order. excelize reads the archive's parts
// into memory, or into temporary files when large.
func ReadXLSX(path string, fn func(at Where, row []string) error) error {
	f, err := excelize.OpenFile(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sheets := f.GetSheetList()
	if len(sheets) == 0 {
		return fmt.Errorf("%w: the workbook has no sheet", ErrHeader)
	}
	row := make([]string, len(Columns))
	for _, sheet := range sheets {
		if err := readSheet(f, sheet, row, fn); err != nil {
			return err
		}
	}
	return nil
}

func readSheet(f *excelize.File, sheet string, row []string, fn func(Where, []string) error) error {
	rows, err := f.Rows(sheet)
	if err != nil {
		return err
	}
	defer rows.Close()
	for line := 1; rows.Next(); line++ {
		cells, err := rows.Columns(excelize.Options{RawCellValue: true})
		if err != nil {
			return fmt.Errorf("sheet %q row %d: %w", sheet, line, err)
		}
		at := Where{Sheet: sheet, Line: line}
		if len(cells) > len(Columns) {
			return fmt.Errorf("%s: %d cells, want at most %d", at, len(cells), len(Columns))
		}
		clear(row)
		copy(row, cells) // empty cells at the end are not written
		if line == 1 {
			if !isHeader(row) {
				return fmt.Errorf("%s: %w", at, ErrHeader)
			}
			continue
		}
		if err := fn(at, row); err != nil {
			return err
		}
	}
	return rows.Error()
}

func isHeader(row []string) bool {
	if len(row) != len(Columns) {
		return false
	}
	for i, c := range Columns {
		if row[i] != c {
			return false
		}
	}
	return true
}

// Encodings of a record's members in a row.
const (
	asString   = iota // a JSON string: the column's text
	asJSON            // the column's text is the member's JSON
	asModel           // a string, or null when the column is empty
	asOptional        // a string, the member left out when the column is empty
)

// members are a stored record's members in their canonical order
// (audit.Event.AppendBody), with the column that holds each.
var members = [...]struct {
	name string
	col  int
	enc  int
}{
	{"id", 0, asString}, {"lsn", 1, asString}, {"commit_lsn", 2, asString}, {"xid", 3, asJSON},
	{"commit_time", 4, asString}, {"database", 5, asString}, {"source", 21, asOptional}, {"schema", 6, asString}, {"table", 7, asString},
	{"model", 8, asModel}, {"op", 9, asString}, {"key", 10, asJSON}, {"before", 11, asJSON},
	{"before_source", 20, asOptional}, {"after", 12, asJSON}, {"changed", 13, asJSON},
	{"unchanged_toast", 14, asJSON}, {"redacted", 15, asJSON}, {"actor", 16, asJSON}, {"flags", 17, asJSON},
	{"prev_hash", 18, asString}, {"hash", 19, asString},
}

// RecordOfRow rebuilds the stored record a CSV or XLSX row was written
// from, byte for byte: the members in their canonical order, strings
// encoded as the event encodes them, JSON members as written. audit.Check
// then recomputes its hash. A row that was altered gives another record,
// whose hash does not match.
func RecordOfRow(row []string) ([]byte, error) {
	if len(row) != len(Columns) {
		return nil, fmt.Errorf("%d values, want %d", len(row), len(Columns))
	}
	if _, err := strconv.ParseUint(row[3], 10, 32); err != nil {
		return nil, fmt.Errorf("xid: %q is not a number", row[3])
	}
	b := make([]byte, 0, 256)
	for i, m := range members {
		v := row[m.col]
		if m.enc == asOptional && v == "" {
			continue
		}
		b = append(b, ',', '"')
		if i == 0 {
			b[len(b)-2] = '{'
		}
		b = append(b, m.name...)
		b = append(b, '"', ':')
		switch {
		case m.enc == asJSON:
			b = append(b, v...)
		case m.enc == asModel && v == "": // the event has no model (never "")
			b = append(b, "null"...)
		default:
			b = audit.AppendString(b, v)
		}
	}
	return append(b, '}'), nil
}
