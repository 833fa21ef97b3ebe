package manifest

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/export"
	"github.com/cdcaudit/cdcaudit/instancekey"
)

// Result is what Check found.
type Result struct {
	// KeyTrusted: the manifest is signed by the trusted key Check was
	// given. Without one, a valid signature only says the manifest is as
	// the holder of the key it names signed it: anyone can make a key.
	KeyTrusted bool
	Events     uint64 // the events the file holds
	// Rechecked is how many of them had their hash recomputed from the
	// file's content; Uncheckable how many could not be (XLSX rows with a
	// value cut to fit a cell: the file's SHA-256 still covers them).
	Rechecked, Uncheckable uint64
	SHA256                 string // of the file
	// Problems, in the order found; none when the file is what the
	// manifest says it is.
	Problems []string
	reading
}

// OK reports whether nothing contradicts the manifest.
func (r *Result) OK() bool { return len(r.Problems) == 0 }

// maxListed bounds the problems of single events listed.
const maxListed = 10

// maxLine bounds a line of a JSONL export (one stored event).
const maxLine = 256 << 20

// Check checks the export file at path against m: m's signature (with the
// key it names, and that key against trusted, a public key in
// instancekey.FormatPublic form, when given), the file's size and SHA-256,
// and, reading the file once, its events: each one's hash recomputed from
// its content (from the row's values for CSV and XLSX), their count, their
// order, the first and last id and chain values. The error is for a file
// that cannot be read at all; everything else is a problem in the Result.
func Check(path string, m *Manifest, trusted string) (*Result, error) {
	res := &Result{}
	if err := m.VerifySignature(); err != nil {
		res.Problems = append(res.Problems, err.Error())
	} else if trusted != "" {
		if m.Key == trusted {
			res.KeyTrusted = true
		} else {
			res.Problems = append(res.Problems, fmt.Sprintf("the manifest is signed by key %s, not by the trusted key %s: it is not from this instance",
				instancekey.Fingerprint(m.Key), instancekey.Fingerprint(trusted)))
		}
	}

	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sum, size := sha256.New(), int64(0)
	if m.Format == "xlsx" {
		// excelize reads the archive itself, by name, and only ours: an
		// archive is a format of many parts (a crafted one can unpack to
		// far more than its size), and another file has nothing to tell.
		if size, err = io.Copy(sum, f); err != nil {
			return nil, err
		}
		if hex.EncodeToString(sum.Sum(nil)) == m.SHA256 {
			res.readRows(m.Format, nil, path)
		} else {
			res.unread = true
		}
	} else {
		hr := &hashingReader{r: f, h: sum, n: &size}
		res.readRows(m.Format, hr, path)
		if hr.err != nil {
			return nil, hr.err
		}
	}
	res.SHA256 = hex.EncodeToString(sum.Sum(nil))

	var file []string
	if res.SHA256 != m.SHA256 {
		file = append(file, fmt.Sprintf("the file's SHA-256 is %s, the manifest says %s: the file was altered", short(res.SHA256), short(m.SHA256)))
	}
	if size != m.Bytes {
		file = append(file, fmt.Sprintf("the file holds %d bytes, the manifest says %d", size, m.Bytes))
	}
	if res.Events != m.Events && !res.unread {
		what := "events were removed"
		if res.Events > m.Events {
			what = "events were added"
		}
		file = append(file, fmt.Sprintf("the file holds %d events, the manifest says %d: %s", res.Events, m.Events, what))
	}
	if e := res.ends; !res.unread && (e.firstID != m.FirstID || e.lastID != m.LastID) {
		file = append(file, fmt.Sprintf("the file's events run from %s to %s, the manifest says from %s to %s",
			orNone(e.firstID), orNone(e.lastID), orNone(m.FirstID), orNone(m.LastID)))
	}
	if e := res.ends; res.Events > 0 && m.Events > 0 && (e.firstPrev.String() != m.FirstPrevHash || e.lastHash.String() != m.LastHash) {
		file = append(file, fmt.Sprintf("the file's chain values (the first event's prev_hash %s, the last one's hash %s) are not the manifest's (%s, %s)",
			short(e.firstPrev.String()), short(e.lastHash.String()), short(m.FirstPrevHash), short(m.LastHash)))
	}
	// What the whole file contradicts first, then single events.
	res.Problems = append(append(res.Problems, file...), res.events...)
	if res.unread {
		res.Problems = append(res.Problems, "the workbook's rows were not read: it is not the file the manifest describes")
	}
	if res.unlisted > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("… and %d more problems of single events", res.unlisted))
	}
	return res, nil
}

// hashingReader hashes and counts what is read through it, and keeps the
// reader's error (a file that cannot be read, not a bad file).
type hashingReader struct {
	r   io.Reader
	h   io.Writer
	n   *int64
	err error
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	*h.n += int64(n)
	if err != nil && err != io.EOF {
		h.err = err
	}
	return n, err
}

// reading is what readRows keeps while it reads the file.
type reading struct {
	ends struct {
		firstID, lastID     string
		firstPrev, lastHash audit.Hash
	}
	events   []string // problems of single events
	unlisted int
	unread   bool // an XLSX file that is not the one described: its rows were not read
}

// readRows reads the events of the file (from r for JSONL and CSV, which
// it reads to its end, so that all of it is hashed) into res.
func (res *Result) readRows(format string, r io.Reader, path string) {
	var err error
	switch format {
	case "jsonl":
		err = res.readJSONL(r)
	case "csv":
		err = export.ReadCSV(r, res.row)
	case "xlsx":
		err = export.ReadXLSX(path, res.row)
	}
	if err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("the file is not a %s export as cdcaudit writes it: %v", format, err))
	}
	if r != nil {
		io.Copy(io.Discard, r) // hash what is left
	}
}

func (res *Result) readJSONL(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for n := 1; ; n++ {
		line = line[:0]
		for {
			part, err := br.ReadSlice('\n')
			if len(line)+len(part) > maxLine {
				return fmt.Errorf("line %d: longer than %d bytes", n, maxLine)
			}
			line = append(line, part...)
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF {
				if len(line) > 0 {
					res.event(fmt.Sprintf("line %d", n), line)
					res.problem(fmt.Sprintf("line %d: the file ends without a newline: it was cut short", n))
				}
				return nil
			}
			if err != nil {
				return err
			}
			break
		}
		res.event(fmt.Sprintf("line %d", n), line[:len(line)-1])
	}
}

// row checks one CSV or XLSX row.
func (res *Result) row(at export.Where, row []string) error {
	if at.Sheet != "" && anyCut(row) {
		// The values are not all there (only XLSX cuts): the id and the
		// chain values are (never cut), the hash cannot be recomputed.
		res.Uncheckable++
		prev, errP := parseHash(row[18])
		h, errH := parseHash(row[19])
		if errP != nil || errH != nil {
			res.problem(fmt.Sprintf("%s: malformed prev_hash or hash", at))
			return nil
		}
		res.note(at.String(), row[0], prev, h, false)
		return nil
	}
	rec, err := export.RecordOfRow(row)
	if err != nil {
		res.problem(fmt.Sprintf("%s: %v", at, err))
		return nil
	}
	res.event(at.String(), rec)
	return nil
}

func anyCut(row []string) bool {
	for _, v := range row {
		if len(v) >= export.MaxCellChars-2 && export.IsCut(v) {
			return true
		}
	}
	return false
}

func parseHash(s string) (audit.Hash, error) {
	var h audit.Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, errors.New("not a hash")
	}
	copy(h[:], b)
	return h, nil
}

// event checks one stored record read back from the file.
func (res *Result) event(at string, record []byte) {
	id, prev, h, err := audit.Check(record)
	switch {
	case errors.Is(err, audit.ErrMalformed):
		res.problem(fmt.Sprintf("%s: not an event as cdcaudit stores it", at))
		return
	case err != nil:
		res.problem(fmt.Sprintf("%s: event %s: its content does not match its hash: the event was altered", at, id))
	}
	res.note(at, id, prev, h, err == nil)
}

// note counts an event and checks its place after the one before.
func (res *Result) note(at, id string, prev, h audit.Hash, rechecked bool) {
	e := &res.ends
	if res.Events > 0 && id <= e.lastID {
		res.problem(fmt.Sprintf("%s: event %s comes after event %s: the events are out of commit order (moved or repeated)", at, id, e.lastID))
	}
	if res.Events == 0 {
		e.firstID, e.firstPrev = id, prev
	}
	res.Events++
	if rechecked {
		res.Rechecked++
	}
	e.lastID, e.lastHash = id, h
}

func (res *Result) problem(p string) {
	if len(res.events) < maxListed {
		res.events = append(res.events, p)
	} else {
		res.unlisted++
	}
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

func orNone(id string) string {
	if id == "" {
		return "(none)"
	}
	return id
}
