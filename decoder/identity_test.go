package decoder

import (
	"testing"

	"github.com/cdcaudit/cdcaudit/audit"
)

// identityRecorder notes FullIdentity as each event is handed over.
type identityRecorder struct {
	recorder
	d    *Decoder
	full []bool
}

func (r *identityRecorder) Event(tx *Tx, e *audit.Event) error {
	r.full = append(r.full, r.d.FullIdentity())
	return r.recorder.Event(tx, e)
}

// TestFullIdentityFollowsRelation: FullIdentity follows the table's
// Relation message change by change: an ALTER … REPLICA IDENTITY sends it
// again, mid-transaction too.
func TestFullIdentityFollowsRelation(t *testing.T) {
	d := New("db", nil)
	r := &identityRecorder{recorder: recorder{t: t}, d: d}
	cols := []col{{"id", oidInt4, true}, {"v", oidText, false}}
	full := append([]col{}, cols...)
	full[1].key = true
	feed(t, d, r, 0x100,
		mRelation(1, "public", "t", 'd', cols...),
		mBegin(0x200, commitTime, 7),
		mInsert(1, txt("1"), txt("a")),
		mRelation(1, "public", "t", 'f', full...),
		mUpdate(1, 'O', []val{txt("1"), txt("a")}, []val{txt("1"), txt("b")}),
		mRelation(1, "public", "t", 'i', cols...),
		mDelete(1, 'K', txt("1"), val{'n', ""}),
		mTruncate(0, 1),
		mCommit(0x200, 0x210, commitTime),
	)
	if want := []bool{false, true, false, false}; len(r.full) != len(want) || r.full[0] || !r.full[1] || r.full[2] || r.full[3] {
		t.Fatalf("FullIdentity per event: %v, want %v", r.full, want)
	}
	if d.FullIdentity() {
		t.Fatal("FullIdentity outside an event")
	}
}
