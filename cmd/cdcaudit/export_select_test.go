package main

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

// --user, --session and --record select the events of one user, session
// or record, with the other filters.
func TestExportSelections(t *testing.T) {
	dir := t.TempDir()
	s, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	uid := int64(9)
	actors := []audit.Actor{
		{Login: "alice@example.com", UserVia: "session_row", SessionID: "s1", SessionVia: "same_tx"},
		{Login: "bob@example.com", UserVia: "session_row", SessionID: "s2", SessionVia: "same_tx"},
		{Login: "alice@example.com", UserVia: "session_row", SessionID: "s3", SessionVia: "same_tx"},
		{UserID: &uid, UserVia: "row_user", SessionVia: "none"},
	}
	var batches []sink.Batch
	for i := 0; i < 12; i++ {
		id := []byte(fmt.Sprint(i%3 + 1))
		e := &audit.Event{LSN: uint64(0x1000 + i*0x100), CommitLSN: uint64(0x1080 + i*0x100), Ordinal: 1, XID: uint32(700 + i),
			CommitTime: base.Add(time.Duration(i) * time.Minute), Database: "erp", Schema: "public", Table: "sale_order",
			Op: audit.OpUpdate, Key: audit.Row{{Name: "id", Value: id}}, Before: audit.Row{{Name: "id", Value: id}},
			After: audit.Row{{Name: "id", Value: id}}, Actor: actors[i%4]}
		if i == 10 { // a key change: 2 → 7
			e.Key, e.After = audit.Row{{Name: "id", Value: []byte("7")}}, audit.Row{{Name: "id", Value: []byte("7")}}
		}
		batches = append(batches, sink.Batch{Events: []sink.Encoded{{Key: e.StoreKey(), Body: e.AppendBody(nil)}}, Checkpoint: e.CommitLSN + 8})
	}
	if _, err := s.Append(batches); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		args []string
		want string // the minutes of the events written
	}{
		{[]string{"--user", "alice@example.com"}, "0 2 4 6 8 10"},
		{[]string{"--user", "#9"}, "3 7 11"},
		{[]string{"--user", "carol@example.com"}, ""},
		{[]string{"--session", "s3"}, "2 6 10"},
		{[]string{"--user", "alice@example.com", "--session", "s1"}, "0 4 8"},
		{[]string{"--record", "sale_order:2"}, "1 4 7 10"},
		{[]string{"--record", "public.sale_order:7"}, "10"},
		{[]string{"--record", `sale_order:{"id":3}`, "--since", "2026-11-23T10:03:00Z"}, "5 8 11"},
		{[]string{"--record", "sale_order:1", "--user", "bob@example.com"}, "9"},
		{[]string{"--record", "res_partner:1"}, ""},
	} {
		out, errOut, code := runCLI(t, nil, append([]string{"export", "--data-dir", dir}, c.args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, errOut)
		}
		var minutes []string
		for line := range strings.Lines(out) {
			var ev struct {
				CommitTime time.Time `json:"commit_time"`
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("%v: %q: %v", c.args, line, err)
			}
			minutes = append(minutes, fmt.Sprint(int(ev.CommitTime.Sub(base)/time.Minute)))
		}
		if got := strings.Join(minutes, " "); got != c.want {
			t.Errorf("%v: events of minutes %q, want %q", c.args, got, c.want)
		}
	}
}

// A store written before the indexes (the golden store of the export
// tests): export and events answer the same before and after its indexes
// are built, and say so while they are missing.
func TestQueriesOnAStoreWithoutIndexes(t *testing.T) {
	dir := t.TempDir()
	in, err := os.Open("../../export/testdata/golden-store.db.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, sink.FileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	queries := [][]string{
		{"export", "--data-dir", dir, "--table", "sale_order*", "--op", "update"},
		{"export", "--data-dir", dir, "--user", "anna.meier1@example.com", "--format", "csv"},
		{"events", "--data-dir", dir, "--record", "public.sale_order:1"},
		{"events", "--data-dir", dir, "--record", "stock_lot:REF/2026/100001", "--format", "jsonl"},
	}
	var before []string
	for _, q := range queries {
		out, errOut, code := runCLI(t, nil, q...)
		if code != 0 || out == "" || !strings.Contains(errOut, "indexes are not complete") || !strings.Contains(errOut, "cdcaudit reindex --data-dir "+dir) {
			t.Fatalf("%v: exit %d, %d bytes, stderr %q", q, code, len(out), errOut)
		}
		before = append(before, out)
	}
	if _, errOut, code := runCLI(t, nil, "reindex", "--data-dir", dir); code != 0 {
		t.Fatalf("reindex: %d %s", code, errOut)
	}
	for i, q := range queries {
		out, errOut, code := runCLI(t, nil, q...)
		if code != 0 || errOut != "" {
			t.Fatalf("%v after reindex: exit %d, stderr %q", q, code, errOut)
		}
		if out != before[i] {
			t.Errorf("%v: the answer changed once the indexes were built", q)
		}
	}
}

// userIDStore holds user 9 (carol@example.com) in its session state and
// 12 events a minute apart from base, under the actors of TestExportUserByID.
func userIDStore(t *testing.T) (dir string, base time.Time) {
	t.Helper()
	tr, err := sessions.New(profile.Odoo(), sessions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	base = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tr.Observe(&audit.Event{CommitLSN: 0x100, Ordinal: 1, CommitTime: base, Schema: "public", Table: "res_users", Op: audit.OpInsert,
		Key:   audit.Row{{Name: "id", Value: []byte("9")}},
		After: audit.Row{{Name: "id", Value: []byte("9")}, {Name: "login", Value: []byte(`"carol@example.com"`)}, {Name: "password", Value: []byte(`"x"`)}}})
	var state []sink.StateRecord
	for _, u := range tr.Dirty() {
		state = append(state, sink.StateRecord{Bucket: "sessions", Key: u.Key, Value: u.Value})
	}
	nine, twelve := int64(9), int64(12)
	actors := []audit.Actor{
		{UserID: &nine, UserVia: "row_user"},                             // login not known yet: under #9
		{UserID: &nine, Login: "carol@example.com", UserVia: "row_user"}, // under the login
		{UserID: &twelve, Login: "carol@example.com", UserVia: "row_user"},
		{UserID: &twelve, UserVia: "row_user"},
	}
	dir = t.TempDir()
	s, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	batches := []sink.Batch{{State: state}}
	for i := 0; i < 12; i++ {
		e := &audit.Event{LSN: uint64(0x1000 + i*0x100), CommitLSN: uint64(0x1080 + i*0x100), Ordinal: 1, XID: uint32(700 + i),
			CommitTime: base.Add(time.Duration(i) * time.Minute), Database: "erp", Schema: "public", Table: "sale_order",
			Op: audit.OpUpdate, Key: audit.Row{{Name: "id", Value: []byte("1")}}, After: audit.Row{{Name: "id", Value: []byte("1")}}, Actor: actors[i%4]}
		batches = append(batches, sink.Batch{Events: []sink.Encoded{{Key: e.StoreKey(), Body: e.AppendBody(nil)}}, Checkpoint: e.CommitLSN + 8})
	}
	if _, err := s.Append(batches); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, base
}

// --user '#9' finds user 9's events under its login as well as those that
// name it by id only; an event under the same login that names another
// user (the login passed on) is not user 9's.
func TestExportUserByID(t *testing.T) {
	dir, base := userIDStore(t)
	page := exportPage
	exportPage = 2 // each term's events come in pages, merged in commit order
	t.Cleanup(func() { exportPage = page })
	for _, c := range []struct {
		args []string
		want string // the minutes of the events written
	}{
		{[]string{"--user", "#9"}, "0 1 4 5 8 9"},
		{[]string{"--user", "#9", "--since", "2026-11-23T10:04:00Z", "--until", "2026-11-23T10:09:00Z"}, "4 5 8"},
		{[]string{"--user", "#9", "--format", "csv"}, "0 1 4 5 8 9"},
		{[]string{"--user", "#12"}, "3 7 11"},      // no login known for 12
		{[]string{"--user", "#09"}, "0 1 4 5 8 9"}, // the id as the index writes it
		{[]string{"--user", "carol@example.com"}, "1 2 5 6 9 10"},
	} {
		out, errOut, code := runCLI(t, nil, append([]string{"export", "--data-dir", dir}, c.args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, errOut)
		}
		var minutes []string
		for i, line := range slices.Collect(strings.Lines(out)) {
			var at time.Time
			var err error
			if slices.Contains(c.args, "csv") {
				if i == 0 {
					continue // the header
				}
				at, err = time.Parse(time.RFC3339, strings.Split(line, ",")[4])
			} else {
				var ev struct {
					CommitTime time.Time `json:"commit_time"`
				}
				err = json.Unmarshal([]byte(line), &ev)
				at = ev.CommitTime
			}
			if err != nil {
				t.Fatalf("%v: %q: %v", c.args, line, err)
			}
			minutes = append(minutes, fmt.Sprint(int(at.Sub(base)/time.Minute)))
		}
		if got := strings.Join(minutes, " "); got != c.want {
			t.Errorf("%v: events of minutes %q, want %q", c.args, got, c.want)
		}
	}
}
