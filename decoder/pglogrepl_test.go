package decoder

import (
	"testing"

	"github.com/jackc/pglogrepl"
)

// The test builder agrees with an independent implementation of pgoutput
// v1, so the decoder and its tests do not share a misreading.
func TestBuilderAgreesWithPglogrepl(t *testing.T) {
	parse := func(b []byte) pglogrepl.Message {
		t.Helper()
		m, err := pglogrepl.Parse(b)
		if err != nil {
			t.Fatalf("pglogrepl cannot parse %q: %v", b, err)
		}
		return m
	}
	if m := parse(mBegin(0x10, commitTime, 7)).(*pglogrepl.BeginMessage); m.FinalLSN != 0x10 || m.Xid != 7 || !m.CommitTime.Equal(commitTime) {
		t.Errorf("begin %+v", m)
	}
	if m := parse(mCommit(0x10, 0x20, commitTime)).(*pglogrepl.CommitMessage); m.CommitLSN != 0x10 || m.TransactionEndLSN != 0x20 || !m.CommitTime.Equal(commitTime) {
		t.Errorf("commit %+v", m)
	}
	r := parse(mRelation(5, "public", "t", 'f', col{"id", oidInt4, true}, col{"v", oidText, false})).(*pglogrepl.RelationMessage)
	if r.RelationID != 5 || r.Namespace != "public" || r.RelationName != "t" || r.ReplicaIdentity != 'f' || r.ColumnNum != 2 ||
		r.Columns[0].Flags != 1 || r.Columns[0].Name != "id" || r.Columns[0].DataType != oidInt4 ||
		r.Columns[1].Flags != 0 || r.Columns[1].Name != "v" || r.Columns[1].DataType != oidText {
		t.Errorf("relation %+v", r)
	}
	u := parse(mUpdate(5, 'O', []val{txt("1"), null}, []val{txt("1"), toast})).(*pglogrepl.UpdateMessage)
	if u.RelationID != 5 || u.OldTupleType != 'O' || u.OldTuple.ColumnNum != 2 || string(u.OldTuple.Columns[0].Data) != "1" ||
		u.OldTuple.Columns[1].DataType != 'n' || u.NewTuple.Columns[1].DataType != 'u' {
		t.Errorf("update %+v", u)
	}
	if u := parse(mUpdate(5, 0, nil, []val{bin("ab")})).(*pglogrepl.UpdateMessage); u.OldTuple != nil || u.NewTuple.Columns[0].DataType != 'b' || string(u.NewTuple.Columns[0].Data) != "ab" {
		t.Errorf("update %+v", u)
	}
	if i := parse(mInsert(5, txt("x"))).(*pglogrepl.InsertMessage); i.RelationID != 5 || string(i.Tuple.Columns[0].Data) != "x" {
		t.Errorf("insert %+v", i)
	}
	if d := parse(mDelete(5, 'K', txt("1"), null)).(*pglogrepl.DeleteMessage); d.RelationID != 5 || d.OldTupleType != 'K' || d.OldTuple.ColumnNum != 2 {
		t.Errorf("delete %+v", d)
	}
	if tr := parse(mTruncate(3, 5, 6)).(*pglogrepl.TruncateMessage); tr.RelationNum != 2 || tr.Option != 3 || tr.RelationIDs[1] != 6 {
		t.Errorf("truncate %+v", tr)
	}
	if m := parse(mMessage(true, 0x30, "cdcaudit", []byte("hi"))).(*pglogrepl.LogicalDecodingMessage); !m.Transactional || m.LSN != 0x30 || m.Prefix != "cdcaudit" || string(m.Content) != "hi" {
		t.Errorf("message %+v", m)
	}
	if y := parse(mType(9, "public", "mood")).(*pglogrepl.TypeMessage); y.DataType != 9 || y.Namespace != "public" || y.Name != "mood" {
		t.Errorf("type %+v", y)
	}
	if o := parse(mOrigin(0x40, "n1")).(*pglogrepl.OriginMessage); o.CommitLSN != 0x40 || o.Name != "n1" {
		t.Errorf("origin %+v", o)
	}
}
