package decoder

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/cdcaudit/cdcaudit/audit"
)

// seedMessages returns one well-formed message of every kind.
func seedMessages() [][]byte {
	return [][]byte{
		mRelation(16384, "public", "t", 'd', col{"id", oidInt4, true}),
		mBegin(0x10, commitTime, 1),
		mCommit(0x10, 0x20, commitTime),
		mOrigin(0x5, "origin"),
		mType(90001, "public", "mood"),
		mInsert(16384, txt("1")),
		mUpdate(16384, 'K', []val{txt("1")}, []val{txt("2")}),
		mUpdate(16384, 'O', []val{txt("1")}, []val{toast}),
		mUpdate(16384, 0, nil, []val{bin("\x01")}),
		mDelete(16384, 'O', null),
		mTruncate(3, 16384, 16384),
		mMessage(true, 0x11, "cdcaudit", []byte(`{"uid":1}`)),
	}
}

// seedStreams are message sequences that exercise every feature.
func seedStreams() [][][]byte {
	types := []col{{"id", oidInt4, true}, {"b", oidBool, false}, {"i8", oidInt8, false}, {"f", oidFloat8, false},
		{"n", oidNumeric, false}, {"j", oidJSON, false}, {"jb", oidJSONB, false}, {"s", oidText, false}, {"e", 90001, false}}
	full := []col{{"a", oidInt4, true}, {"b", oidText, true}, {"c", oidFloat4, true}}
	return [][][]byte{
		{
			mRelation(1, "public", "vals", 'd', types...),
			mType(90001, "public", "mood"),
			mBegin(0x100, commitTime, 5),
			mInsert(1, txt("1"), txt("t"), txt("-9"), txt("NaN"), txt("1.50"), txt("{\n\"a\": 1}"), txt(`[1, "x"]`), txt("q\"\xff\n"), txt("happy")),
			mUpdate(1, 'K', []val{txt("1"), null, null, null, null, null, null, null, null},
				[]val{txt("2"), txt("f"), null, txt("1e+20"), toast, txt("{bad"), bin("\x00"), toast, txt("sad")}),
			mDelete(1, 'K', txt("2"), null, null, null, null, null, null, null, null),
			mCommit(0x100, 0x180, commitTime),
		},
		{
			mMessage(false, 0x1, "cdcaudit", []byte("hello")),
			mBegin(0x200, commitTime, 6),
			mOrigin(0x3, "o"),
			mRelation(2, "", "full", 'f', full...),
			mMessage(true, 0x201, "cdcaudit", []byte(`{"uid":6}`)),
			mInsert(2, txt("1"), txt("x"), txt("-0")),
			mUpdate(2, 'O', []val{txt("1"), txt("x"), txt("-0")}, []val{txt("1"), toast, txt("Infinity")}),
			{'A', 0, 0, 0, 6},
			mRelation(2, "", "full", 'f', full[0], col{"d", oidText, true}),
			mUpdate(2, 'O', []val{txt("1"), null}, []val{txt("1"), txt("y")}),
			mRelation(3, "s", "other", 'n', col{"a", oidInt4, false}, col{"b", oidInt4, false}),
			mInsert(3, txt("1"), txt("2")),
			mTruncate(1, 2, 3),
			mCommit(0x200, 0x280, commitTime),
		},
	}
}

// frame encodes messages for FuzzDecode: each one prefixed with its length
// as a big-endian uint16.
func frame(msgs ...[]byte) []byte {
	var b []byte
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
		b = append(b, m...)
	}
	return b
}

// fuzzResolver answers deterministically, including a key column the
// relation does not have.
type fuzzResolver struct{}

func (fuzzResolver) PrimaryKey(_ context.Context, oid uint32) ([]string, error) {
	switch oid % 4 {
	case 0:
		return nil, nil
	case 1:
		return []string{"id"}, nil
	case 2:
		return []string{"b", "a"}, nil
	default:
		return []string{"zz"}, nil
	}
}

// fuzzHandler checks the invariants of every event, and keeps them with
// their records to check later that nothing changed them.
type fuzzHandler struct {
	t       *testing.T
	ordinal uint32
	events  []*audit.Event
	records [][]byte
	recycle *Decoder // when set, recycled at every commit (its events are not kept)
}

func (h *fuzzHandler) Begin(*Tx) error { h.ordinal = 0; return nil }
func (h *fuzzHandler) Commit(*Tx) error {
	if h.recycle != nil {
		h.recycle.Recycle()
	}
	return nil
}
func (h *fuzzHandler) Message(*Tx, Message) error { return nil }
func (h *fuzzHandler) Event(tx *Tx, e *audit.Event) error {
	if tx == nil || e.CommitLSN != tx.CommitLSN || e.XID != tx.XID {
		h.t.Fatalf("event %+v of tx %+v", e, tx)
	}
	h.ordinal++
	if e.Ordinal != h.ordinal {
		h.t.Fatalf("ordinal %d, want %d", e.Ordinal, h.ordinal)
	}
	for _, r := range []audit.Row{e.Key, e.Before, e.After} {
		for _, c := range r {
			if !json.Valid(c.Value) {
				h.t.Fatalf("column %q: value %q is not JSON", c.Name, c.Value)
			}
		}
	}
	if e.Op == audit.OpTruncate && (e.Key != nil || e.Before != nil || e.After != nil) {
		h.t.Fatalf("truncate with rows: %+v", e)
	}
	if e.Changed == nil && e.Op != audit.OpUpdate {
		h.t.Fatalf("%s with nil Changed", e.Op)
	}
	rec := seal(e)
	if !json.Valid(rec) {
		h.t.Fatalf("record is not valid JSON:\n%s", rec)
	}
	if h.recycle == nil {
		h.events = append(h.events, e)
	}
	h.records = append(h.records, rec)
	return nil
}

// FuzzDecode feeds arbitrary message sequences (see frame; an empty frame
// resets the decoder) to one Decoder: it must never panic, return only
// ErrUnknownMessage or ErrMalformed errors, and every event it emits must
// make a valid JSON record, which must not change afterwards (each message
// is decoded from a buffer that is then overwritten). A second decoder,
// recycled at every commit, must make the same records.
func FuzzDecode(f *testing.F) {
	for _, s := range seedStreams() {
		f.Add(frame(s...))
	}
	f.Add(frame(seedMessages()...))
	f.Add(frame(append(seedMessages(), nil, mBegin(1, commitTime, 1), mInsert(16384, txt("1")))...))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, d2 := New("db", fuzzResolver{}), New("db", fuzzResolver{})
		h, h2 := &fuzzHandler{t: t}, &fuzzHandler{t: t, recycle: d2}
		lsn := uint64(0)
		var buf []byte
		for len(data) >= 2 {
			n := int(binary.BigEndian.Uint16(data))
			data = data[2:]
			n = min(n, len(data))
			msg := data[:n]
			data = data[n:]
			lsn++
			if n == 0 {
				d.Reset()
				d2.Reset()
				continue
			}
			buf = append(buf[:0], msg...)
			err := d.Decode(context.Background(), lsn, buf, h)
			if err != nil && !errors.Is(err, ErrUnknownMessage) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			buf = append(buf[:0], msg...)
			if err2 := d2.Decode(context.Background(), lsn, buf, h2); (err == nil) != (err2 == nil) {
				t.Fatalf("recycled decoder: error %v, the other %v", err2, err)
			}
			for i := range buf {
				buf[i] = 0xAA
			}
		}
		if !slices.EqualFunc(h.records, h2.records, bytes.Equal) {
			t.Fatalf("the recycled decoder made other records:\n%q\nwant\n%q", h2.records, h.records)
		}
		for i, e := range h.events {
			if rec := seal(e); !bytes.Equal(rec, h.records[i]) {
				t.Fatalf("event changed after decoding:\n%s\nwas\n%s", rec, h.records[i])
			}
		}
	})
}

// The seed streams decode without error (besides the unknown message).
func TestSeedStreams(t *testing.T) {
	for i, s := range seedStreams() {
		d := New("db", fuzzResolver{})
		h := &recorder{t: t}
		for j, m := range s {
			if err := decodeScribbled(d, h, uint64(j+1), m); err != nil && !errors.Is(err, ErrUnknownMessage) {
				t.Errorf("stream %d message %d: %v", i, j, err)
			}
		}
		if len(h.events) == 0 || len(h.commits) != 1 {
			t.Errorf("stream %d: %d events, %d commits", i, len(h.events), len(h.commits))
		}
	}
}
