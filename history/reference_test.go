package history

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/storebench"
	"github.com/cdcaudit/cdcaudit/sink"
)

// scanner is what the scan of before read.
type scanner interface {
	Scan(from, to []byte, fn func(key, record []byte) error) error
}

// memScanner holds events read from a store (those of one table: the scan
// of before read only those).
type memScanner struct{ keys, records [][]byte }

func (m *memScanner) Scan(_, _ []byte, fn func(key, record []byte) error) error {
	for i := range m.keys {
		if err := fn(m.keys[i], m.records[i]); err != nil {
			return err
		}
	}
	return nil
}

// scanAll is history's scan of before the record index, kept as the
// measure of the indexed one: it reads every event of the store.
func scanAll(src scanner, ref Ref, fn func(*Event) error) (Summary, error) {
	var sum Summary
	if ref.Table == "" || len(ref.Key) == 0 {
		return sum, errors.New("history: a record needs a table and a key")
	}
	// The canonical encoding writes schema and table side by side: records
	// of other tables are skipped without decoding. (Embedded json values
	// could hold these bytes too: the decoded names decide.)
	needle := audit.AppendString([]byte(`,"schema":`), ref.Schema)
	needle = append(needle, `,"table":`...)
	needle = append(audit.AppendString(needle, ref.Table), ',')

	var (
		cur     Key  // the record's key while it exists; nil: look for ref.Key
		live    bool // the record exists (after its last event)
		columns []string
	)
	err := src.Scan(nil, nil, func(k, rec []byte) error {
		if !bytes.Contains(rec, needle) {
			return nil
		}
		// Most events of the table are another record's: op, key and
		// before are read first, the whole event only when it matches.
		var s stored
		decoded := false
		decode := func() (ours bool, err error) {
			s = stored{}
			if err := json.Unmarshal(rec, &s); err != nil {
				return false, fmt.Errorf("history: event at key %x: %w: %v", k, audit.ErrMalformed, err)
			}
			decoded = true
			return s.Schema == ref.Schema && s.Table == ref.Table, nil
		}
		if !peek(rec, &s) {
			if ours, err := decode(); !ours || err != nil {
				return err
			}
		}
		op, err := audit.ParseOp(s.Op)
		if err != nil {
			return fmt.Errorf("history: event at key %x: %w", k, err)
		}
		if op == audit.OpTruncate {
			if !live {
				return nil
			}
			if !decoded {
				if ours, err := decode(); !ours || err != nil {
					return err
				}
			}
			cur, live = nil, false
			sum.Events++
			return fn(newEvent(&s, op, rec, nil))
		}
		key, prev, prevKey, err := keysOf(&s, op)
		if err != nil {
			return fmt.Errorf("history: event at key %x: %w", k, err)
		}
		if key == nil {
			return nil // a table without a key: no record can be named
		}
		sum.TableEvents++
		_, columns, _ = keyOf(s.Key)
		match := ref.Key.Matches
		if cur != nil {
			match = func(k Key) bool { return slices.Equal(cur, k) }
		}
		if !match(prev) && !match(key) {
			return nil
		}
		if !decoded {
			if ours, err := decode(); !ours || err != nil {
				return err
			}
		}
		if op == audit.OpDelete {
			cur, live = nil, false
		} else {
			cur, live = key, true
		}
		sum.Events++
		return fn(newEvent(&s, op, rec, prevKey))
	})
	if err == nil && sum.Events == 0 && sum.TableEvents > 0 && !shapeFits(ref.Key, columns) {
		err = fmt.Errorf("%w: the key of %s.%s is (%s): give it as %s", ErrKeyColumns, ref.Schema, ref.Table,
			strings.Join(columns, ", "), keyExample(columns))
	}
	return sum, err
}

// peek reads op, key and before out of a canonical record into s without
// decoding the rest; false when the record is not laid out as expected.
// Every name and value before "op" is a JSON string or number, in which a
// '"' is always escaped: the first `,"op":"` is the member itself.
func peek(rec []byte, s *stored) bool {
	const opTag, keyTag, beforeTag = `,"op":"`, `","key":`, `,"before":`
	i := bytes.Index(rec, []byte(opTag))
	if i < 0 {
		return false
	}
	rest := rec[i+len(opTag):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || !bytes.HasPrefix(rest[j:], []byte(keyTag)) {
		return false
	}
	s.Op = string(rest[:j])
	rest = rest[j+len(keyTag):]
	n := valueLen(rest)
	if n == 0 || !bytes.HasPrefix(rest[n:], []byte(beforeTag)) {
		return false
	}
	s.Key = rest[:n]
	rest = rest[n+len(beforeTag):]
	if n = valueLen(rest); n == 0 {
		return false
	}
	s.Before = rest[:n]
	return true
}

// valueLen is the length of the JSON value at the start of b (0 when there
// is none).
func valueLen(b []byte) int {
	if bytes.HasPrefix(b, []byte("null")) {
		return 4
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var v json.RawMessage
	if dec.Decode(&v) != nil {
		return 0
	}
	return int(dec.InputOffset())
}

// The indexed history of every record of a generated trail (key changes,
// deletes, truncates, re-inserted keys) is the history the scan of before
// gave, event for event; and so is At at moments around its events.
func TestIndexedHistoryMatchesScan(t *testing.T) {
	dir := t.TempDir()
	w := storebench.Default(40_000, 3)
	w.Users = 20
	if _, err := storebench.Build(dir, w, 2000, nil); err != nil {
		t.Fatal(err)
	}
	s, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ok, _ := s.IndexComplete(); !ok {
		t.Fatal("the store has no complete indexes")
	}

	// Every key any event names (as the events name it), and the key
	// changes and truncates among them, so the test is known to cover them.
	var refs []string
	seen := map[string]bool{}
	moves, truncates := 0, 0
	tables := map[string]*memScanner{} // each table's events, for the scan of before
	err = s.Scan(nil, nil, func(k, rec []byte) error {
		r, err := audit.ParseRecord(rec)
		if err != nil {
			return err
		}
		m := tables[r.Schema+"."+r.Table]
		if m == nil {
			m = &memScanner{}
			tables[r.Schema+"."+r.Table] = m
		}
		m.keys, m.records = append(m.keys, bytes.Clone(k)), append(m.records, bytes.Clone(rec))
		if r.Op == "truncate" {
			truncates++
			return nil
		}
		if r.Op == "update" && !bytes.Contains(r.Before, r.Key[1:len(r.Key)-1]) {
			moves++
		}
		ref := r.Schema + "." + r.Table + ":" + string(r.Key)
		if !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if moves == 0 || truncates == 0 {
		t.Fatalf("%d key changes, %d truncates: the trail does not exercise them", moves, truncates)
	}
	// Every record whose table had a key change or a truncate, and one in
	// five of the others.
	t.Logf("%d records, %d key changes, %d truncates", len(refs), moves, truncates)
	asked := 0
	for i, text := range refs {
		ref, err := audit.ParseRecordRef(text)
		if err != nil {
			t.Fatal(err)
		}
		special := ref.Table == "stock_lot" || ref.Table == "ir_config_parameter" || ref.Table == "bus_presence" || ref.Table == "mail_compose_message"
		if !special && i%20 != 0 {
			continue
		}
		if asked++; asked > 400 {
			break
		}
		var want, got []string
		var events []*Event
		if _, err := scanAll(tables[ref.Schema+"."+ref.Table], ref, func(e *Event) error {
			want = append(want, e.ID+" "+string(e.PrevKey)+">"+string(e.Key))
			events = append(events, e)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := Record(s, ref, func(e *Event) error {
			got = append(got, e.ID+" "+string(e.PrevKey)+">"+string(e.Key))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("history of %s:\n got %v\nwant %v", text, got, want)
		}
		for j, e := range events {
			if j > 0 && j < len(events)-1 && j%3 != 0 {
				continue // At around some of its events
			}
			for _, d := range []time.Duration{-time.Microsecond, 0} {
				at := e.CommitTime
				im, err := At(s, ref, at.Add(d))
				if err != nil {
					t.Fatal(err)
				}
				ev := ""
				if im.Event != nil {
					ev = im.Event.ID
				}
				if want := wantAt(t, events, at.Add(d)); im.State != want.State || ev != want.id || string(im.Row) != string(want.row) {
					t.Fatalf("%s at %s: %s %s %s, want %s %s %s", text, at.Add(d), im.State, ev, im.Row, want.State, want.id, want.row)
				}
			}
		}
	}
	if asked < 300 {
		t.Errorf("only %d records asked about", asked)
	}
}

type stateAt struct {
	State State
	id    string
	row   json.RawMessage
}

// wantAt is At as the scan of before answered it, from the record's
// events as that scan found them.
func wantAt(t *testing.T, events []*Event, at time.Time) stateAt {
	t.Helper()
	var (
		st         stateAt
		row, atRow []Column
	)
	for _, e := range events {
		switch e.Op {
		case audit.OpInsert, audit.OpSnapshot, audit.OpUpdate:
			after, err := Columns(e.After)
			if err != nil {
				t.Fatal(err)
			}
			if e.Op == audit.OpUpdate {
				row, _ = fillToast(row, after, e.UnchangedToast)
			} else {
				row = after
			}
		default:
			row = nil
		}
		if e.CommitTime.After(at) {
			continue
		}
		st.id, atRow, st.State = e.ID, row, Gone
		if e.Op != audit.OpDelete && e.Op != audit.OpTruncate {
			st.State = Exists
		}
	}
	if st.State == Exists {
		st.row = encodeRow(atRow)
	}
	return st
}
