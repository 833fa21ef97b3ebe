package export

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

var t0 = time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)

type spec struct {
	schema, table string
	op            audit.Op
	minute        int
	after         audit.Row
}

// store builds a real store holding one event per spec, commit order = spec
// order, commit times t0 + minute.
func store(t *testing.T, specs []spec) *sink.Store {
	t.Helper()
	s, err := sink.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var b sink.Batch
	for i, sp := range specs {
		commit := uint64(i+1) << 8
		e := &audit.Event{
			LSN: commit - 0x10, CommitLSN: commit, Ordinal: 1, XID: uint32(700 + i),
			CommitTime: t0.Add(time.Duration(sp.minute) * time.Minute),
			Database:   "odoo", Schema: sp.schema, Table: sp.table, Op: sp.op,
			Key:   audit.Row{{Name: "id", Value: []byte("1")}},
			After: sp.after,
		}
		if sp.op == audit.OpTruncate {
			e.Key = nil
		}
		b.Events = append(b.Events, sink.Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil)})
		b.Checkpoint = commit + 8
	}
	if _, err := s.Append([]sink.Batch{b}); err != nil {
		t.Fatal(err)
	}
	return s
}

var basic = []spec{
	{"public", "sale_order", audit.OpInsert, 0, nil},
	{"public", "res_partner", audit.OpUpdate, 10, nil},
	{"public", "sale_order_line", audit.OpDelete, 20, nil},
	{"acct", "res_partner", audit.OpUpdate, 30, nil},
	{"public", "account_move", audit.OpTruncate, 40, nil},
}

func TestJSONLIsVerbatim(t *testing.T) {
	s := store(t, basic)
	var want bytes.Buffer
	s.Scan(nil, nil, func(_, rec []byte) error { want.Write(rec); want.WriteByte('\n'); return nil })
	var got bytes.Buffer
	n, err := Write(&got, s, sink.Query{}, "jsonl")
	if err != nil || n != 5 {
		t.Fatalf("n=%d err=%v", n, err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("jsonl differs from the stored records:\n%s", got.Bytes())
	}
	// Every line still verifies on its own.
	for _, line := range strings.Split(strings.TrimSuffix(got.String(), "\n"), "\n") {
		if _, _, _, err := audit.Check([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCSVRoundTrip(t *testing.T) {
	// Commas, double quotes and newlines in values, in json values and in
	// identifiers (which reach the CSV as plain text: raw newlines there).
	tricky := audit.Row{
		{Name: "name", Value: []byte(`"Smith, \"Bob\"\nLine 2"`)},
		{Name: "data", Value: []byte(`{"a":"x,y","b":[1,2],"c":"say \"hi\""}`)},
		{Name: "note,with \"comma\"", Value: []byte(`"tab\there"`)},
	}
	s := store(t, []spec{
		{"public", "res_partner", audit.OpInsert, 0, tricky},
		{"we\"ird", "ta,ble\nx", audit.OpUpdate, 1, audit.Row{{Name: "x", Value: []byte("null")}}},
		{"public", "account_move", audit.OpTruncate, 2, nil},
	})
	var buf bytes.Buffer
	n, err := Write(&buf, s, sink.Query{}, "csv")
	if err != nil || n != 3 {
		t.Fatalf("n=%d err=%v", n, err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rows[0], ",") != strings.Join(Columns, ",") || len(rows) != 4 {
		t.Fatalf("header %v, %d rows", rows[0], len(rows))
	}
	i := 1
	err = s.Scan(nil, nil, func(_, rec []byte) error {
		r, err := audit.ParseRecord(rec)
		if err != nil {
			return err
		}
		row := rows[i]
		i++
		var m map[string]json.RawMessage
		json.Unmarshal(rec, &m)
		for c, name := range Columns {
			want := string(m[name])
			var s string
			if len(m[name]) > 0 && m[name][0] == '"' && json.Unmarshal(m[name], &s) == nil {
				want = s // strings appear unquoted
			}
			if name == "model" && r.Model == nil {
				want = ""
			}
			if row[c] != want {
				t.Errorf("event %s column %s:\n got %q\nwant %q", r.ID, name, row[c], want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rows[1][12], `\n`) || !strings.Contains(rows[1][12], `,`) ||
		!strings.Contains(rows[2][6], `"`) || !strings.Contains(rows[2][7], ",") || !strings.Contains(rows[2][7], "\n") {
		t.Fatalf("the test data lost its tricky characters: %q", rows[1:])
	}
}

func ids(t *testing.T, s Source, f sink.Query) string {
	t.Helper()
	var buf bytes.Buffer
	n, err := Write(&buf, s, f, "jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(buf.String()) {
		r, err := audit.ParseRecord([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r.Schema+"."+r.Table)
	}
	if uint64(len(out)) != n {
		t.Fatalf("n=%d for %d lines", n, len(out))
	}
	return strings.Join(out, " ")
}

func TestFilters(t *testing.T) {
	s := store(t, basic)
	cases := []struct {
		name string
		f    sink.Query
		want string
	}{
		{"none", sink.Query{}, "public.sale_order public.res_partner public.sale_order_line acct.res_partner public.account_move"},
		{"since", sink.Query{Since: t0.Add(20 * time.Minute)}, "public.sale_order_line acct.res_partner public.account_move"},
		{"until exclusive", sink.Query{Until: t0.Add(20 * time.Minute)}, "public.sale_order public.res_partner"},
		{"window", sink.Query{Since: t0.Add(5 * time.Minute), Until: t0.Add(35 * time.Minute)},
			"public.res_partner public.sale_order_line acct.res_partner"},
		{"table", sink.Query{Tables: []string{"res_partner"}}, "public.res_partner acct.res_partner"},
		{"schema.table", sink.Query{Tables: []string{"acct.res_partner"}}, "acct.res_partner"},
		{"glob", sink.Query{Tables: []string{"sale_*"}}, "public.sale_order public.sale_order_line"},
		{"schema glob", sink.Query{Tables: []string{"public.*"}},
			"public.sale_order public.res_partner public.sale_order_line public.account_move"},
		{"ops", sink.Query{Ops: []audit.Op{audit.OpDelete, audit.OpTruncate}}, "public.sale_order_line public.account_move"},
		{"combined", sink.Query{Tables: []string{"res_partner", "sale_*"}, Ops: []audit.Op{audit.OpUpdate},
			Since: t0.Add(20 * time.Minute)}, "acct.res_partner"},
		{"nothing", sink.Query{Tables: []string{"nope"}}, ""},
	}
	for _, c := range cases {
		if got := ids(t, s, c.f); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
	// CSV filters the same way.
	var buf bytes.Buffer
	if n, err := Write(&buf, s, sink.Query{Ops: []audit.Op{audit.OpUpdate}}, "csv"); err != nil || n != 2 {
		t.Fatalf("csv filter: n=%d err=%v", n, err)
	}
	if rows, _ := csv.NewReader(&buf).ReadAll(); len(rows) != 3 {
		t.Fatalf("csv filter: %d rows", len(rows))
	}
}

func TestBadArguments(t *testing.T) {
	s := store(t, basic)
	for _, c := range []struct {
		f      sink.Query
		format string
	}{
		{sink.Query{}, "xml"},
		{sink.Query{Tables: []string{"sale_["}}, "jsonl"},
		{sink.Query{Ops: []audit.Op{9}}, "csv"},
	} {
		var buf bytes.Buffer
		if _, err := Write(&buf, s, c.f, c.format); err == nil || buf.Len() != 0 {
			t.Errorf("%+v %s: err=%v, wrote %d bytes", c.f, c.format, err, buf.Len())
		}
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n -= len(p); w.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriteErrorStops(t *testing.T) {
	s := store(t, basic)
	// The bufio layer holds 64 KiB: with a small store the error shows at
	// the final flush, and must still be reported.
	for _, format := range Formats {
		if _, err := Write(&failWriter{n: 100}, s, sink.Query{}, format); err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("%s: %v", format, err)
		}
	}
	if _, err := Write(io.Discard, s, sink.Query{}, "csv"); err != nil {
		t.Fatal(err)
	}
}

// Snapshot records are written only when the filter's operations name
// them; a model or value that spells "op":"snapshot" does not fool it.
func TestSnapshotRecordsOnlyWhenAsked(t *testing.T) {
	s := store(t, []spec{
		{"public", "sale_order", audit.OpInsert, 0, audit.Row{{Name: "note", Value: []byte(`",\"op\":\"snapshot\""`)}}},
		{"public", "sale_order", audit.OpSnapshot, 1, audit.Row{{Name: "id", Value: []byte("1")}}},
		{"public", "res_partner", audit.OpSnapshot, 2, nil},
		{"public", "sale_order", audit.OpUpdate, 3, nil},
	})
	for _, c := range []struct {
		f    sink.Query
		want []string
	}{
		{sink.Query{}, []string{"insert", "update"}},
		{sink.Query{Tables: []string{"sale_order"}}, []string{"insert", "update"}},
		{sink.Query{Ops: []audit.Op{audit.OpSnapshot}}, []string{"snapshot", "snapshot"}},
		{sink.Query{Ops: []audit.Op{audit.OpSnapshot, audit.OpUpdate}, Tables: []string{"sale_order"}}, []string{"snapshot", "update"}},
	} {
		for _, format := range Formats {
			var buf bytes.Buffer
			n, err := Write(&buf, s, c.f, format)
			if err != nil || int(n) != len(c.want) {
				t.Fatalf("%+v %s: %d events, %v; want %v", c.f, format, n, err, c.want)
			}
			if format != "jsonl" {
				continue
			}
			var ops []string
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				r, err := audit.ParseRecord([]byte(line))
				if err != nil {
					t.Fatal(err)
				}
				ops = append(ops, r.Op)
			}
			if strings.Join(ops, ",") != strings.Join(c.want, ",") {
				t.Errorf("%+v: ops %v, want %v", c.f, ops, c.want)
			}
		}
	}
}
