package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

var eventsT0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// recordStore holds the life of sale_order 42 (insert, update, key change
// to 142, delete) among other events, one transaction a second from
// eventsT0, and a composite-key table.
func recordStore(t *testing.T) (dir string, ids []string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "store")
	s, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	uid := int64(6)
	row := func(kv ...string) audit.Row {
		var r audit.Row
		for i := 0; i < len(kv); i += 2 {
			r = append(r, audit.Column{Name: kv[i], Value: []byte(kv[i+1])})
		}
		return r
	}
	evs := []*audit.Event{
		{Table: "sale_order", Op: audit.OpInsert, Key: row("id", "42"), After: row("id", "42", "state", `"draft"`, "note", `"a\u001b[31m"`),
			Changed: []string{"id", "state", "note"}},
		{Table: "sale_order", Op: audit.OpInsert, Key: row("id", "43"), After: row("id", "43", "state", `"draft"`), Changed: []string{"id", "state"}},
		{Table: "sale_order", Op: audit.OpUpdate, Key: row("id", "42"), Before: row("id", "42", "state", `"draft"`, "note", `"a"`),
			After: row("id", "42", "state", `"sale"`, "note", `"a"`), Changed: []string{"state"}, BeforeSource: audit.BeforeWAL,
			Actor: audit.Actor{UserID: &uid, Login: "alice@example.com", UserVia: "row_user", SessionVia: "only_active"}},
		{Table: "sale_order", Op: audit.OpUpdate, Key: row("id", "142"), Before: row("id", "42"),
			After: row("id", "142", "state", `"sale"`, "note", `"a"`)},
		{Table: "sale_order", Op: audit.OpDelete, Key: row("id", "142"), Before: row("id", "142", "state", `"sale"`)},
		{Table: "tag_rel", Op: audit.OpInsert, Key: row("order_id", "42", "tag", `"x"`), After: row("order_id", "42", "tag", `"x"`),
			Changed: []string{"order_id", "tag"}},
		// TOASTed values the server did not send: known from the insert for
		// doc 1, not known for doc 2.
		{Table: "doc", Op: audit.OpInsert, Key: row("id", "1"), After: row("id", "1", "body", `"long"`, "n", "0")},
		{Table: "doc", Op: audit.OpUpdate, Key: row("id", "1"), After: row("id", "1", "n", "1"), UnchangedToast: []string{"body"}},
		{Table: "doc", Op: audit.OpUpdate, Key: row("id", "2"), After: row("id", "2", "n", "1"), UnchangedToast: []string{"body"}},
	}
	var batches []sink.Batch
	for i, e := range evs {
		e.CommitLSN, e.LSN, e.Ordinal, e.XID = uint64(0x1000+i*0x100), uint64(0x1000+i*0x100-0x10), 1, uint32(700+i)
		e.CommitTime, e.Database, e.Schema = eventsT0.Add(time.Duration(i)*time.Second), "erp", "public"
		batches = append(batches, sink.Batch{Events: []sink.Encoded{{Key: e.StoreKey(), Body: e.AppendBody(nil)}},
			Checkpoint: e.CommitLSN + 0x30, CommitTime: e.CommitTime})
		ids = append(ids, e.ID())
	}
	if _, err := s.Append(batches); err != nil {
		t.Fatal(err)
	}
	return dir, ids
}

func TestEventsArguments(t *testing.T) {
	dir, _ := recordStore(t)
	empty := t.TempDir()
	cases := []struct {
		args []string
		env  map[string]string
		code int
		want string
	}{
		{[]string{"--record", "t:1"}, nil, exitUsage, "data_dir is required: set --data-dir or CDCAUDIT_DATA_DIR"},
		{[]string{"--data-dir", dir}, nil, exitUsage, "--record is required"},
		{[]string{"--data-dir", dir, "--record", "sale_order"}, nil, exitUsage, `--record: "sale_order": want TABLE:KEY`},
		{[]string{"--data-dir", dir, "--record", "sale_order:"}, nil, exitUsage, "--record: \"sale_order:\": the key after ':' is empty"},
		{[]string{"--data-dir", dir, "--record", "a.b.c:1"}, nil, exitUsage, "--record: \"a.b.c:1\": more than schema.table"},
		{[]string{"--data-dir", dir, "--record", `t:{"a":1`}, nil, exitUsage, "is not a JSON object"},
		{[]string{"--data-dir", dir, "--record", "t:1", "--at", "yesterday"}, nil, exitUsage, `--at: "yesterday" is not a time`},
		{[]string{"--data-dir", dir, "--record", "t:1", "--at", "2026-11-23T10:00:00"}, nil, exitUsage, "--at: \"2026-11-23T10:00:00\" has no time zone"},
		{[]string{"--data-dir", dir, "--record", "t:1", "--format", "csv"}, nil, exitUsage, `--format: "csv" is not a format (want table, json or jsonl)`},
		{[]string{"--data-dir", dir, "--record", "t:1", "extra"}, nil, exitUsage, `unexpected argument "extra"`},
		{[]string{"--data-dir", dir, "--recrod", "t:1"}, nil, exitUsage, "unknown flag --recrod"},
		// A key that does not name the table's key columns is a bad --record.
		{[]string{"--data-dir", dir, "--record", "tag_rel:42"}, nil, exitUsage, `--record: the key given does not name the table's key columns: the key of public.tag_rel is (order_id, tag): give it as a JSON object, {"order_id":…,"tag":…}`},
		{[]string{"--data-dir", empty, "--record", "t:1"}, nil, exitFail, "no cdcaudit store in " + empty},
		{[]string{"--record", "t:1"}, map[string]string{"CDCAUDIT_DATA_DIR": empty}, exitFail, "no cdcaudit store in " + empty},
		{[]string{"--data-dir", dir, "--record", "sale_order:44"}, nil, exitNotFound, "no event of public.sale_order:44 in the store\n"},
		{[]string{"--data-dir", dir, "--record", "Sale_Order:42"}, nil, exitNotFound, "no event of public.Sale_Order:42 in the store (nor of any record of table public.Sale_Order: names are spelt as in the events, case and schema included)"},
		{[]string{"--data-dir", dir, "--record", "erp.sale_order:42", "--at", "2026-11-24"}, nil, exitNotFound, "no event of erp.sale_order:42 in the store (nor of any record of table erp.sale_order"},
	}
	for _, tc := range cases {
		out, errOut, code := runCLI(t, tc.env, append([]string{"events"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("events %v: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
		if code != exitNotFound && out != "" {
			t.Errorf("events %v: exit %d with output %q", tc.args, code, out)
		}
	}
	// A key that does not fit, in json: no pretence of an empty history.
	out, _, code := runCLI(t, nil, "events", "--data-dir", dir, "--record", "tag_rel:42", "--format", "json")
	if code != exitUsage || out != "" {
		t.Errorf("bad key, json: exit %d, %q", code, out)
	}
}

func TestEventsHistory(t *testing.T) {
	dir, ids := recordStore(t)

	// jsonl: the stored records, verbatim.
	out, errOut, code := runCLI(t, nil, "events", "--data-dir", dir, "--record", "public.sale_order:42", "--format", "jsonl")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{ids[0], ids[2], ids[3], ids[4]}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, l := range lines {
		if id, _, _, err := audit.Check([]byte(l)); err != nil || id != want[i] {
			t.Errorf("line %d: %q %v, want the stored record of %s", i, id, err, want[i])
		}
	}

	// json: an array of the same records.
	out, _, code = runCLI(t, nil, "events", "--data-dir", dir, "--record", "sale_order:42", "--format", "json")
	var arr []map[string]any
	if err := json.Unmarshal([]byte(out), &arr); err != nil || code != exitOK || len(arr) != 4 || arr[3]["op"] != "delete" {
		t.Fatalf("json: exit %d, %v:\n%s", code, err, out)
	}
	out, _, code = runCLI(t, nil, "events", "--data-dir", dir, "--record", "sale_order:44", "--format", "json")
	if code != exitNotFound || out != "[]\n" {
		t.Errorf("json of no events: exit %d, %q", code, out)
	}

	// table: one line an event, what changed, who; nothing from the data
	// drives the terminal.
	out, _, code = runCLI(t, nil, "events", "--data-dir", dir, "--record", "sale_order:42")
	if code != exitOK {
		t.Fatalf("table: exit %d", code)
	}
	for _, s := range []string{"COMMIT TIME (UTC)", "2026-11-23 10:00:00.000000  " + ids[0] + "  insert",
		"state: draft → sale", "alice@example.com", `key {"id":42} → {"id":142}`, "deleted · state=sale", "public.sale_order:42: 4 events."} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "\x1b") || strings.Contains(out, ids[1]) {
		t.Errorf("table holds an escape or another record's event:\n%s", out)
	}
}

func TestEventsAt(t *testing.T) {
	dir, ids := recordStore(t)
	at := func(when string, format string) (map[string]any, string, int) {
		t.Helper()
		out, errOut, code := runCLI(t, nil, "events", "--data-dir", dir, "--record", "sale_order:42", "--at", when, "--format", format)
		if errOut != "" {
			t.Errorf("--at %s: stderr %q", when, errOut)
		}
		var m map[string]any
		if format != "table" {
			if err := json.Unmarshal([]byte(out), &m); err != nil {
				t.Fatalf("--at %s: %v:\n%s", when, err, out)
			}
		}
		return m, out, code
	}
	eventID := func(m map[string]any) string {
		if e, ok := m["event"].(map[string]any); ok {
			return e["id"].(string)
		}
		return ""
	}

	// Exactly at the update's commit time: the update's row.
	m, out, code := at("2026-11-23T10:00:02Z", "json")
	if code != exitOK || m["state"] != "exists" || eventID(m) != ids[2] || !strings.Contains(out, "\n  \"state\"") {
		t.Errorf("at the update: exit %d:\n%s", code, out)
	}
	row, _ := json.Marshal(m["row"])
	if string(row) != `{"id":42,"note":"a","state":"sale"}` {
		t.Errorf("row %s", row)
	}
	if e := m["event"].(map[string]any); e["op"] != "update" || e["commit_time"] != "2026-11-23T10:00:02.000000Z" || e["before_source"] != nil && e["before_source"] != "wal" {
		t.Errorf("event %v", e)
	}
	if n := m["next"].(map[string]any); n["id"] != ids[3] || n["prev_key"] == nil {
		t.Errorf("next %v", n)
	}
	// A microsecond earlier: the insert's row.
	m, _, code = at("2026-11-23T10:00:01.999999Z", "jsonl")
	if code != exitOK || eventID(m) != ids[0] {
		t.Errorf("before the update: exit %d, %v", code, m)
	}
	// After the key change, under its new key.
	m, _, code = at("2026-11-23T11:00:03+01:00", "jsonl")
	if code != exitOK || eventID(m) != ids[3] || m["row"].(map[string]any)["id"] != 142.0 {
		t.Errorf("after the key change: exit %d, %v", code, m)
	}
	// Gone after the delete; unknown before the first event: exit 4.
	m, _, code = at("2026-11-24", "jsonl")
	if code != exitNotFound || m["state"] != "gone" || eventID(m) != ids[4] || m["row"] != nil || !strings.Contains(m["reason"].(string), "deleted by") {
		t.Errorf("after the delete: exit %d, %v", code, m)
	}
	m, _, code = at("2026-11-22", "jsonl")
	if code != exitNotFound || m["state"] != "unknown" || m["event"] != nil || !strings.Contains(m["reason"].(string), "no event") {
		t.Errorf("before the first event: exit %d, %v", code, m)
	}

	// table.
	_, out, code = at("2026-11-23T10:00:02Z", "table")
	for _, s := range []string{"public.sale_order:42 at 2026-11-23T10:00:02.000000Z: existed", "update " + ids[2], "until update " + ids[3], "  state  \"sale\""} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	if code != exitOK {
		t.Errorf("table: exit %d", code)
	}
	_, out, code = at("2026-11-22", "table")
	if code != exitNotFound || !strings.Contains(out, ": unknown") {
		t.Errorf("table, unknown: exit %d\n%s", code, out)
	}
}

// Like export, events never waits for a store another process holds.
func TestEventsOnALockedStore(t *testing.T) {
	dir, _ := recordStore(t)
	s, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, errOut, code := runCLI(t, nil, "events", "--data-dir", dir, "--record", "sale_order:42")
	if code != exitFail || !strings.Contains(errOut, "locked by another process") || !strings.Contains(errOut, "cdcaudit backup") {
		t.Errorf("locked store: exit %d, %q", code, errOut)
	}
}

// An altered event is never shown: events stops naming it, exit 1.
func TestEventsOnATamperedStore(t *testing.T) {
	dir, ids := recordStore(t)
	found := false
	if err := sink.EditRecords(dir, func(k, rec []byte) ([]byte, error) {
		if i := bytes.Index(rec, []byte(`alice@example.com`)); i >= 0 && !found {
			found = true
			rec = bytes.Clone(rec)
			rec[i] = 'A'
		}
		return rec, nil
	}); err != nil || !found {
		t.Fatalf("event text not found in the store: %v", err)
	}
	for _, args := range [][]string{{"--record", "sale_order:42"}, {"--record", "sale_order:42", "--at", "2026-11-24"}} {
		out, errOut, code := runCLI(t, nil, append([]string{"events", "--data-dir", dir}, args...)...)
		if code != exitFail || !strings.Contains(errOut, "record "+ids[2]+" does not match its hash") || strings.Contains(out, "Alice") {
			t.Errorf("%v on a tampered store: exit %d, stderr %q, stdout %q", args, code, errOut, out)
		}
	}
}

func TestEventsAtFillsUnchangedToast(t *testing.T) {
	dir, ids := recordStore(t)
	out, errOut, code := runCLI(t, nil, "events", "--data-dir", dir, "--record", "doc:1", "--at", "2026-11-24", "--format", "jsonl")
	if code != exitOK || !strings.Contains(out, `"row":{"id":1,"body":"long","n":1}`) || strings.Contains(out, "missing") || !strings.Contains(out, ids[7]) {
		t.Errorf("doc 1: exit %d %s\n%s", code, errOut, out)
	}
	out, _, code = runCLI(t, nil, "events", "--data-dir", dir, "--record", "doc:2", "--at", "2026-11-24", "--format", "jsonl")
	if code != exitOK || !strings.Contains(out, `"row":{"id":2,"n":1},"missing":["body"]`) {
		t.Errorf("doc 2: exit %d\n%s", code, out)
	}
	out, _, code = runCLI(t, nil, "events", "--data-dir", dir, "--record", "doc:2", "--at", "2026-11-24")
	if code != exitOK || !strings.Contains(out, "  body  ? (not known") {
		t.Errorf("doc 2, table: exit %d\n%s", code, out)
	}
}
