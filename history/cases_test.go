package history_test

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/history"
)

func TestLifecycleOfOneKey(t *testing.T) {
	tr := newTrail(t)
	k42, k43 := row("id", "42"), row("id", "43")
	a := tr.tx(sec(10), ins("sale_order", k42, row("id", "42", "state", `"draft"`)),
		ins("sale_order", k43, row("id", "43", "state", `"draft"`)))
	// The same key in another table and in another schema: not this record.
	o := tr.tx(sec(15), ins("sale_order_line", k42, row("id", "42")), ins("archive.sale_order", k42, row("id", "42")))
	b := tr.tx(sec(20), upd("sale_order", k42, nil, row("id", "42", "state", `"sent"`)))
	c := tr.tx(sec(30), upd("sale_order", k42, nil, row("id", "42", "state", `"sale"`)), upd("sale_order", k43, nil, row("id", "43", "state", `"sale"`)))
	d := tr.tx(sec(40), del("sale_order", k42))
	e := tr.tx(sec(50), ins("sale_order", k42, row("id", "42", "state", `"new"`)))

	equal(t, "history", record(t, tr.store, "public.sale_order:42"), []string{
		"insert " + a[0], "update " + b[0], "update " + c[0], "delete " + d[0], "insert " + e[0]})
	equal(t, "history of 43", record(t, tr.store, "sale_order:43"), []string{"insert " + a[1], "update " + c[1]})
	equal(t, "other schema", record(t, tr.store, "archive.sale_order:42"), []string{"insert " + o[1]})
	equal(t, "unknown key", record(t, tr.store, "sale_order:44"), nil)

	const r = "sale_order:42"
	im := at(t, tr.store, r, sec(10).Add(-time.Microsecond))
	wantRow(t, im, history.Unknown, "", "")
	if im.Next == nil || im.Next.ID != a[0] || !strings.Contains(im.Reason(), "no event") {
		t.Errorf("before the first event: next %v, reason %q", im.Next, im.Reason())
	}
	wantRow(t, at(t, tr.store, r, sec(10)), history.Exists, `{"id":42,"state":"draft"}`, a[0])
	wantRow(t, at(t, tr.store, r, sec(20).Add(-time.Microsecond)), history.Exists, `{"id":42,"state":"draft"}`, a[0])
	wantRow(t, at(t, tr.store, r, sec(20)), history.Exists, `{"id":42,"state":"sent"}`, b[0])
	wantRow(t, at(t, tr.store, r, sec(35)), history.Exists, `{"id":42,"state":"sale"}`, c[0])
	im = at(t, tr.store, r, sec(40))
	wantRow(t, im, history.Gone, "", d[0])
	if !strings.Contains(im.Reason(), "deleted by "+d[0]) || im.Next == nil || im.Next.ID != e[0] {
		t.Errorf("after the delete: reason %q, next %v", im.Reason(), im.Next)
	}
	wantRow(t, at(t, tr.store, r, sec(49)), history.Gone, "", d[0])
	wantRow(t, at(t, tr.store, r, sec(50)), history.Exists, `{"id":42,"state":"new"}`, e[0])
	im = at(t, tr.store, r, sec(1000))
	wantRow(t, im, history.Exists, `{"id":42,"state":"new"}`, e[0])
	if im.Next != nil {
		t.Errorf("after the last event: next %s", im.Next.ID)
	}
	if im.Event.Op != audit.OpInsert || !im.Event.CommitTime.Equal(sec(50)) {
		t.Errorf("event: %+v", im.Event)
	}
	// The event is handed on verbatim: it verifies against its hash.
	if id, _, _, err := audit.Check(im.Event.Record); err != nil || id != e[0] {
		t.Errorf("record: %q %v", id, err)
	}
}

func TestSameTransactionLastChangeWins(t *testing.T) {
	tr := newTrail(t)
	k := row("id", "1")
	ids := tr.tx(sec(1), ins("t", k, row("id", "1", "n", "1")), upd("t", k, nil, row("id", "1", "n", "2")))
	wantRow(t, at(t, tr.store, "t:1", sec(1)), history.Exists, `{"id":1,"n":2}`, ids[1])
}

func TestKeyChange(t *testing.T) {
	tr := newTrail(t)
	kA, kB, kC := row("code", `"A"`), row("code", `"B"`), row("code", `"C"`)
	a := tr.tx(sec(1), ins("product", kA, row("code", `"A"`, "n", "1")))
	// REPLICA IDENTITY DEFAULT: the before-image holds the old key only.
	b := tr.tx(sec(2), upd("product", kB, kA, row("code", `"B"`, "n", "1")))
	c := tr.tx(sec(3), upd("product", kB, nil, row("code", `"B"`, "n", "2")))
	// Another row takes A while the record lives on as B: not followed.
	x := tr.tx(sec(4), ins("product", kA, row("code", `"A"`, "n", "9")))
	// REPLICA IDENTITY FULL: the whole old row.
	d := tr.tx(sec(5), upd("product", kC, row("code", `"B"`, "n", "2"), row("code", `"C"`, "n", "2")))
	e := tr.tx(sec(6), ev("product", audit.OpDelete, kC, row("code", `"C"`, "n", "2"), nil))

	equal(t, "history of A", record(t, tr.store, "product:A"), []string{
		"insert " + a[0], "update " + b[0], "update " + c[0], "update " + d[0], "delete " + e[0]})
	wantRow(t, at(t, tr.store, "product:A", sec(2)), history.Exists, `{"code":"B","n":1}`, b[0])
	wantRow(t, at(t, tr.store, "product:A", sec(4)), history.Exists, `{"code":"B","n":2}`, c[0])
	wantRow(t, at(t, tr.store, "product:A", sec(5)), history.Exists, `{"code":"C","n":2}`, d[0])
	wantRow(t, at(t, tr.store, "product:A", sec(6)), history.Gone, "", e[0])

	// A key change says where the record came from.
	var moves []string
	if _, err := history.Record(tr.store, ref(t, "product:A"), func(e *history.Event) error {
		moves = append(moves, string(e.PrevKey)+">"+string(e.Key))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	equal(t, "key changes", moves, []string{`>{"code":"A"}`, `{"code":"A"}>{"code":"B"}`, `>{"code":"B"}`,
		`{"code":"B"}>{"code":"C"}`, `>{"code":"C"}`})

	// Asked for by a later key, the history begins where the record took it.
	equal(t, "history of B", record(t, tr.store, "product:B"), []string{"update " + b[0], "update " + c[0], "update " + d[0], "delete " + e[0]})
	wantRow(t, at(t, tr.store, "product:B", sec(1)), history.Unknown, "", "")
	// The row that took A while the record lived on as B is another record.
	for _, l := range record(t, tr.store, "product:A") {
		if strings.HasSuffix(l, x[0]) {
			t.Errorf("the other row under A (%s) is in the history of the record that left A", x[0])
		}
	}
}

func TestKeyChangeThenReuseAfterDelete(t *testing.T) {
	tr := newTrail(t)
	k1, k2 := row("id", "1"), row("id", "2")
	a := tr.tx(sec(1), ins("t", k1, row("id", "1")))
	b := tr.tx(sec(2), upd("t", k2, k1, row("id", "2")))
	c := tr.tx(sec(3), del("t", k2))
	d := tr.tx(sec(4), ins("t", k1, row("id", "1", "v", `"again"`)))
	equal(t, "history", record(t, tr.store, "t:1"), []string{"insert " + a[0], "update " + b[0], "delete " + c[0], "insert " + d[0]})
	wantRow(t, at(t, tr.store, "t:1", sec(3)), history.Gone, "", c[0])
	wantRow(t, at(t, tr.store, "t:1", sec(4)), history.Exists, `{"id":1,"v":"again"}`, d[0])
}

func TestTruncate(t *testing.T) {
	tr := newTrail(t)
	k := row("id", "7")
	tr.tx(sec(1), trunc("t")) // before the record existed: not its event
	a := tr.tx(sec(2), ins("t", k, row("id", "7")))
	b := tr.tx(sec(3), trunc("t"), trunc("other"))
	tr.tx(sec(4), trunc("t")) // already gone: not its event
	c := tr.tx(sec(5), ins("t", k, row("id", "7", "n", "1")))

	equal(t, "history", record(t, tr.store, "t:7"), []string{"insert " + a[0], "truncate " + b[0], "insert " + c[0]})
	wantRow(t, at(t, tr.store, "t:7", sec(1)), history.Unknown, "", "")
	im := at(t, tr.store, "t:7", sec(3))
	wantRow(t, im, history.Gone, "", b[0])
	if !strings.Contains(im.Reason(), "truncated by "+b[0]) {
		t.Errorf("reason %q", im.Reason())
	}
	wantRow(t, at(t, tr.store, "t:7", sec(4)), history.Gone, "", b[0])
	wantRow(t, at(t, tr.store, "t:7", sec(5)), history.Exists, `{"id":7,"n":1}`, c[0])
}

func TestSnapshotRecords(t *testing.T) {
	tr := newTrail(t)
	k := row("id", "5")
	s := tr.tx(sec(10), snap("res_partner", k, row("id", "5", "name", `"Azure"`)), snap("res_partner", row("id", "6"), row("id", "6")))
	u := tr.tx(sec(20), &audit.Event{Schema: "public", Table: "res_partner", Op: audit.OpUpdate, Key: k,
		Before: row("id", "5", "name", `"Azure"`), After: row("id", "5", "name", `"Azure Ltd"`), BeforeSource: audit.BeforeReconstructed})

	equal(t, "history", record(t, tr.store, "res_partner:5"), []string{"snapshot " + s[0], "update " + u[0]})
	wantRow(t, at(t, tr.store, "res_partner:5", sec(9)), history.Unknown, "", "")
	im := at(t, tr.store, "res_partner:5", sec(10))
	wantRow(t, im, history.Exists, `{"id":5,"name":"Azure"}`, s[0])
	if im.Event.Op != audit.OpSnapshot || im.Event.BeforeSource != "" || !strings.Contains(im.Reason(), "as a snapshot of its table read it") {
		t.Errorf("snapshot event: op %s, before_source %q", im.Event.Op, im.Event.BeforeSource)
	}
	im = at(t, tr.store, "res_partner:5", sec(20))
	wantRow(t, im, history.Exists, `{"id":5,"name":"Azure Ltd"}`, u[0])
	if im.Event.BeforeSource != "reconstructed" {
		t.Errorf("before_source %q, want reconstructed", im.Event.BeforeSource)
	}
}

func TestCompositeKeys(t *testing.T) {
	tr := newTrail(t)
	k := row("a", "1", "b", `"x"`)
	a := tr.tx(sec(1), ins("public.link", k, row("a", "1", "b", `"x"`, "v", "0")),
		ins("link", row("a", "1", "b", `"y"`), row("a", "1", "b", `"y"`)),
		ins("link", row("a", "2", "b", `"x"`), row("a", "2", "b", `"x"`)))
	b := tr.tx(sec(2), upd("link", k, nil, row("a", "1", "b", `"x"`, "v", "1")))

	want := []string{"insert " + a[0], "update " + b[0]}
	for _, s := range []string{`link:{"a":1,"b":"x"}`, `public.link:{"b":"x","a":1}`, `link:{"a":"1","b":"x"}`} {
		equal(t, s, record(t, tr.store, s), want)
	}
	wantRow(t, at(t, tr.store, `link:{"b":"x","a":1}`, sec(1)), history.Exists, `{"a":1,"b":"x","v":0}`, a[0])

	for _, s := range []string{`link:1`, `link:{"a":1}`, `link:{"a":1,"c":"x"}`} {
		_, err := history.Record(tr.store, ref(t, s), func(*history.Event) error { return nil })
		if !errors.Is(err, history.ErrKeyColumns) || !strings.Contains(err.Error(), "(a, b)") {
			t.Errorf("%s: %v, want ErrKeyColumns naming (a, b)", s, err)
		}
	}
	// The right columns, but no such record: nothing, and no error.
	equal(t, "no such record", record(t, tr.store, `link:{"a":3,"b":"x"}`), nil)
}

func TestStringAndNumberKeys(t *testing.T) {
	tr := newTrail(t)
	n := tr.tx(sec(1), ins("num", row("id", "42"), row("id", "42")),
		ins("txt", row("ref", `"42"`), row("ref", `"42"`)),
		ins("txt", row("ref", `"abc:d \"q\""`), row("ref", `"abc:d \"q\""`)),
		ins("dec", row("amount", `"42.50"`), row("amount", `"42.50"`)))
	equal(t, "number", record(t, tr.store, "num:42"), []string{"insert " + n[0]})
	equal(t, "text holding digits", record(t, tr.store, "txt:42"), []string{"insert " + n[1]})
	equal(t, "text with : and quotes", record(t, tr.store, `txt:abc:d "q"`), []string{"insert " + n[2]})
	equal(t, "numeric as text", record(t, tr.store, "dec:42.50"), []string{"insert " + n[3]})
	equal(t, "not reformatted", record(t, tr.store, "num:042"), nil)
	equal(t, "not rounded", record(t, tr.store, "dec:42.5"), nil)
	equal(t, "json string of digits", record(t, tr.store, `num:{"id":"42"}`), []string{"insert " + n[0]})
}

// An embedded json value holding the bytes the table test looks for is not
// an event of that table.
func TestEmbeddedJSONIsNotATable(t *testing.T) {
	tr := newTrail(t)
	fake := `{"x":0,"schema":"public","table":"sale_order","key":{"id":1}}`
	tr.tx(sec(1), ins("log", row("id", "1"), row("id", "1", "payload", fake)))
	real := tr.tx(sec(2), ins("sale_order", row("id", "1"), row("id", "1")))
	equal(t, "history", record(t, tr.store, "sale_order:1"), []string{"insert " + real[0]})
}

// fn's error stops the scan and is returned as it is.
func TestCallbackError(t *testing.T) {
	tr := newTrail(t)
	tr.tx(sec(1), ins("t", row("id", "1"), row("id", "1")))
	tr.tx(sec(2), upd("t", row("id", "1"), nil, row("id", "1", "n", "1")))
	boom := errors.New("boom")
	calls := 0
	_, err := history.Record(tr.store, ref(t, "t:1"), func(*history.Event) error { calls++; return boom })
	if !errors.Is(err, boom) || calls != 1 {
		t.Errorf("err %v after %d calls, want boom after 1", err, calls)
	}
}

// A long history among another record's: each answer is its moment's row.
func TestManyVersions(t *testing.T) {
	tr := newTrail(t)
	k := row("id", "9")
	ids := tr.tx(sec(0), ins("t", k, row("id", "9", "v", "0")))
	for i := 1; i < 200; i++ {
		ids = append(ids, tr.tx(sec(i), upd("t", k, nil, row("id", "9", "v", strconv.Itoa(i))))...)
		tr.tx(sec(i).Add(time.Millisecond), upd("t", row("id", "10"), nil, row("id", "10")))
	}
	for _, i := range []int{0, 1, 57, 199} {
		wantRow(t, at(t, tr.store, "t:9", sec(i).Add(500*time.Millisecond)), history.Exists, `{"id":9,"v":`+strconv.Itoa(i)+`}`, ids[i])
	}
	n := 0
	sum, err := history.Record(tr.store, ref(t, "t:9"), func(*history.Event) error { n++; return nil })
	// The table's events are counted only for a record without any.
	if err != nil || n != 200 || sum.Events != 200 || sum.TableEvents != 0 {
		t.Errorf("n %d, summary %+v, err %v", n, sum, err)
	}
	if sum, err := history.Record(tr.store, ref(t, "t:11"), func(*history.Event) error { return nil }); err != nil || sum.Events != 0 || sum.TableEvents != 200+199 {
		t.Errorf("no such record: summary %+v, err %v", sum, err)
	}
	var js map[string]any
	if err := json.Unmarshal(at(t, tr.store, "t:9", sec(300)).Row, &js); err != nil || js["v"] != 199.0 {
		t.Errorf("row %v, %v", js, err)
	}
}

// Commit timestamps may disagree with commit order by a little (the
// server's clock): the row at t is that of the last event in commit order
// committed at or before t.
func TestTimesOutOfCommitOrder(t *testing.T) {
	tr := newTrail(t)
	k := row("id", "1")
	a := tr.tx(sec(10), ins("t", k, row("id", "1", "v", "0")))
	b := tr.tx(sec(30), upd("t", k, nil, row("id", "1", "v", "1")))
	c := tr.tx(sec(20), upd("t", k, nil, row("id", "1", "v", "2")))
	im := at(t, tr.store, "t:1", sec(15))
	wantRow(t, im, history.Exists, `{"id":1,"v":0}`, a[0])
	if im.Next == nil || im.Next.ID != b[0] {
		t.Errorf("next %v, want %s", im.Next, b[0])
	}
	wantRow(t, at(t, tr.store, "t:1", sec(25)), history.Exists, `{"id":1,"v":2}`, c[0])
	wantRow(t, at(t, tr.store, "t:1", sec(30)), history.Exists, `{"id":1,"v":2}`, c[0])
}

// An update's unchanged large values that the server did not send are the
// row's values before it; when no earlier event holds them, Missing says so.
func TestUnchangedToastFilled(t *testing.T) {
	tr := newTrail(t)
	toast := func(e *audit.Event, cols ...string) *audit.Event { e.UnchangedToast = cols; return e }
	k := row("id", "1")
	a := tr.tx(sec(1), ins("doc", k, row("id", "1", "body", `"long text"`, "n", "0")))
	b := tr.tx(sec(2), toast(upd("doc", k, nil, row("id", "1", "n", "1")), "body"))
	c := tr.tx(sec(3), toast(upd("doc", k, nil, row("id", "1", "n", "2", "extra", "true")), "body"))
	wantRow(t, at(t, tr.store, "doc:1", sec(1)), history.Exists, `{"id":1,"body":"long text","n":0}`, a[0])
	im := at(t, tr.store, "doc:1", sec(2))
	wantRow(t, im, history.Exists, `{"id":1,"body":"long text","n":1}`, b[0])
	if im.Missing != nil || string(im.Event.After) != `{"id":1,"n":1}` || strings.Join(im.Event.UnchangedToast, ",") != "body" {
		t.Errorf("missing %v, event after %s, toast %v", im.Missing, im.Event.After, im.Event.UnchangedToast)
	}
	// A column added since comes last.
	wantRow(t, at(t, tr.store, "doc:1", sec(3)), history.Exists, `{"id":1,"body":"long text","n":2,"extra":true}`, c[0])

	// A record first seen by such an update: its large value is not known.
	k2 := row("id", "2")
	d := tr.tx(sec(4), toast(upd("doc", k2, nil, row("id", "2", "n", "5")), "body"))
	im = at(t, tr.store, "doc:2", sec(4))
	wantRow(t, im, history.Exists, `{"id":2,"n":5}`, d[0])
	if strings.Join(im.Missing, ",") != "body" {
		t.Errorf("missing %v, want [body]", im.Missing)
	}
	// Still not known after another such update; known again once written.
	tr.tx(sec(5), toast(upd("doc", k2, nil, row("id", "2", "n", "6")), "body"))
	if im = at(t, tr.store, "doc:2", sec(5)); strings.Join(im.Missing, ",") != "body" {
		t.Errorf("missing %v, want [body]", im.Missing)
	}
	f := tr.tx(sec(6), upd("doc", k2, nil, row("id", "2", "body", `"new"`, "n", "7")))
	im = at(t, tr.store, "doc:2", sec(6))
	wantRow(t, im, history.Exists, `{"id":2,"body":"new","n":7}`, f[0])
	if im.Missing != nil {
		t.Errorf("missing %v after the value was written", im.Missing)
	}
	// Deleted and re-inserted: nothing carries over.
	tr.tx(sec(7), del("doc", k2))
	g := tr.tx(sec(8), toast(upd("doc", k2, nil, row("id", "2", "n", "8")), "body"))
	if im = at(t, tr.store, "doc:2", sec(8)); string(im.Row) != `{"id":2,"n":8}` || strings.Join(im.Missing, ",") != "body" || im.Event.ID != g[0] {
		t.Errorf("after a delete: row %s, missing %v", im.Row, im.Missing)
	}
}
