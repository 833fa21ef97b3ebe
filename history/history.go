// Package history answers two questions about one record of the audit
// trail: what happened to it (Record: its events, oldest first) and what it
// was at a given moment (At: its row then, and the event that made it so).
//
// A record is a row of one table, named by its key (Ref). Its history
// follows it through key changes: an update whose before-image holds key
// values other than its key moved the record to the new key, and its later
// events are those under the new key. After a delete (or a truncate of its
// table) the record is gone, and the history continues with the next row
// that takes the key asked for (a re-insert). A row that takes the key
// asked for while the record lives on under another key is not followed:
// ask for it once the record has left (or by its key at that time).
//
// Both read the record's events through the store's record index (and its
// table's truncates through the table index): the cost is that of the
// record's events, not of the store.
package history

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Source is what history reads: the store's query API (sink.Store
// implements it). record is valid only during fn.
type Source interface {
	Query(ctx context.Context, q sink.Query, fn func(key, record []byte) error) (next string, err error)
	Count(ctx context.Context, q sink.Query) (uint64, error)
}

// Event is one event of a record's history.
type Event struct {
	ID         string
	Op         audit.Op
	CommitTime time.Time
	// BeforeSource is the event's before_source ("wal", "reconstructed",
	// "unknown"), "" when it has none.
	BeforeSource string
	// Key is the key the record has after the event (before it, for a
	// delete); null for a truncate.
	Key json.RawMessage
	// PrevKey is, for an update that changed the key, the key the record had
	// before it; nil otherwise.
	PrevKey json.RawMessage
	// After is the row after an insert, update or snapshot.
	After json.RawMessage
	// UnchangedToast lists the columns an update left out of After: large
	// values that did not change and that the server did not send.
	UnchangedToast []string
	// Record is the stored event, verbatim: it verifies against its hash.
	Record []byte
}

// Summary says what a scan saw.
type Summary struct {
	Events int // events of the record handed on
	// TableEvents counts the events of the record's table that name a
	// record (inserts, updates, deletes, snapshot records), as the table
	// index counts them, only when the record has no event: counting costs
	// a pass over the table's index entries, and the count only tells
	// something (a misspelt table, a key of the wrong shape) then.
	TableEvents int
}

// ErrKeyColumns is returned (wrapped) when no event matched and the key
// given does not have the columns of the table's key.
var ErrKeyColumns = errors.New("the key given does not name the table's key columns")

// Record calls fn for every event of the record ref names, oldest first:
// inserts, updates, deletes, snapshot records, and the truncates of its
// table while it existed. fn's error stops the scan and is returned.
func Record(src Source, ref Ref, fn func(*Event) error) (Summary, error) {
	return scan(src, ref, fn)
}

// State is what a record was at a moment.
type State uint8

const (
	// Unknown: the trail holds no event of the record at or before the
	// moment. It was not changed since cdcaudit began recording (and no
	// snapshot read it), or it did not exist yet.
	Unknown State = iota
	// Exists: the record existed; Image.Row is its row.
	Exists
	// Gone: the record did not exist: it was deleted, or its table
	// truncated.
	Gone
)

var stateNames = [...]string{Unknown: "unknown", Exists: "exists", Gone: "gone"}

func (s State) String() string { return stateNames[s] }

// Image is a record as of a moment.
type Image struct {
	Ref   Ref
	At    time.Time
	State State
	// Row is the record's row when it existed: the After of Event, with
	// the unchanged large values an update left out taken from the row
	// before it.
	Row json.RawMessage
	// Missing lists the columns of Row whose value is not known: unchanged
	// large values that the server did not send and that no earlier event
	// of the record holds.
	Missing []string
	// Event is the last event of the record at or before At, which decides
	// the state; nil when Unknown.
	Event *Event
	// Next is the record's first event after At, if any: the state held
	// until then.
	Next *Event
	// Seen is what the query found (its TableEvents only when the record
	// has no event).
	Seen Summary
}

// Reason says in a sentence where the state comes from.
func (im *Image) Reason() string {
	at := string(audit.AppendTime(nil, im.At))
	switch im.State {
	case Exists:
		if im.Event.Op == audit.OpSnapshot {
			return fmt.Sprintf("the row as a snapshot of its table read it (%s at %s)", im.Event.ID, timeText(im.Event.CommitTime))
		}
		return fmt.Sprintf("the row as written by %s %s at %s", im.Event.Op, im.Event.ID, timeText(im.Event.CommitTime))
	case Gone:
		if im.Event.Op == audit.OpTruncate {
			return fmt.Sprintf("its table was truncated by %s at %s", im.Event.ID, timeText(im.Event.CommitTime))
		}
		return fmt.Sprintf("deleted by %s at %s", im.Event.ID, timeText(im.Event.CommitTime))
	}
	why := "the trail holds no event of this record at or before " + at +
		": it was not changed since cdcaudit began recording its table and no snapshot read it, or it did not exist yet"
	if im.Next != nil {
		why += fmt.Sprintf("; its first event is %s %s at %s", im.Next.Op, im.Next.ID, timeText(im.Next.CommitTime))
	}
	return why
}

func timeText(t time.Time) string { return string(audit.AppendTime(nil, t)) }

// At returns the record as of t: the row written by its last insert,
// update or snapshot (in commit order) committed at or before t; Gone
// after a delete or a truncate of its table; Unknown before its first
// event.
//
// An update's large values that did not change and that the server did not
// send (its unchanged_toast) are taken from the record's row before it;
// those that no earlier event holds either are listed in Image.Missing.
//
// Every event of the record is read even for an early t: commit timestamps
// follow commit order only as closely as the server's clock and its commit
// sequence agree, so a later event may still carry a time at or before t.
func At(src Source, ref Ref, t time.Time) (*Image, error) {
	im := &Image{Ref: ref, At: t}
	var (
		row, atRow []Column // the record's row after each event; as of t
		missing    []string
		err        error
	)
	im.Seen, err = scan(src, ref, func(e *Event) error {
		switch e.Op {
		case audit.OpInsert, audit.OpSnapshot, audit.OpUpdate:
			after, err := Columns(e.After)
			if err != nil {
				return fmt.Errorf("history: event %s: after: %w", e.ID, err)
			}
			if e.Op == audit.OpUpdate {
				row, missing = fillToast(row, after, e.UnchangedToast)
			} else {
				row, missing = after, nil
			}
		default:
			row, missing = nil, nil
		}
		if e.CommitTime.After(t) {
			if im.Next == nil {
				im.Next = e
			}
			return nil
		}
		im.Next = nil // an event after Next in commit order, yet at or before t
		im.Event, atRow, im.Missing = e, row, missing
		im.State = Gone
		if e.Op == audit.OpInsert || e.Op == audit.OpUpdate || e.Op == audit.OpSnapshot {
			im.State = Exists
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if im.State == Exists {
		im.Row = encodeRow(atRow)
	}
	return im, nil
}

// fillToast is the row after an update: its after-image, with the
// unchanged TOASTed columns it lacks taken from prev (the row before it,
// nil when unknown), in prev's column order; missing lists those prev does
// not hold either.
func fillToast(prev, after []Column, toast []string) (row []Column, missing []string) {
	if len(toast) == 0 {
		return after, nil
	}
	find := func(cs []Column, name string) int {
		return slices.IndexFunc(cs, func(c Column) bool { return c.Name == name })
	}
	for _, c := range prev {
		switch i := find(after, c.Name); {
		case i >= 0:
			row = append(row, after[i])
		case slices.Contains(toast, c.Name):
			row = append(row, c)
		} // else: a column dropped since
	}
	for _, c := range after {
		if find(prev, c.Name) < 0 {
			row = append(row, c) // a column added since, or prev unknown
		}
	}
	for _, name := range toast {
		if find(row, name) < 0 {
			missing = append(missing, name)
		}
	}
	return row, missing
}

// encodeRow is the JSON object of a row, values as stored.
func encodeRow(row []Column) json.RawMessage {
	b := []byte{'{'}
	for i, c := range row {
		if i > 0 {
			b = append(b, ',')
		}
		b = audit.AppendString(b, c.Name)
		b = append(append(b, ':'), c.Value...)
	}
	return append(b, '}')
}

// stored is the part of a stored event history reads.
type stored struct {
	ID             string          `json:"id"`
	CommitTime     time.Time       `json:"commit_time"`
	Schema         string          `json:"schema"`
	Table          string          `json:"table"`
	Op             string          `json:"op"`
	Key            json.RawMessage `json:"key"`
	Before         json.RawMessage `json:"before"`
	After          json.RawMessage `json:"after"`
	UnchangedToast []string        `json:"unchanged_toast"`
	BeforeSource   string          `json:"before_source"`
}

// recordOps are the operations of events that name a record.
var recordOps = []audit.Op{audit.OpInsert, audit.OpUpdate, audit.OpDelete, audit.OpSnapshot}

// errMoved stops a query of the record's events when the record moved to
// a key of another record term.
var errMoved = errors.New("history: the record moved to another key")

// scan hands fn the record's events in commit order, following it as the
// package comment says. It reads the record's events through the record
// index, and its table's truncates through the table index: never the
// events of other records. It counts the table's events (TableEvents)
// only when the record has none.
func scan(src Source, ref Ref, fn func(*Event) error) (Summary, error) {
	var sum Summary
	if ref.Table == "" || len(ref.Key) == 0 {
		return sum, errors.New("history: a record needs a table and a key")
	}
	ctx := context.Background()
	table := []string{exactGlob(ref.Schema + "." + ref.Table)}
	truncates, err := tableTruncates(ctx, src, ref, table)
	if err != nil {
		return sum, err
	}

	var (
		cur  Key    // the record's key while it exists; nil: look for ref.Key
		live bool   // the record exists (after its last event)
		pos  []byte // the store key of the last event handled
	)
	// The record's events are those of one record term at a time: that of
	// the key asked for, or, once the record moved, that of its key then.
	want := ref
	// truncatesBefore hands on the table's truncates that come before the
	// store key k (all of them for nil) while the record exists.
	truncatesBefore := func(k []byte) error {
		for len(truncates) > 0 && (k == nil || bytes.Compare(truncates[0].key, k) < 0) {
			t := truncates[0]
			truncates = truncates[1:]
			if !live {
				continue
			}
			cur, live = nil, false
			sum.Events++
			if err := fn(newEvent(&t.s, audit.OpTruncate, t.record, nil)); err != nil {
				return err
			}
			pos = t.key
			if err := follow(&want, ref, cur); err != nil {
				return err // gone from a key it had moved to: back to the key asked for
			}
		}
		return nil
	}
	for {
		_, err := src.Query(ctx, sink.Query{Record: &want, Ops: recordOps}, func(k, rec []byte) error {
			if pos != nil && bytes.Compare(k, pos) <= 0 {
				return nil // handled under the record's previous key
			}
			if err := truncatesBefore(k); err != nil {
				return err
			}
			pos = append(pos[:0], k...)
			var s stored
			if err := json.Unmarshal(rec, &s); err != nil {
				return fmt.Errorf("history: event at key %x: %w: %v", k, audit.ErrMalformed, err)
			}
			if s.Schema != ref.Schema || s.Table != ref.Table {
				return nil
			}
			op, err := audit.ParseOp(s.Op)
			if err != nil {
				return fmt.Errorf("history: event at key %x: %w", k, err)
			}
			key, prev, prevKey, err := keysOf(&s, op)
			if err != nil {
				return fmt.Errorf("history: event at key %x: %w", k, err)
			}
			if key == nil {
				return nil
			}
			match := ref.Key.Matches
			if cur != nil {
				match = func(k Key) bool { return slices.Equal(cur, k) }
			}
			if !match(prev) && !match(key) {
				return nil
			}
			if op == audit.OpDelete {
				cur, live = nil, false
			} else {
				cur, live = key, true
			}
			sum.Events++
			if err := fn(newEvent(&s, op, rec, prevKey)); err != nil {
				return err
			}
			return follow(&want, ref, cur)
		})
		if err == nil {
			err = truncatesBefore(nil)
		}
		if errors.Is(err, errMoved) {
			continue
		}
		if err != nil {
			return sum, err
		}
		break
	}
	if sum.Events > 0 {
		return sum, nil
	}
	n, err := src.Count(ctx, sink.Query{Tables: table, Ops: recordOps})
	if err != nil {
		return sum, fmt.Errorf("history: %w", err)
	}
	sum.TableEvents = int(n)
	if sum.TableEvents > 0 {
		columns, err := keyColumns(ctx, src, ref, table)
		if err != nil {
			return sum, err
		}
		if columns != nil && !shapeFits(ref.Key, columns) {
			return sum, fmt.Errorf("%w: the key of %s.%s is (%s): give it as %s", ErrKeyColumns, ref.Schema, ref.Table,
				strings.Join(columns, ", "), keyExample(columns))
		}
	}
	return sum, nil
}

// follow points want at the record term that holds the record's next
// events: its key's while it exists, the key asked for once it is gone.
// It returns errMoved when that is another term than want's.
func follow(want *Ref, ref Ref, cur Key) error {
	next := ref
	if cur != nil {
		next.Key = cur
	}
	if bytes.Equal(next.Term(), want.Term()) {
		return nil
	}
	*want = next
	return errMoved
}

// storedEvent is a stored event with its store key.
type storedEvent struct {
	key, record []byte
	s           stored
}

// tableTruncates returns the truncates of ref's table, in commit order.
func tableTruncates(ctx context.Context, src Source, ref Ref, table []string) ([]storedEvent, error) {
	var out []storedEvent
	_, err := src.Query(ctx, sink.Query{Tables: table, Ops: []audit.Op{audit.OpTruncate}}, func(k, rec []byte) error {
		t := storedEvent{key: bytes.Clone(k), record: bytes.Clone(rec)}
		if err := json.Unmarshal(rec, &t.s); err != nil {
			return fmt.Errorf("history: event at key %x: %w: %v", k, audit.ErrMalformed, err)
		}
		if t.s.Schema == ref.Schema && t.s.Table == ref.Table {
			out = append(out, t)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return out, nil
}

// errFound stops a query once it found what it looked for.
var errFound = errors.New("found")

// keyColumns returns the key columns of ref's table as its latest event
// with a key has them; nil when it has none.
func keyColumns(ctx context.Context, src Source, ref Ref, table []string) ([]string, error) {
	var columns []string
	_, err := src.Query(ctx, sink.Query{Tables: table, Ops: recordOps, Desc: true}, func(k, rec []byte) error {
		var s stored
		if err := json.Unmarshal(rec, &s); err != nil {
			return fmt.Errorf("history: event at key %x: %w: %v", k, audit.ErrMalformed, err)
		}
		if s.Schema != ref.Schema || s.Table != ref.Table {
			return nil
		}
		key, names, err := keyOf(s.Key)
		if err != nil {
			return fmt.Errorf("history: event at key %x: key: %w", k, err)
		}
		if key == nil {
			return nil
		}
		columns = names
		return errFound
	})
	if err != nil && !errors.Is(err, errFound) {
		return nil, fmt.Errorf("history: %w", err)
	}
	return columns, nil
}

// exactGlob is a table glob (path.Match) that matches name only.
func exactGlob(name string) string {
	var b strings.Builder
	for _, r := range name {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func newEvent(s *stored, op audit.Op, rec []byte, prevKey json.RawMessage) *Event {
	e := &Event{ID: s.ID, Op: op, CommitTime: s.CommitTime, BeforeSource: s.BeforeSource,
		Key: s.Key, PrevKey: prevKey, Record: append([]byte(nil), rec...)}
	if op == audit.OpInsert || op == audit.OpUpdate || op == audit.OpSnapshot {
		e.After, e.UnchangedToast = s.After, s.UnchangedToast
	}
	return e
}

// keyOf decodes an event's key: its text values sorted by column, and its
// column names in key order; nil for a null key.
func keyOf(raw json.RawMessage) (Key, []string, error) {
	if audit.IsNull(raw) {
		return nil, nil, nil
	}
	members, err := Columns(raw)
	if err != nil {
		return nil, nil, err
	}
	k := make(Key, 0, len(members))
	names := make([]string, 0, len(members))
	for _, m := range members {
		text, _ := valueText(m.Value) // a null or structured value never matches a given key
		k = append(k, KeyValue{Column: m.Name, Text: text})
		names = append(names, m.Name)
	}
	sortKey(k)
	return k, names, nil
}

// keysOf reads an event's key (nil for a null key) and the key the record
// had before it: for an update whose before-image holds other values of
// the key columns, those, with the before-image's key object (prevKey);
// else key itself. Each row is decoded once.
func keysOf(s *stored, op audit.Op) (key, prev Key, prevKey json.RawMessage, err error) {
	key, names, err := keyOf(s.Key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("key: %w", err)
	}
	if key == nil || op != audit.OpUpdate || audit.IsNull(s.Before) {
		return key, key, nil, nil
	}
	before, err := Columns(s.Before)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("before: %w", err)
	}
	// The key columns in key order; none when the before-image lacks one.
	cols := make([]Column, 0, len(names))
	for _, n := range names {
		i := slices.IndexFunc(before, func(m Column) bool { return m.Name == n })
		if i < 0 {
			return key, key, nil, nil
		}
		cols = append(cols, before[i])
	}
	prev = make(Key, len(cols))
	for i, c := range cols {
		text, _ := valueText(c.Value)
		prev[i] = KeyValue{Column: c.Name, Text: text}
	}
	sortKey(prev)
	if slices.Equal(prev, key) {
		return key, key, nil, nil
	}
	return key, prev, encodeRow(cols), nil
}

// Column is one column of a row read back from an event.
type Column struct {
	Name  string
	Value json.RawMessage // as the event encodes it
}

// Columns decodes an event's row (key, before, after) into its columns, in
// order; nil for null.
func Columns(row json.RawMessage) ([]Column, error) {
	if audit.IsNull(row) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(row))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object: %.40s", row)
	}
	var cs []Column
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		cs = append(cs, Column{name, v})
	}
	return cs, nil
}

// shapeFits reports whether a key given could name a key of these columns.
func shapeFits(k Key, columns []string) bool {
	if len(k) == 1 && k[0].Column == "" {
		return len(columns) == 1
	}
	if len(k) != len(columns) {
		return false
	}
	for _, v := range k {
		if !slices.Contains(columns, v.Column) {
			return false
		}
	}
	return true
}

// keyExample shows how to give a key of these columns.
func keyExample(columns []string) string {
	if len(columns) == 1 {
		return "a single value, e.g. 42, or " + `{"` + columns[0] + `":42}`
	}
	parts := make([]string, len(columns))
	for i, c := range columns {
		parts[i] = string(audit.AppendString(nil, c)) + ":…"
	}
	return "a JSON object, {" + strings.Join(parts, ",") + "}"
}
