package decoder

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
)

// partner(id int4 key, name text, active bool, amount numeric, note text)
func partnerCols(keyFlags ...bool) []col {
	cols := []col{{"id", oidInt4, false}, {"name", oidText, false}, {"active", oidBool, false},
		{"amount", oidNumeric, false}, {"note", oidText, false}}
	for i, k := range keyFlags {
		cols[i].key = k
	}
	return cols
}

func TestDefaultIdentity(t *testing.T) {
	d := New("odoo", nil)
	h := &recorder{t: t}
	p := func(vals ...val) []val { return vals }
	feed(t, d, h, 0x16B3700,
		mRelation(16384, "public", "res_partner", 'd', partnerCols(true)...),
		mBegin(0x16B3800, commitTime, 741),
		mOrigin(0x1, "node1"),
		mInsert(16384, txt("1"), txt("Acme"), txt("t"), txt("120.00"), null),
		// key unchanged: no old tuple
		mUpdate(16384, 0, nil, p(txt("1"), txt("Acme SA"), txt("f"), txt("120.00"), txt("x"))),
		// key changed: 'K' tuple, non-key positions are placeholders
		mUpdate(16384, 'K', p(txt("1"), null, null, null, null), p(txt("2"), txt("Acme SA"), txt("f"), txt("120.00"), txt("x"))),
		mDelete(16384, 'K', txt("2"), null, null, null, null),
		mCommit(0x16B3800, 0x16B3830, commitTime),
	)
	if len(h.begins) != 1 || len(h.commits) != 1 || h.begins[0] != h.commits[0] {
		t.Fatalf("begins %d commits %d", len(h.begins), len(h.commits))
	}
	tx := h.commits[0]
	if tx.XID != 741 || tx.CommitLSN != 0x16B3800 || tx.EndLSN != 0x16B3830 || !tx.CommitTime.Equal(commitTime) {
		t.Errorf("tx = %+v", tx)
	}
	if d.InTransaction() {
		t.Error("InTransaction after commit")
	}
	if len(h.events) != 4 {
		t.Fatalf("%d events", len(h.events))
	}
	for i, e := range h.events {
		if e.Ordinal != uint32(i+1) || e.LSN != 0x16B3703+uint64(i) || e.CommitLSN != 0x16B3800 || e.XID != 741 ||
			!e.CommitTime.Equal(commitTime) || e.CommitTime.Location() != time.UTC ||
			e.Database != "odoo" || e.Model != "" || e.Actor != (audit.Actor{}) || h.evTx[i] != tx {
			t.Errorf("event %d: %+v", i, e)
		}
	}
	if id := h.events[2].ID(); id != "00000000016B3800-000003" {
		t.Errorf("id = %s", id)
	}
	checkShape(t, h.events[0], shape{Op: audit.OpInsert, Table: "public.res_partner",
		Key:     `{"id":1}`,
		Before:  `null`,
		After:   `{"id":1,"name":"Acme","active":true,"amount":"120.00","note":null}`,
		Changed: `["id","name","active","amount","note"]`})
	checkShape(t, h.events[1], shape{Op: audit.OpUpdate, Table: "public.res_partner",
		Key:     `{"id":1}`,
		Before:  `null`,
		After:   `{"id":1,"name":"Acme SA","active":false,"amount":"120.00","note":"x"}`,
		Changed: `null`})
	checkShape(t, h.events[2], shape{Op: audit.OpUpdate, Table: "public.res_partner",
		Key:     `{"id":2}`,
		Before:  `{"id":1}`,
		After:   `{"id":2,"name":"Acme SA","active":false,"amount":"120.00","note":"x"}`,
		Changed: `null`})
	checkShape(t, h.events[3], shape{Op: audit.OpDelete, Table: "public.res_partner",
		Key:     `{"id":2}`,
		Before:  `{"id":2}`,
		After:   `null`,
		Changed: `[]`})
}

func TestFullIdentity(t *testing.T) {
	res := &resolver{pk: map[uint32][]string{16384: {"id"}, 16390: {"b", "a"}}}
	d := New("odoo", res)
	h := &recorder{t: t}
	all := partnerCols(true, true, true, true, true)
	old := []val{txt("1"), txt("Acme"), txt("t"), txt("120.00"), null}
	nw := []val{txt("1"), txt("Acme"), txt("f"), txt("99.50"), txt("vip")}
	feed(t, d, h, 100,
		mBegin(0x2000, commitTime, 7),
		mRelation(16384, "public", "res_partner", 'f', all...),
		mInsert(16384, old...),
		mUpdate(16384, 'O', old, nw),
		mUpdate(16384, 'O', nw, nw), // a no-op update
		mDelete(16384, 'O', nw...),
		// composite primary key, reported in key order
		mRelation(16390, "", "pair", 'f', col{"a", oidInt4, true}, col{"b", oidText, true}),
		mInsert(16390, txt("1"), txt("x")),
		// FULL without primary key: no key
		mRelation(16391, "public", "log", 'f', col{"msg", oidText, true}),
		mInsert(16391, txt("hello")),
		mCommit(0x2000, 0x2030, commitTime),
	)
	if len(h.events) != 6 {
		t.Fatalf("%d events", len(h.events))
	}
	checkShape(t, h.events[0], shape{Op: audit.OpInsert, Table: "public.res_partner",
		Key: `{"id":1}`, Before: `null`,
		After:   `{"id":1,"name":"Acme","active":true,"amount":"120.00","note":null}`,
		Changed: `["id","name","active","amount","note"]`})
	checkShape(t, h.events[1], shape{Op: audit.OpUpdate, Table: "public.res_partner",
		Key:     `{"id":1}`,
		Before:  `{"id":1,"name":"Acme","active":true,"amount":"120.00","note":null}`,
		After:   `{"id":1,"name":"Acme","active":false,"amount":"99.50","note":"vip"}`,
		Changed: `["active","amount","note"]`})
	checkShape(t, h.events[2], shape{Op: audit.OpUpdate, Table: "public.res_partner",
		Key:     `{"id":1}`,
		Before:  `{"id":1,"name":"Acme","active":false,"amount":"99.50","note":"vip"}`,
		After:   `{"id":1,"name":"Acme","active":false,"amount":"99.50","note":"vip"}`,
		Changed: `[]`})
	checkShape(t, h.events[3], shape{Op: audit.OpDelete, Table: "public.res_partner",
		Key:     `{"id":1}`,
		Before:  `{"id":1,"name":"Acme","active":false,"amount":"99.50","note":"vip"}`,
		After:   `null`,
		Changed: `[]`})
	checkShape(t, h.events[4], shape{Op: audit.OpInsert, Table: "pg_catalog.pair",
		Key: `{"b":"x","a":1}`, Before: `null`, After: `{"a":1,"b":"x"}`, Changed: `["a","b"]`})
	checkShape(t, h.events[5], shape{Op: audit.OpInsert, Table: "public.log",
		Key: `null`, Before: `null`, After: `{"msg":"hello"}`, Changed: `["msg"]`})
	// Asked once per Relation message, not per change.
	if res.calls[16384] != 1 || res.calls[16390] != 1 || res.calls[16391] != 1 {
		t.Errorf("resolver calls = %v", res.calls)
	}
	// A new Relation message (e.g. after ALTER TABLE … ADD PRIMARY KEY) asks again.
	res.pk[16391] = []string{"msg"}
	feed(t, d, h, 200,
		mBegin(0x3000, commitTime, 8),
		mRelation(16391, "public", "log", 'f', col{"msg", oidText, true}),
		mInsert(16391, txt("again")),
		mCommit(0x3000, 0x3030, commitTime))
	if res.calls[16391] != 2 {
		t.Errorf("resolver calls = %v", res.calls)
	}
	checkShape(t, h.events[6], shape{Op: audit.OpInsert, Table: "public.log",
		Key: `{"msg":"again"}`, Before: `null`, After: `{"msg":"again"}`, Changed: `["msg"]`})
}

func TestIndexIdentity(t *testing.T) {
	d := New("db", nil)
	h := &recorder{t: t}
	// REPLICA IDENTITY USING INDEX on (code): only code is flagged.
	cols := []col{{"id", oidInt8, false}, {"code", oidVarchar, true}, {"qty", oidInt4, false}}
	feed(t, d, h, 1,
		mRelation(20000, "stock", "item", 'i', cols...),
		mBegin(0x10, commitTime, 1),
		mUpdate(20000, 'K', []val{null, txt("A-1"), null}, []val{txt("5"), txt("A-2"), txt("3")}),
		mUpdate(20000, 0, nil, []val{txt("5"), txt("A-2"), txt("4")}),
		mDelete(20000, 'K', null, txt("A-2"), null),
		mCommit(0x10, 0x20, commitTime))
	checkShape(t, h.events[0], shape{Op: audit.OpUpdate, Table: "stock.item",
		Key: `{"code":"A-2"}`, Before: `{"code":"A-1"}`, After: `{"id":5,"code":"A-2","qty":3}`, Changed: `null`})
	checkShape(t, h.events[1], shape{Op: audit.OpUpdate, Table: "stock.item",
		Key: `{"code":"A-2"}`, Before: `null`, After: `{"id":5,"code":"A-2","qty":4}`, Changed: `null`})
	checkShape(t, h.events[2], shape{Op: audit.OpDelete, Table: "stock.item",
		Key: `{"code":"A-2"}`, Before: `{"code":"A-2"}`, After: `null`, Changed: `[]`})
}

func TestNothingIdentity(t *testing.T) {
	res := &resolver{pk: map[uint32][]string{30000: {"id"}}}
	d := New("db", res)
	h := &recorder{t: t}
	feed(t, d, h, 1,
		mRelation(30000, "public", "t", 'n', col{"id", oidInt4, false}, col{"v", oidText, false}),
		mRelation(30001, "public", "nokey", 'n', col{"v", oidText, false}),
		mBegin(0x10, commitTime, 1),
		mUpdate(30000, 0, nil, []val{txt("9"), txt("x")}),
		mInsert(30001, txt("y")),
		mCommit(0x10, 0x20, commitTime))
	checkShape(t, h.events[0], shape{Op: audit.OpUpdate, Table: "public.t",
		Key: `{"id":9}`, Before: `null`, After: `{"id":9,"v":"x"}`, Changed: `null`})
	checkShape(t, h.events[1], shape{Op: audit.OpInsert, Table: "public.nokey",
		Key: `null`, Before: `null`, After: `{"v":"y"}`, Changed: `["v"]`})
	// DEFAULT identity on a table without primary key flags nothing: no key.
	feed(t, d, h, 10,
		mRelation(30002, "public", "heap", 'd', col{"v", oidText, false}),
		mBegin(0x30, commitTime, 2),
		mInsert(30002, txt("z")),
		mCommit(0x30, 0x40, commitTime))
	checkShape(t, h.events[2], shape{Op: audit.OpInsert, Table: "public.heap",
		Key: `null`, Before: `null`, After: `{"v":"z"}`, Changed: `["v"]`})
	if res.calls[30002] != 0 {
		t.Error("resolver asked for a DEFAULT relation")
	}
}

func TestToast(t *testing.T) {
	res := &resolver{pk: map[uint32][]string{1: {"id"}}}
	d := New("db", res)
	h := &recorder{t: t}
	full := []col{{"id", oidInt4, true}, {"body", oidText, true}, {"n", oidInt4, true}}
	def := []col{{"id", oidInt4, true}, {"body", oidText, false}, {"n", oidInt4, false}}
	keyToast := []col{{"id", oidInt4, false}, {"code", oidText, true}, {"n", oidInt4, false}}
	feed(t, d, h, 1,
		mRelation(1, "public", "full", 'f', full...),
		mRelation(2, "public", "def", 'd', def...),
		mRelation(3, "public", "keytoast", 'i', keyToast...),
		mBegin(0x10, commitTime, 1),
		// FULL: the unchanged TOASTed body is filled from the before-image.
		mUpdate(1, 'O', []val{txt("1"), txt("long text"), txt("1")}, []val{txt("1"), toast, txt("2")}),
		// FULL whose old tuple itself lacks the value: before incomplete.
		mUpdate(1, 'O', []val{txt("1"), toast, txt("2")}, []val{txt("1"), toast, txt("3")}),
		// DEFAULT without old tuple: left out, listed, never null.
		mUpdate(2, 0, nil, []val{txt("1"), toast, txt("2")}),
		// DEFAULT with a key change: the 'K' tuple does not have body either.
		mUpdate(2, 'K', []val{txt("1"), null, null}, []val{txt("7"), toast, txt("2")}),
		// The key column itself unchanged TOAST: key taken from the old image.
		mUpdate(3, 'K', []val{null, txt("K-1"), null}, []val{txt("1"), toast, txt("5")}),
		// ... and if neither image has it, the key leaves it out.
		mUpdate(3, 0, nil, []val{txt("1"), toast, txt("6")}),
		mCommit(0x10, 0x20, commitTime))
	checkShape(t, h.events[0], shape{Op: audit.OpUpdate, Table: "public.full",
		Key: `{"id":1}`, Before: `{"id":1,"body":"long text","n":1}`, After: `{"id":1,"body":"long text","n":2}`,
		Changed: `["n"]`})
	checkShape(t, h.events[1], shape{Op: audit.OpUpdate, Table: "public.full",
		Key: `{"id":1}`, Before: `{"id":1,"n":2}`, After: `{"id":1,"n":3}`, Changed: `null`, Toast: `["body"]`})
	checkShape(t, h.events[2], shape{Op: audit.OpUpdate, Table: "public.def",
		Key: `{"id":1}`, Before: `null`, After: `{"id":1,"n":2}`, Changed: `null`, Toast: `["body"]`})
	checkShape(t, h.events[3], shape{Op: audit.OpUpdate, Table: "public.def",
		Key: `{"id":7}`, Before: `{"id":1}`, After: `{"id":7,"n":2}`, Changed: `null`, Toast: `["body"]`})
	checkShape(t, h.events[4], shape{Op: audit.OpUpdate, Table: "public.keytoast",
		Key: `{"code":"K-1"}`, Before: `{"code":"K-1"}`, After: `{"id":1,"code":"K-1","n":5}`, Changed: `null`})
	checkShape(t, h.events[5], shape{Op: audit.OpUpdate, Table: "public.keytoast",
		Key: `{}`, Before: `null`, After: `{"id":1,"n":6}`, Changed: `null`, Toast: `["code"]`})
}

func TestAlterMidStream(t *testing.T) {
	res := &resolver{pk: map[uint32][]string{500: {"id"}}}
	d := New("db", res)
	h := &recorder{t: t}
	v1 := []col{{"id", oidInt4, true}, {"name", oidText, true}, {"qty", oidInt4, true}, {"legacy", oidText, true}}
	// ALTER: name renamed display_name, qty int4 → numeric, legacy dropped, email added.
	v2 := []col{{"id", oidInt4, true}, {"display_name", oidText, true}, {"qty", oidNumeric, true}, {"email", oidText, true}}
	feed(t, d, h, 1,
		mBegin(0x10, commitTime, 1),
		mRelation(500, "public", "product", 'f', v1...),
		mInsert(500, txt("1"), txt("Bolt"), txt("5"), txt("old")),
		mUpdate(500, 'O', []val{txt("1"), txt("Bolt"), txt("5"), txt("old")}, []val{txt("1"), txt("Bolt"), txt("6"), txt("old")}),
		mRelation(500, "public", "product", 'f', v2...),
		mUpdate(500, 'O', []val{txt("1"), txt("Bolt"), txt("6"), null}, []val{txt("1"), txt("Bolt M6"), txt("6.00"), txt("a@b.c")}),
		mDelete(500, 'O', txt("1"), txt("Bolt M6"), txt("6.00"), txt("a@b.c")),
		mCommit(0x10, 0x20, commitTime))
	checkShape(t, h.events[0], shape{Op: audit.OpInsert, Table: "public.product",
		Key: `{"id":1}`, Before: `null`, After: `{"id":1,"name":"Bolt","qty":5,"legacy":"old"}`,
		Changed: `["id","name","qty","legacy"]`})
	checkShape(t, h.events[1], shape{Op: audit.OpUpdate, Table: "public.product",
		Key:    `{"id":1}`,
		Before: `{"id":1,"name":"Bolt","qty":5,"legacy":"old"}`, After: `{"id":1,"name":"Bolt","qty":6,"legacy":"old"}`,
		Changed: `["qty"]`})
	checkShape(t, h.events[2], shape{Op: audit.OpUpdate, Table: "public.product",
		Key: `{"id":1}`,
		// The old tuple is decoded with the new relation: qty is numeric now.
		Before: `{"id":1,"display_name":"Bolt","qty":"6","email":null}`, After: `{"id":1,"display_name":"Bolt M6","qty":"6.00","email":"a@b.c"}`,
		Changed: `["display_name","qty","email"]`})
	checkShape(t, h.events[3], shape{Op: audit.OpDelete, Table: "public.product",
		Key: `{"id":1}`, Before: `{"id":1,"display_name":"Bolt M6","qty":"6.00","email":"a@b.c"}`, After: `null`, Changed: `[]`})
	if res.calls[500] != 2 {
		t.Errorf("resolver calls = %v", res.calls)
	}
	// A column count that does not match the current relation is an error.
	feed(t, d, h, 20, mBegin(0x30, commitTime, 2))
	wantErr(t, decodeScribbled(d, h, 21, mInsert(500, txt("1"), txt("x"), txt("1"))), ErrMalformed)
}

func TestTruncate(t *testing.T) {
	d := New("db", nil)
	h := &recorder{t: t}
	feed(t, d, h, 1,
		mRelation(1, "public", "a", 'd', col{"id", oidInt4, true}),
		mRelation(2, "sales", "b", 'd', col{"id", oidInt4, true}),
		mBegin(0x10, commitTime, 1),
		mInsert(1, txt("1")),
		mTruncate(truncateCascade|truncateRestartIdentity, 1, 2),
		mTruncate(0, 2),
		mTruncate(truncateRestartIdentity, 1),
		mCommit(0x10, 0x20, commitTime))
	if len(h.events) != 5 {
		t.Fatalf("%d events", len(h.events))
	}
	for i, e := range h.events {
		if e.Ordinal != uint32(i+1) {
			t.Errorf("event %d has ordinal %d", i, e.Ordinal)
		}
	}
	if h.events[1].LSN != 5 || h.events[2].LSN != 5 {
		t.Errorf("truncate LSNs %d %d", h.events[1].LSN, h.events[2].LSN)
	}
	both := `["truncate_cascade","truncate_restart_identity"]`
	checkShape(t, h.events[1], shape{Op: audit.OpTruncate, Table: "public.a",
		Key: `null`, Before: `null`, After: `null`, Changed: `[]`, Flags: both})
	checkShape(t, h.events[2], shape{Op: audit.OpTruncate, Table: "sales.b",
		Key: `null`, Before: `null`, After: `null`, Changed: `[]`, Flags: both})
	checkShape(t, h.events[3], shape{Op: audit.OpTruncate, Table: "sales.b",
		Key: `null`, Before: `null`, After: `null`, Changed: `[]`})
	checkShape(t, h.events[4], shape{Op: audit.OpTruncate, Table: "public.a",
		Key: `null`, Before: `null`, After: `null`, Changed: `[]`, Flags: `["truncate_restart_identity"]`})
	// A Truncate naming an unknown relation yields no event at all.
	feed(t, d, h, 20, mBegin(0x30, commitTime, 2))
	wantErr(t, decodeScribbled(d, h, 21, mTruncate(0, 1, 99)), ErrMalformed)
	if len(h.events) != 5 {
		t.Errorf("%d events after a failed truncate", len(h.events))
	}
}

func TestMessages(t *testing.T) {
	d := New("db", nil)
	h := &recorder{t: t}
	feed(t, d, h, 1,
		mMessage(false, 0x5, "cdcaudit", []byte("outside")),
		mBegin(0x10, commitTime, 1),
		mMessage(true, 0x8, "cdcaudit", []byte(`{"uid":6}`)),
		mMessage(false, 0x9, "other", nil),
		mMessage(true, 0xA, "", []byte{0, 1, 2}),
		mCommit(0x10, 0x20, commitTime))
	if len(h.msgs) != 4 {
		t.Fatalf("%d messages", len(h.msgs))
	}
	if m := h.msgs[0]; m.LSN != 5 || m.Prefix != "cdcaudit" || string(m.Content) != "outside" || m.Transactional || h.msgTx[0] != nil {
		t.Errorf("message 0: %+v", m)
	}
	if m := h.msgs[1]; m.LSN != 8 || m.Prefix != "cdcaudit" || string(m.Content) != `{"uid":6}` || !m.Transactional || h.msgTx[1] != h.begins[0] {
		t.Errorf("message 1: %+v", m)
	}
	if m := h.msgs[2]; m.Transactional || h.msgTx[2] != nil || len(m.Content) != 0 {
		t.Errorf("message 2: %+v", m)
	}
	tx := h.commits[0]
	if len(tx.Messages) != 2 || string(tx.Messages[0].Content) != `{"uid":6}` || string(tx.Messages[1].Content) != "\x00\x01\x02" {
		t.Errorf("tx.Messages = %+v", tx.Messages)
	}
	wantErr(t, decodeScribbled(d, h, 30, mMessage(true, 0x30, "x", nil)), ErrMalformed)
}

func TestUnknownMessage(t *testing.T) {
	d := New("db", nil)
	h := &recorder{t: t}
	feed(t, d, h, 1, mRelation(1, "public", "a", 'd', col{"id", oidInt4, true}), mBegin(0x10, commitTime, 1))
	for _, typ := range []byte("ASEcPKrxZ\x00\xff") {
		err := decodeScribbled(d, h, 2, []byte{typ, 0, 0, 0, 1, 2, 3})
		wantErr(t, err, ErrUnknownMessage)
		if errors.Is(err, ErrMalformed) {
			t.Errorf("%q: also ErrMalformed", typ)
		}
	}
	// Decoding goes on as if nothing happened.
	feed(t, d, h, 3, mInsert(1, txt("1")), mCommit(0x10, 0x20, commitTime))
	if len(h.events) != 1 || h.events[0].Ordinal != 1 || len(h.commits) != 1 {
		t.Fatalf("events %d commits %d", len(h.events), len(h.commits))
	}
}

func TestProtocolViolations(t *testing.T) {
	rel := mRelation(1, "public", "a", 'd', col{"id", oidInt4, true}, col{"v", oidText, false})
	for _, tc := range []struct {
		name string
		pre  [][]byte
		msg  []byte
	}{
		{"empty message", nil, []byte{}},
		{"insert outside transaction", [][]byte{rel}, mInsert(1, txt("1"), null)},
		{"update outside transaction", [][]byte{rel}, mUpdate(1, 0, nil, []val{txt("1"), null})},
		{"delete outside transaction", [][]byte{rel}, mDelete(1, 'K', txt("1"), null)},
		{"truncate outside transaction", [][]byte{rel}, mTruncate(0, 1)},
		{"commit outside transaction", nil, mCommit(0x10, 0x20, commitTime)},
		{"begin inside transaction", [][]byte{mBegin(0x10, commitTime, 1)}, mBegin(0x20, commitTime, 2)},
		{"commit LSN differs from begin", [][]byte{mBegin(0x10, commitTime, 1)}, mCommit(0x11, 0x20, commitTime)},
		{"unknown relation", [][]byte{mBegin(0x10, commitTime, 1)}, mInsert(1, txt("1"), null)},
		{"too few columns", [][]byte{rel, mBegin(0x10, commitTime, 1)}, mInsert(1, txt("1"))},
		{"too many columns", [][]byte{rel, mBegin(0x10, commitTime, 1)}, mInsert(1, txt("1"), null, null)},
		{"old tuple too short", [][]byte{rel, mBegin(0x10, commitTime, 1)}, mUpdate(1, 'O', []val{txt("1")}, []val{txt("1"), null})},
		{"bad tuple kind", [][]byte{rel, mBegin(0x10, commitTime, 1)}, mInsert(1, txt("1"), val{kind: 'x'})},
		{"insert without N", [][]byte{rel, mBegin(0x10, commitTime, 1)}, wbuf{'I'}.u32(1).u8('K').tuple([]val{txt("1"), null})},
		{"delete without old tuple", [][]byte{rel, mBegin(0x10, commitTime, 1)}, wbuf{'D'}.u32(1).u8('N').tuple([]val{txt("1"), null})},
		{"update with two old tuples", [][]byte{rel, mBegin(0x10, commitTime, 1)},
			wbuf{'U'}.u32(1).u8('K').tuple([]val{txt("1"), null}).u8('O').tuple([]val{txt("1"), null}).u8('N').tuple([]val{txt("1"), null})},
		{"trailing bytes", [][]byte{rel, mBegin(0x10, commitTime, 1)}, append(mInsert(1, txt("1"), null), 0)},
		{"negative column count", nil, wbuf{'R'}.u32(1).str("s").str("t").u8('d').u16(0xFFFF)},
		{"huge column count", nil, wbuf{'R'}.u32(1).str("s").str("t").u8('d').u16(0x7FFF)},
		{"negative value length", [][]byte{rel, mBegin(0x10, commitTime, 1)}, wbuf{'I'}.u32(1).u8('N').u16(2).u8('t').u32(0xFFFFFFFF)},
		{"value longer than message", [][]byte{rel, mBegin(0x10, commitTime, 1)}, wbuf{'I'}.u32(1).u8('N').u16(2).u8('t').u32(1000).u8('x')},
		{"huge truncate count", [][]byte{rel, mBegin(0x10, commitTime, 1)}, wbuf{'T'}.u32(0x7FFFFFFF).u8(0).u32(1)},
		{"negative message length", [][]byte{mBegin(0x10, commitTime, 1)}, wbuf{'M'}.u8(1).u64(1).str("p").u32(0xFFFFFFFF)},
		{"unterminated string", nil, wbuf{'Y'}.u32(1).str("public").u8('x')},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := New("db", nil)
			h := &recorder{t: t}
			feed(t, d, h, 1, tc.pre...)
			wantErr(t, decodeScribbled(d, h, 10, tc.msg), ErrMalformed)
			if len(h.events) != 0 || len(h.commits) != 0 {
				t.Errorf("events %d commits %d", len(h.events), len(h.commits))
			}
		})
	}
}

// Every proper prefix of a well-formed message is malformed, never a panic.
func TestTruncatedMessages(t *testing.T) {
	for _, m := range seedMessages() {
		for n := 1; n < len(m); n++ {
			d := New("db", &resolver{})
			h := &recorder{t: t}
			feed(t, d, h, 1, mRelation(16384, "public", "t", 'd', col{"id", oidInt4, true}), mBegin(0x10, commitTime, 1))
			err := decodeScribbled(d, h, 2, m[:n])
			wantErr(t, err, ErrMalformed)
		}
	}
}

func TestResetAndErrors(t *testing.T) {
	res := &resolver{pk: map[uint32][]string{1: {"id"}}, err: errors.New("catalog down")}
	d := New("db", res)
	h := &recorder{t: t}
	feed(t, d, h, 1, mRelation(1, "public", "a", 'f', col{"id", oidInt4, true}), mBegin(0x10, commitTime, 1))
	err := decodeScribbled(d, h, 2, mInsert(1, txt("1")))
	if !errors.Is(err, res.err) || errors.Is(err, ErrMalformed) {
		t.Fatalf("resolver error = %v", err)
	}
	res.err = nil
	feed(t, d, h, 3, mInsert(1, txt("1")))
	if res.calls[1] != 2 || h.events[0].Ordinal != 1 || rowJSON(h.events[0].Key) != `{"id":1}` {
		t.Errorf("calls %v, event %+v", res.calls, h.events[0])
	}

	// A handler error comes back unchanged.
	h.err = errors.New("disk full")
	if err := decodeScribbled(d, h, 4, mInsert(1, txt("2"))); err != h.err {
		t.Errorf("handler error = %v", err)
	}
	h.err = nil

	if !d.InTransaction() {
		t.Fatal("not in transaction")
	}
	d.Reset()
	if d.InTransaction() {
		t.Fatal("in transaction after Reset")
	}
	feed(t, d, h, 5, mBegin(0x30, commitTime, 2))
	wantErr(t, decodeScribbled(d, h, 6, mInsert(1, txt("1"))), ErrMalformed) // relation forgotten
}

func TestTypeMessage(t *testing.T) {
	d := New("db", nil)
	h := &recorder{t: t}
	feed(t, d, h, 1, mType(90001, "public", "mood"), mType(90002, "", "weird"))
	if n, ok := d.TypeName(90001); !ok || n != "public.mood" {
		t.Errorf("TypeName = %q %v", n, ok)
	}
	if n, _ := d.TypeName(90002); n != "pg_catalog.weird" {
		t.Errorf("TypeName = %q", n)
	}
}

func TestCommitTime(t *testing.T) {
	for _, tc := range []struct {
		us   int64
		want time.Time
	}{
		{0, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{-1, time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC)},
		{1_000_000*86400*366 + 1, time.Date(2001, 1, 1, 0, 0, 0, 1000, time.UTC)},
	} {
		if got := pgTime(tc.us); !got.Equal(tc.want) {
			t.Errorf("pgTime(%d) = %v, want %v", tc.us, got, tc.want)
		}
	}
	pgTime(1<<63 - 1) // no overflow panic
	pgTime(-1 << 63)
}

// Events must not share memory: a handler owns what it gets.
func TestEventOwnership(t *testing.T) {
	d := New("db", nil)
	h := &recorder{t: t}
	cols := []col{{"id", oidInt4, true}, {"a", oidText, false}, {"b", oidText, false}}
	feed(t, d, h, 1, mRelation(1, "public", "t", 'd', cols...), mBegin(0x10, commitTime, 1),
		mInsert(1, txt("1"), txt("first"), txt("x")))
	first := rowJSON(h.events[0].After)
	// Appending to one value must not overwrite the next one.
	e := h.events[0]
	_ = append(e.After[1].Value, "XXXXXXXX"...)
	_ = append(e.Key[0].Value, "YYYYYYYY"...)
	feed(t, d, h, 3, mInsert(1, txt("2"), txt("second"), txt("y")))
	if got := rowJSON(e.After); got != first {
		t.Errorf("first event changed: %s, was %s", got, first)
	}
}

// A jsonb value that is JSON null encodes like SQL NULL; an update from one
// to the other must still be listed in Changed.
func TestJSONNullVersusSQLNull(t *testing.T) {
	d := New("db", &resolver{pk: map[uint32][]string{16500: {"id"}}})
	h := &recorder{t: t}
	cols := []col{{"id", oidInt4, true}, {"v", oidJSONB, true}}
	feed(t, d, h, 100,
		mBegin(0x3000, commitTime, 9),
		mRelation(16500, "public", "j", 'f', cols...),
		mUpdate(16500, 'O', []val{txt("1"), null}, []val{txt("1"), txt("null")}),
		mUpdate(16500, 'O', []val{txt("1"), txt("null")}, []val{txt("1"), txt("null")}),
		mCommit(0x3000, 0x3010, commitTime),
	)
	if got := namesJSON(h.events[0].Changed); got != `["v"]` {
		t.Fatalf("SQL NULL → JSON null: changed = %s, want [\"v\"]", got)
	}
	if got := namesJSON(h.events[1].Changed); got != `[]` {
		t.Fatalf("JSON null → JSON null: changed = %s, want []", got)
	}
}

// A transaction that changed a relation's shape says so (Tx.SchemaChanged),
// so that correlate can tell a schema migration's fill of a new column from
// a raw edit; a relation described again unchanged, or for the first time
// (after a reconnect), is no change.
func TestSchemaChanged(t *testing.T) {
	d := New("db", nil)
	h := &recorder{t: t}
	v1 := []col{{"id", oidInt4, true}, {"name", oidText, false}}
	v2 := append(v1[:2:2], col{"credit", oidNumeric, false})
	feed(t, d, h, 1,
		mBegin(0x10, commitTime, 1),
		mRelation(500, "public", "res_partner", 'd', v1...), // first sight: no change
		mRelation(501, "public", "sale_order", 'd', v1...),
		mInsert(500, txt("1"), txt("a")),
		mCommit(0x10, 0x20, commitTime),
		mBegin(0x30, commitTime, 2),
		mRelation(501, "public", "sale_order", 'd', v1...),  // described again, same shape
		mRelation(500, "public", "res_partner", 'd', v2...), // ALTER TABLE … ADD COLUMN
		mUpdate(500, 0, nil, []val{txt("1"), txt("a"), txt("0")}),
		mRelation(500, "public", "res_partner", 'd', v2...),
		mCommit(0x30, 0x40, commitTime),
		mBegin(0x50, commitTime, 3),
		mUpdate(500, 0, nil, []val{txt("1"), txt("b"), txt("0")}),
		mCommit(0x50, 0x60, commitTime))
	if len(h.commits) != 3 {
		t.Fatalf("%d commits", len(h.commits))
	}
	for i, want := range [][]string{nil, {"public.res_partner"}, nil} {
		if got := h.commits[i].SchemaChanged; !slices.Equal(got, want) {
			t.Errorf("tx %d: SchemaChanged %q, want %q", i+1, got, want)
		}
	}
	// After a reconnect every relation is described anew: no change.
	d.Reset()
	feed(t, d, h, 70, mBegin(0x70, commitTime, 4), mRelation(500, "public", "res_partner", 'd', v1...),
		mInsert(500, txt("2"), txt("c")), mCommit(0x70, 0x80, commitTime))
	if got := h.commits[3].SchemaChanged; got != nil {
		t.Errorf("after Reset: SchemaChanged %q", got)
	}
}

// shapeRecorder records what Columns and NewNull say during Event.
type shapeRecorder struct {
	recorder
	d     *Decoder
	cols  [][]string
	nulls [][]bool
}

func (r *shapeRecorder) Event(tx *Tx, e *audit.Event) error {
	cols := r.d.Columns()
	r.cols = append(r.cols, slices.Clone(cols))
	var nulls []bool
	for i := range cols {
		nulls = append(nulls, r.d.NewNull(i))
	}
	r.nulls = append(r.nulls, nulls)
	return r.recorder.Event(tx, e)
}

// Update and delete events say whether the server sent the whole old row
// (BeforeSource wal) or not (unknown: key only or nothing); during Event
// the decoder tells the table's columns and which new values are SQL NULL.
func TestBeforeSourceAndShape(t *testing.T) {
	d := New("db", &resolver{pk: map[uint32][]string{16501: {"id"}}})
	h := &shapeRecorder{recorder: recorder{t: t}, d: d}
	cols := []col{{"id", oidInt4, true}, {"v", oidJSONB, false}, {"big", oidText, false}}
	full := []col{{"id", oidInt4, true}, {"v", oidJSONB, true}, {"big", oidText, true}}
	feed(t, d, h, 100,
		mBegin(0x3000, commitTime, 9),
		mRelation(16500, "public", "d", 'd', cols...),
		mInsert(16500, txt("1"), null, txt("x")),
		mUpdate(16500, 0, nil, []val{txt("1"), txt("null"), toast}),
		mUpdate(16500, 'K', []val{txt("1"), null, null}, []val{txt("2"), null, toast}),
		mDelete(16500, 'K', txt("2"), null, null),
		mRelation(16501, "public", "f", 'f', full...),
		mUpdate(16501, 'O', []val{txt("1"), null, txt("a")}, []val{txt("1"), null, toast}),
		mDelete(16501, 'O', txt("1"), null, txt("a")),
		mCommit(0x3000, 0x3010, commitTime),
	)
	want := []audit.BeforeSource{audit.BeforeNone, audit.BeforeUnknown, audit.BeforeUnknown, audit.BeforeUnknown, audit.BeforeWAL, audit.BeforeWAL}
	for i, e := range h.events {
		if e.BeforeSource != want[i] {
			t.Errorf("event %d (%s): before source %v, want %v", i, e.Op, e.BeforeSource, want[i])
		}
		if got := strings.Join(h.cols[i], ","); got != "id,v,big" {
			t.Errorf("event %d: columns %s", i, got)
		}
	}
	for i, w := range [][]bool{{false, true, false}, {false, false, false}, {false, true, false}} {
		if !slices.Equal(h.nulls[i], w) {
			t.Errorf("event %d: NewNull %v, want %v", i, h.nulls[i], w)
		}
	}
	if d.Columns() != nil {
		t.Error("Columns outside Event")
	}
}
