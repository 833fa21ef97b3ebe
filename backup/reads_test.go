package backup

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// storeOf writes n events through the store's write path, one a second
// from t0, over two tables and three users, a note of pad bytes each, and
// leaves the store open.
func storeOf(t testing.TB, n, pad int) (*sink.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var batches []sink.Batch
	for i := range n {
		uid := int64(i % 3)
		e := &audit.Event{LSN: uint64(0x1000 + i*0x100), CommitLSN: uint64(0x1080 + i*0x100), Ordinal: 1, XID: uint32(700 + i),
			CommitTime: t0.Add(time.Duration(i) * time.Second), Database: "erp", Schema: "public",
			Table: []string{"sale_order", "res_partner"}[i%2], Op: []audit.Op{audit.OpInsert, audit.OpUpdate, audit.OpDelete}[i%3],
			Key:   audit.Row{{Name: "id", Value: []byte(fmt.Sprint(i%50 + 1))}},
			After: audit.Row{{Name: "id", Value: []byte(fmt.Sprint(i%50 + 1))}, {Name: "note", Value: []byte(`"` + strings.Repeat("x", pad) + `"`)}},
			Actor: audit.Actor{UserID: &uid, Login: fmt.Sprintf("user%d", uid), UserVia: "row_user"}}
		batches = append(batches, sink.Batch{Events: []sink.Encoded{{Key: e.StoreKey(), Body: e.AppendBody(nil)}},
			Checkpoint: e.CommitLSN + 0x30, CommitTime: e.CommitTime})
	}
	if _, err := s.Append(batches); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append([]sink.Batch{{State: []sink.StateRecord{
		{Bucket: "sessions", Key: "a", Value: []byte("1")}, {Bucket: "sessions", Key: "b", Value: []byte{}}}}}); err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// serveReads serves s's reads on dir's socket until the test ends.
func serveReads(t *testing.T, dir string, s *sink.Store) *Server {
	t.Helper()
	srv, err := Serve(dir, s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv.ServeReads(s, nil)
	t.Cleanup(srv.Close)
	return srv
}

// small pages, so that every query spans several, some ended by their
// size in bytes.
func smallPages(t *testing.T, events, bytes int) {
	pe, pb := pageEvents, pageBytes
	pageEvents, pageBytes = events, bytes
	t.Cleanup(func() { pageEvents, pageBytes = pe, pb })
}

type answer struct {
	keys, records [][]byte
	next          string
	err           error
}

func ask(src interface {
	Query(context.Context, sink.Query, func(k, v []byte) error) (string, error)
}, q sink.Query) answer {
	var a answer
	a.next, a.err = src.Query(context.Background(), q, func(k, v []byte) error {
		a.keys, a.records = append(a.keys, bytes.Clone(k)), append(a.records, bytes.Clone(v))
		return nil
	})
	return a
}

// A query over the socket hands on exactly what the store hands on: the
// same keys and records in the same order, the same cursor, the same
// count, for every kind of filter, order and page.
func TestQueryOverTheSocket(t *testing.T) {
	s, dir := storeOf(t, 300, 100)
	serveReads(t, dir, s)
	smallPages(t, 7, 1500) // 7 events, or fewer when they pass 1500 bytes
	r, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	rec := audit.RecordRef{Schema: "public", Table: "sale_order", Key: audit.RecordKey{{Text: "3"}}}
	queries := []sink.Query{
		{},
		{Desc: true},
		{Tables: []string{"sale_*"}, Ops: []audit.Op{audit.OpInsert, audit.OpDelete}},
		{Since: t0.Add(17 * time.Second), Until: t0.Add(211 * time.Second).In(time.FixedZone("x", 3600))},
		{User: "user1", Desc: true},
		{User: "#2"},
		{Record: &rec},
		{Flag: "orm_bypass"},
		{Limit: 5},
		{Limit: 20, Tables: []string{"res_partner"}},
		{Limit: 300},
		{Limit: 301},
		{Limit: 13, Desc: true, User: "user0"},
	}
	for _, q := range queries {
		want, got := ask(s, q), ask(r, q)
		if got.err != nil || want.err != nil || got.next != want.next || len(got.keys) != len(want.keys) {
			t.Fatalf("%+v: %d events, next %q, %v; the store: %d, %q, %v", q, len(got.keys), got.next, got.err, len(want.keys), want.next, want.err)
		}
		for i := range want.keys {
			if !bytes.Equal(got.keys[i], want.keys[i]) || !bytes.Equal(got.records[i], want.records[i]) {
				t.Fatalf("%+v: event %d differs", q, i)
			}
		}
		// Following the cursor gives the same pages.
		for want.next != "" {
			q.Cursor = want.next
			want, got = ask(s, q), ask(r, q)
			if got.err != nil || got.next != want.next || len(got.keys) != len(want.keys) || (len(want.keys) > 0 && !bytes.Equal(got.keys[0], want.keys[0])) {
				t.Fatalf("%+v: the next page: %d events, %q, %v; the store: %d, %q", q, len(got.keys), got.next, got.err, len(want.keys), want.next)
			}
		}
		q.Cursor = ""
		wn, werr := s.Count(context.Background(), q)
		gn, gerr := r.Count(context.Background(), q)
		if gn != wn || gerr != nil || werr != nil {
			t.Errorf("%+v: count %d %v, the store %d %v", q, gn, gerr, wn, werr)
		}
	}
	// The store's errors keep their identity across the socket.
	_, err = r.Query(context.Background(), sink.Query{Cursor: "bogus"}, func(_, _ []byte) error { return nil })
	if !errors.Is(err, sink.ErrCursor) {
		t.Errorf("a bad cursor: %v, want sink.ErrCursor", err)
	}
	// fn's error stops the query and is returned as it is.
	stop := errors.New("enough")
	n := 0
	_, err = r.Query(context.Background(), sink.Query{}, func(_, _ []byte) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("fn's error: %v after %d events", err, n)
	}
	// The session state, whole; no other state.
	var kv []string
	if err := r.LoadState("sessions", func(k, v []byte) error { kv = append(kv, string(k)+"="+string(v)); return nil }); err != nil ||
		strings.Join(kv, ",") != "a=1,b=" {
		t.Errorf("LoadState: %q %v", kv, err)
	}
	if err := r.LoadState("images", func(_, _ []byte) error { return nil }); err == nil || !strings.Contains(err.Error(), "no state") {
		t.Errorf("LoadState of another bucket: %v", err)
	}
	if ok, err := r.IndexComplete(); !ok || err != nil {
		t.Errorf("IndexComplete: %v %v", ok, err)
	}
}

// The daemon's verify reports what the command's own verify reports.
func TestCheckChainOverTheSocket(t *testing.T) {
	s, dir := storeOf(t, 50, 10)
	if _, err := s.AppendAccess(sink.AccessEntry{Time: t0, Action: "signin", Result: "ok", Login: "alice"}); err != nil {
		t.Fatal(err)
	}
	serveReads(t, dir, s)
	r, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{audit.FormatID(0x1080+4*0x100, 1), audit.FormatID(0x99999, 1)}
	want, werr := CheckChain(context.Background(), s, ids, nil)
	var last [2]uint64
	got, gerr := r.CheckChain(context.Background(), ids, func(d, t uint64) { last = [2]uint64{d, t} })
	wj, _ := json.Marshal(want)
	gj, _ := json.Marshal(got)
	if werr != nil || gerr != nil || !bytes.Equal(wj, gj) {
		t.Fatalf("verify over the socket:\n%s %v\nhere:\n%s %v", gj, gerr, wj, werr)
	}
	if got.Result.Events != 50 || got.Access != 1 || !got.Points[ids[0]].Found || got.Points[ids[1]].Found || got.Broken != nil {
		t.Errorf("report: %s", gj)
	}
	_ = last // progress frames come every half second: a small store is done before
	if _, err := r.CheckChain(context.Background(), []string{"not an id"}, nil); err == nil || !strings.Contains(err.Error(), "not an event id") {
		t.Errorf("a bad waypoint: %v", err)
	}
}

// A reply cut short (the daemon stops mid-way) is an error, never a short
// answer; a client that stops reading holds up neither the others nor the
// daemon's stop.
func TestStreamsEndCompleteOrInAnError(t *testing.T) {
	s, dir := storeOf(t, 4000, 1000) // some 4 MB: more than the socket holds
	srv := serveReads(t, dir, s)
	r, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A client that sends a query and never reads.
	stalled, err := net.Dial("unix", filepath.Join(dir, SocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	fmt.Fprintf(stalled, "query 2\n{}")
	if _, err := bufio.NewReader(stalled).ReadString('\n'); err != nil { // "stream": it is being served
		t.Fatal(err)
	}
	// Others are served meanwhile.
	if n, err := r.Count(context.Background(), sink.Query{}); n != 4000 || err != nil {
		t.Fatalf("a count beside a stalled query: %d %v", n, err)
	}
	// A client that goes away mid-reply ends its request at once (not
	// after stallAfter): only the stalled one is left.
	gone := errors.New("gone")
	if _, err := r.Query(context.Background(), sink.Query{}, func(_, _ []byte) error { return gone }); err != gone {
		t.Fatalf("fn's error: %v", err)
	}
	for {
		srv.mu.Lock()
		n := len(srv.active)
		srv.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// The daemon stops in the middle of a reply: the reader gets an error.
	n := 0
	closed := make(chan struct{})
	_, err = r.Query(context.Background(), sink.Query{}, func(_, _ []byte) error {
		if n++; n == 1 {
			go func() { srv.Close(); close(closed) }() // ends the stalled query and this one
		}
		return nil
	})
	if err == nil || n == 4000 || !strings.Contains(err.Error(), "ended early") {
		t.Fatalf("a reply cut short: %v after %d events", err, n)
	}
	<-closed
	if _, err := Dial(dir); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("after Close: %v", err)
	}
}

// Requests are untrusted: each malformed one is refused with a reason, and
// the daemon goes on serving.
func TestBadRequests(t *testing.T) {
	s, dir := storeOf(t, 3, 1)
	serveReads(t, dir, s)
	raw := func(req string) string {
		c, err := net.Dial("unix", filepath.Join(dir, SocketName))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, req)
		c.(*net.UnixConn).CloseWrite() // nothing more comes
		b, _ := io.ReadAll(io.LimitReader(c, 4096))
		return string(b)
	}
	framed := func(verb, body string) string { return fmt.Sprintf("%s %d\n%s", verb, len(body), body) }
	for req, want := range map[string]string{
		"query\n":                           "error malformed request",
		"query -1\n":                        "error malformed request",
		"query 99999999999\n":               "error malformed request",
		"query 2\n{":                        "error the request ended before its body",
		"query 1\n{}":                       "unexpected EOF",
		"drop 2\n{}":                        "error unknown request",
		framed("query", `[]`):               "cannot unmarshal array",
		framed("query", `{"x":1}`):          "unknown field",
		framed("query", `{}{}`):             "something follows",
		framed("count", `{"limit":-1}`):     "limit -1",
		framed("query", `{"ops":["drop"]}`): "drop",
		framed("query", `{"tables":["["]}`): "not a valid glob",
		framed("query", `{"user":"`+strings.Repeat("u", maxName+1)+`"}`):                                                     "at most 4096",
		framed("query", `{"record":{"schema":"s","table":"t","key":[]}}`):                                                    "1 to 1024 values",
		framed("query", `{"record":{"table":"","key":[{"text":"1"}]}}`):                                                      "a table name",
		framed("query", `{"record":{"schema":"s","table":"t","key":[{"column":"b","text":"1"},{"column":"a","text":"2"}]}}`): "sorted and distinct",
		framed("query", `{"record":{"schema":"s","table":"t","key":[{"text":"1"},{"column":"a","text":"2"}]}}`):              "names each column",
		framed("state", `{"bucket":"images"}`):                                                                               "no state",
		framed("verify", `{"waypoints":["x"]}`):                                                                              "not an event id",
		framed("info", `{"a":1}`):                                                                                            "unknown field",
	} {
		got := raw(req)
		if !strings.Contains(got, want) {
			t.Errorf("%.80q: %q, want %q", req, got, want)
		}
	}
	long := "query " + strings.Repeat("1", maxRequest) + "\n"
	if got := raw(long); got != "error unknown request\n" {
		t.Errorf("a request line too long: %q", got)
	}
	if r, err := Dial(dir); err != nil {
		t.Fatalf("after the bad requests: %v", err)
	} else if n, err := r.Count(context.Background(), sink.Query{}); n != 3 || err != nil {
		t.Fatalf("after the bad requests: %d %v", n, err)
	}
}

// FuzzParseQuery: any body is refused or read into a query that the wire
// carries back unchanged.
func FuzzParseQuery(f *testing.F) {
	rec := audit.RecordRef{Schema: "public", Table: "t", Key: audit.RecordKey{{Column: "a", Text: "1"}, {Column: "b", Text: "x"}}}
	for _, q := range []sink.Query{{}, {Since: t0, Tables: []string{"sale_*"}, Ops: []audit.Op{audit.OpDelete}}, {Record: &rec, Limit: 5, Cursor: "c", Desc: true},
		{User: "#7", Session: "s1", Flag: "orm_bypass"}} {
		b, _ := encodeQuery(q)
		f.Add(b)
	}
	f.Add([]byte(`{"record":{"schema":"s","table":"t","key":[{"text":"1"}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		q, err := parseQuery(body)
		if err != nil {
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("%q: an error that is not a bad request: %v", body, err)
			}
			return
		}
		b, err := encodeQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		q2, err := parseQuery(b)
		if err != nil {
			t.Fatalf("%q: its own encoding %s is refused: %v", body, b, err)
		}
		b2, _ := encodeQuery(q2)
		if !bytes.Equal(b, b2) {
			t.Fatalf("%q: %s, then %s", body, b, b2)
		}
	})
}

// FuzzRequests: any body of any read request, answered from a real store,
// is answered or refused, never a crash.
func FuzzRequests(f *testing.F) {
	s, _ := storeOf(f, 40, 10)
	r := &reads{st: s}
	verbs := []StreamHandler{r.info, r.query, r.count, r.state, r.verify}
	for i, body := range []string{`{}`, `{"tables":["sale_*"],"limit":3}`, `{"record":{"schema":"public","table":"sale_order","key":[{"text":"3"}]}}`,
		`{"bucket":"sessions"}`, `{"waypoints":["0000000000001080-000001"]}`} {
		f.Add(byte(i), []byte(body))
	}
	f.Fuzz(func(t *testing.T, verb byte, body []byte) {
		st := &Stream{w: bufio.NewWriter(io.Discard)}
		err := verbs[int(verb)%len(verbs)](context.Background(), body, st)
		if err != nil && errorKind(err) == "" {
			t.Fatalf("%q: %v: neither a bad request nor an error of the store", body, err)
		}
	})
}

// A few requests are served at once; more are told to come back, and are
// served once the others are done.
func TestBusy(t *testing.T) {
	s, dir := storeOf(t, 3, 1)
	serveReads(t, dir, s)
	var idle []net.Conn
	for range maxConns {
		c, err := net.Dial("unix", filepath.Join(dir, SocketName))
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c) // connected, no request yet
	}
	// The server takes them in turn: once all are taken, the next is refused.
	for {
		_, err := Dial(dir)
		if err != nil && strings.Contains(err.Error(), "serving 8 requests already") {
			break
		}
		if err == nil {
			t.Fatal("a request served beside 8 others")
		}
	}
	for _, c := range idle {
		c.Close()
	}
	for {
		if _, err := Dial(dir); err == nil {
			break
		} else if !strings.Contains(err.Error(), "serving 8 requests already") {
			t.Fatal(err)
		}
	}
}
