package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// scanned is a store read once by a scan, every record parsed.
type scanned []struct {
	record []byte
	parsed *audit.Record
}

func scanAll(t *testing.T, s *sink.Store) scanned {
	t.Helper()
	var all scanned
	err := s.Scan(nil, nil, func(_, record []byte) error {
		r, err := audit.ParseRecord(record)
		all = append(all, struct {
			record []byte
			parsed *audit.Record
		}{bytes.Clone(record), r})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// reference is the export of before the indexes, kept as the measure of
// the indexed one: every record of the scan, matched against the filter
// (extended by the filters of the indexes: user, session, record).
func reference(t *testing.T, all scanned, f sink.Query) []byte {
	t.Helper()
	var out bytes.Buffer
	snapshots := slices.Contains(f.Ops, audit.OpSnapshot)
	for _, r := range all {
		if !snapshots && audit.IsSnapshotRecord(r.record) {
			continue
		}
		ok, err := referenceMatch(&f, r.parsed, r.record)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			out.Write(r.record)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

func referenceMatch(f *sink.Query, r *audit.Record, record []byte) (bool, error) {
	if !f.Since.IsZero() && r.CommitTime.Before(f.Since) {
		return false, nil
	}
	if !f.Until.IsZero() && !r.CommitTime.Before(f.Until) {
		return false, nil
	}
	if len(f.Ops) > 0 && !slices.ContainsFunc(f.Ops, func(o audit.Op) bool { return o.String() == r.Op }) {
		return false, nil
	}
	if len(f.Tables) > 0 {
		qualified := r.Schema + "." + r.Table
		if !slices.ContainsFunc(f.Tables, func(p string) bool {
			ok1, _ := path.Match(p, r.Table)
			ok2, _ := path.Match(p, qualified)
			return ok1 || ok2
		}) {
			return false, nil
		}
	}
	if f.User != "" || f.Session != "" {
		var a struct {
			UserID  *int64 `json:"user_id"`
			Login   string `json:"login"`
			Session string `json:"session_id"`
		}
		if err := json.Unmarshal(r.Actor, &a); err != nil {
			return false, err
		}
		if f.User != "" && audit.UserTerm(a.Login, a.UserID) != f.User || f.Session != "" && a.Session != f.Session {
			return false, nil
		}
	}
	if f.Record != nil {
		return f.Record.Matches(record)
	}
	return true, nil
}

// The indexed export writes exactly what the scan of before wrote, for
// the filters of before and for the new ones, alone and combined.
func TestExportMatchesReference(t *testing.T) {
	s := openGolden(t, true)
	var users, sessions []string
	var records []*audit.RecordRef
	seen := map[string]bool{}
	s.Scan(nil, nil, func(_, rec []byte) error {
		tm, err := audit.ParseTerms(rec)
		if err != nil || len(seen) > 400 {
			return nil
		}
		if tm.User != "" && !seen[tm.User] && len(users) < 5 {
			users = append(users, tm.User)
		}
		if tm.Session != "" && !seen[tm.Session] && len(sessions) < 5 {
			sessions = append(sessions, tm.Session)
		}
		seen[tm.User], seen[tm.Session] = true, true
		r, _ := audit.ParseRecord(rec)
		if len(records) < 16 && r.Op != "truncate" && !seen[r.Table+string(r.Key)] {
			seen[r.Table+string(r.Key)] = true
			ref, err := audit.ParseRecordRef(r.Schema + "." + r.Table + ":" + string(r.Key))
			if err == nil {
				records = append(records, &ref)
			}
		}
		return nil
	})
	if len(users) < 5 || len(sessions) < 5 || len(records) < 16 {
		t.Fatalf("the golden store gave %d users, %d sessions, %d records", len(users), len(sessions), len(records))
	}
	users = append(users, "#1003", "nobody@example.com")
	sessions = append(sessions, "s000000000000000000000000")
	one := func(s string) *audit.RecordRef { r, _ := audit.ParseRecordRef(s); return &r }
	records = append(records, one("sale_order:1"), one("acct.res_company:1"), one("res_partner:3"),
		one(`stock_lot:REF/2026/100001`), one(`public.stock_lot:{"code":"REF/2026/100002"}`),
		one(`sale_order_tag_rel:{"order_id":1,"tag_id":2}`), one("sale_order:999999"), one(`sale_order:{"nope":1}`))

	var filters []sink.Query
	for _, c := range goldenFilters() {
		filters = append(filters, c.f)
	}
	day := goldenStart.Add(6 * time.Hour)
	for i, u := range users {
		filters = append(filters, sink.Query{User: u}, sink.Query{User: u, Since: day, Until: day.Add(12 * time.Hour)},
			sink.Query{User: u, Tables: []string{"mail_*", "account_move"}}, sink.Query{User: u, Ops: []audit.Op{audit.OpDelete}})
		if i < len(sessions) {
			filters = append(filters, sink.Query{User: u, Session: sessions[i]})
		}
	}
	for _, ss := range sessions {
		filters = append(filters, sink.Query{Session: ss}, sink.Query{Session: ss, Ops: []audit.Op{audit.OpUpdate}, Since: day})
	}
	for _, r := range records {
		filters = append(filters, sink.Query{Record: r}, sink.Query{Record: r, Ops: []audit.Op{audit.OpSnapshot}},
			sink.Query{Record: r, Ops: []audit.Op{audit.OpSnapshot, audit.OpInsert, audit.OpUpdate}}, sink.Query{Record: r, Until: day})
	}
	nonEmpty := 0
	all := scanAll(t, s)
	for _, f := range filters {
		want := reference(t, all, f)
		var got bytes.Buffer
		n, err := Write(&got, s, f, "jsonl")
		if err != nil {
			t.Fatalf("%s: %v", describe(f), err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: the export (%d events) differs from the scan's (%d)", describe(f), n, bytes.Count(want, []byte{'\n'}))
		}
		if len(want) > 0 {
			nonEmpty++
		}
	}
	if nonEmpty < len(filters)/2 {
		t.Errorf("only %d of %d filters select anything", nonEmpty, len(filters))
	}
}

func describe(f sink.Query) string {
	s := fmt.Sprintf("since %v until %v tables %v ops %v user %q session %q", f.Since, f.Until, f.Tables, f.Ops, f.User, f.Session)
	if f.Record != nil {
		s += " record " + f.Record.String()
	}
	return s
}

// Commit times follow commit order only as closely as the server's clock
// does: a time window selects by each event's own time, as before.
func TestTimeWindowsWithClockSkew(t *testing.T) {
	dir := t.TempDir()
	s, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var batches []sink.Batch
	for i := 0; i < 400; i++ {
		// Mostly ascending, every fifth transaction 0–40 minutes behind.
		at := t0.Add(time.Duration(i) * time.Minute)
		if i%5 == 0 {
			at = at.Add(-time.Duration(i*7%41) * time.Minute)
		}
		commit := uint64(i+1) << 12
		var b sink.Batch
		for j := 0; j < 1+i%3; j++ {
			e := &audit.Event{LSN: commit - 0x100 + uint64(j), CommitLSN: commit, Ordinal: uint32(j + 1), XID: uint32(700 + i),
				CommitTime: at, Database: "odoo", Schema: "public", Table: []string{"sale_order", "res_partner"}[j%2],
				Op: audit.OpInsert, Key: audit.Row{{Name: "id", Value: fmt.Appendf(nil, "%d", i)}}}
			b.Events = append(b.Events, sink.Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil)})
		}
		b.Checkpoint = commit + 8
		batches = append(batches, b)
	}
	if _, err := s.Append(batches); err != nil {
		t.Fatal(err)
	}
	all := scanAll(t, s)
	// The window [100, 140) holds events committed after minute 140's.
	if w := reference(t, all, sink.Query{Since: t0.Add(100 * time.Minute), Until: t0.Add(140 * time.Minute)}); !bytes.Contains(w, []byte(`"key":{"id":145}`)) {
		t.Fatal("the skewed event 145 (at minute 114) is not in the window: the test tests nothing")
	}
	for _, w := range [][2]int{{0, 10}, {30, 31}, {100, 140}, {395, 500}, {-50, 3}, {200, 0}} {
		f := sink.Query{Since: t0.Add(time.Duration(w[0]) * time.Minute)}
		if w[1] != 0 {
			f.Until = t0.Add(time.Duration(w[1]) * time.Minute)
		}
		for _, tables := range [][]string{nil, {"res_partner"}} {
			f.Tables = tables
			want := reference(t, all, f)
			var got bytes.Buffer
			if _, err := Write(&got, s, f, "jsonl"); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("%s: %d events, the scan %d", describe(f), bytes.Count(got.Bytes(), []byte{'\n'}), bytes.Count(want, []byte{'\n'}))
			}
		}
	}
}
