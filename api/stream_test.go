package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// streamWait is how long a test waits for something a stream must send.
const streamWait = 30 * time.Second

// streamServer serves the API over the fixture's store to p, over HTTP.
func (f *fixture) streamServer(t *testing.T, p *access.Principal, opts Options) *httptest.Server {
	t.Helper()
	opts.Sources, opts.Now = []Source{{Name: "odoo", Store: f.store, Signer: f.key}}, func() time.Time { return f.now }
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(access.NewContext(r.Context(), *p)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

var streamLSN atomic.Uint64

func init() { streamLSN.Store(0x100000000) }

// store appends one event per actor ("alice", "bob", "none") on table
// through the store's write path, in one transaction each, and returns
// their ids.
func (f *fixture) storeEvents(t *testing.T, table string, who ...string) []string {
	t.Helper()
	uid := func(n int64) *int64 { return &n }
	actors := map[string]audit.Actor{
		"alice": {UserID: uid(6), Login: "alice@example.com", UserVia: "session_row", SessionID: f.alice, SessionVia: "same_tx"},
		"bob":   {UserID: uid(7), Login: "bob@example.com", UserVia: "session_row", SessionID: f.bob, SessionVia: "same_tx"},
		"none":  {UserVia: "none", SessionVia: "none"},
	}
	var ids []string
	for _, w := range who {
		lsn := streamLSN.Add(0x100)
		e := &audit.Event{LSN: lsn - 0x10, CommitLSN: lsn, Ordinal: 1, XID: uint32(lsn >> 8), Database: "odoo",
			CommitTime: t0.Add(4 * time.Hour), Schema: "public", Table: table, Op: audit.OpInsert,
			Actor: actors[w], Key: audit.Row{{Name: "id", Value: []byte("1")}},
			After: audit.Row{{Name: "id", Value: []byte("1")}, {Name: "note", Value: []byte(`"line\nbreak"`)}}}
		b := sink.Batch{Events: []sink.Encoded{{Key: e.StoreKey(), Body: e.AppendBody(nil)}}, Checkpoint: lsn + 8}
		if _, err := f.store.Append([]sink.Batch{b}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID())
	}
	return ids
}

type sse struct{ id, event, data string }

// streamClient reads a stream: its events, and its comments.
type streamClient struct {
	status   int
	header   http.Header
	body     string // of an answer that is not a stream
	events   chan sse
	comments chan string
	closed   chan struct{}
	cancel   context.CancelFunc
}

// openStream opens target; a stream (200) is read until it has sent its
// first block (the retry delay), so that what is stored afterwards is
// after its start.
func openStream(t *testing.T, srv *httptest.Server, target, lastID string) *streamClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+target, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	c := &streamClient{status: resp.StatusCode, header: resp.Header, cancel: cancel,
		events: make(chan sse, 100), comments: make(chan string, 100), closed: make(chan struct{})}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.body = string(b)
		return c
	}
	started := make(chan struct{})
	go func() {
		defer close(c.closed)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sse
		var data []string
		first := true
		for sc.Scan() {
			line := sc.Text()
			name, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch {
			case line == "":
				if first {
					first = false
					close(started)
				}
				if data != nil {
					ev.data = strings.Join(data, "\n")
					c.events <- ev
				}
				ev, data = sse{}, nil
			case name == "":
				c.comments <- value
			case name == "id":
				ev.id = value
			case name == "event":
				ev.event = value
			case name == "data":
				data = append(data, value)
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(streamWait):
		t.Fatal("the stream sent nothing")
	}
	return c
}

func (c *streamClient) next(t *testing.T) sse {
	t.Helper()
	select {
	case e := <-c.events:
		return e
	case <-c.closed:
		t.Fatal("the stream ended")
	case <-time.After(streamWait):
		t.Fatal("no event came")
	}
	return sse{}
}

// nextIDs reads n events and returns their ids.
func (c *streamClient) nextIDs(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		ids = append(ids, c.next(t).id)
	}
	return ids
}

func TestEventStream(t *testing.T) {
	f := newFixture(t)
	srv := f.streamServer(t, &viewer, Options{})
	all := openStream(t, srv, "/api/v1/events/stream", "")
	if ct := all.header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" || all.header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", all.header)
	}
	filtered := openStream(t, srv, "/api/v1/events/stream?table=stock_*&user=bob@example.com", "")

	// Only events stored after the stream started: none of the fixture's.
	ids := f.storeEvents(t, "stock_move", "alice", "bob")
	ids = append(ids, f.storeEvents(t, "sale_order", "bob")...)
	ids = append(ids, f.storeEvents(t, "stock_move", "bob")...)
	for i, want := range ids {
		e := all.next(t)
		if e.id != want || e.event != "audit" {
			t.Fatalf("event %d: %+v, want id %s", i, e, want)
		}
		stored, err := f.store.Get(want)
		if err != nil {
			t.Fatal(err)
		}
		if e.data != string(stored) || !json.Valid([]byte(e.data)) {
			t.Errorf("data %s\nstored %s", e.data, stored)
		}
	}
	// The filters of /events: bob's events on stock_* only.
	if got := filtered.nextIDs(t, 2); got[0] != ids[1] || got[1] != ids[3] {
		t.Errorf("filtered stream: %v, want %v", got, []string{ids[1], ids[3]})
	}

	// Bad filters and a bad Last-Event-ID are refused before streaming.
	for _, c := range []struct{ target, lastID string }{
		{"/api/v1/events/stream?limit=5", ""},
		{"/api/v1/events/stream?cursor=abc", ""},
		{"/api/v1/events/stream?op=merge", ""},
		{"/api/v1/events/stream", "not-an-id"},
	} {
		if a := openStream(t, srv, c.target, c.lastID); a.status != http.StatusBadRequest || !strings.Contains(a.body, `"error"`) {
			t.Errorf("%s %q: %d %s", c.target, c.lastID, a.status, a.body)
		}
	}
}

// A self principal never receives another user's event, whatever it asks.
func TestEventStreamSelf(t *testing.T) {
	f := newFixture(t)
	srv := f.streamServer(t, &self, Options{})
	own := openStream(t, srv, "/api/v1/events/stream", "")
	other := openStream(t, srv, "/api/v1/events/stream?user=bob@example.com", "")
	// From the beginning of the store: the fixture's events too.
	resumed := openStream(t, srv, "/api/v1/events/stream", "0000000000000000-000000")

	bobs := f.storeEvents(t, "sale_order", "bob", "none", "bob")
	alices := f.storeEvents(t, "sale_order", "alice")
	// Bob's came first: had one leaked it would be read before alice's.
	if e := own.next(t); e.id != alices[0] {
		t.Errorf("self stream sent %s, want alice's %s (bob's: %v)", e.id, alices[0], bobs)
	}
	want := []string{f.ids["alice-insert-42"], f.ids["alice-update-42"], f.ids["alice-bypass-9"], alices[0]}
	got := resumed.nextIDs(t, len(want))
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("self stream from the start: %v, want %v", got, want)
	}
	// Asking for another user streams nothing; the next own event shows the
	// first stream still reads in order.
	more := f.storeEvents(t, "sale_order", "bob", "alice")
	if e := own.next(t); e.id != more[1] {
		t.Errorf("self stream sent %s, want %s", e.id, more[1])
	}
	select {
	case e := <-other.events:
		t.Errorf("a self stream of another user sent %+v", e)
	default:
	}
}

// Reconnecting with Last-Event-ID gets exactly the events missed, none
// twice, a page of two at a time.
func TestEventStreamResume(t *testing.T) {
	old := streamPage
	t.Cleanup(func() { streamPage = old }) // after the server's close
	streamPage = 2
	f := newFixture(t)
	srv := f.streamServer(t, &admin, Options{})
	c := openStream(t, srv, "/api/v1/events/stream", "")
	first := f.storeEvents(t, "res_partner", "alice", "bob")
	got := c.nextIDs(t, 2)
	c.cancel()
	<-c.closed

	missed := f.storeEvents(t, "res_partner", "bob", "none", "alice")
	c = openStream(t, srv, "/api/v1/events/stream", got[1])
	if got := c.nextIDs(t, 3); strings.Join(got, " ") != strings.Join(missed, " ") {
		t.Errorf("after reconnecting: %v, want %v (first %v)", got, missed, first)
	}
	later := f.storeEvents(t, "res_partner", "alice")
	if e := c.next(t); e.id != later[0] {
		t.Errorf("then %s, want %s", e.id, later[0])
	}
}

func TestEventStreamBounded(t *testing.T) {
	f := newFixture(t)
	done := make(chan struct{})
	srv := f.streamServer(t, &viewer, Options{MaxStreams: 2, Done: done})
	a := openStream(t, srv, "/api/v1/events/stream", "")
	b := openStream(t, srv, "/api/v1/events/stream?table=x", "")
	c := openStream(t, srv, "/api/v1/events/stream", "")
	if c.status != http.StatusServiceUnavailable || !strings.Contains(c.body, "too many event streams") {
		t.Fatalf("a third stream: %d %s", c.status, c.body)
	}
	// A stream whose client left gives its place back.
	a.cancel()
	deadline := time.Now().Add(streamWait)
	for {
		c = openStream(t, srv, "/api/v1/events/stream", "")
		if c.status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the place of a closed stream was not given back: %d", c.status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Done ends every stream.
	close(done)
	for _, s := range []*streamClient{b, c} {
		select {
		case <-s.closed:
		case <-time.After(streamWait):
			t.Fatal("a stream outlived Done")
		}
	}
}

func TestEventStreamKeepalive(t *testing.T) {
	defer func(poll, keep time.Duration) { streamPoll, streamKeepalive = poll, keep }(streamPoll, streamKeepalive)
	streamPoll, streamKeepalive = 5*time.Millisecond, 20*time.Millisecond
	f := newFixture(t)
	srv := f.streamServer(t, &self, Options{})
	c := openStream(t, srv, "/api/v1/events/stream?user=bob@example.com", "")
	select {
	case s := <-c.comments:
		if s != "keepalive" {
			t.Errorf("comment %q", s)
		}
	case <-time.After(streamWait):
		t.Fatal("no keepalive")
	}
}

// FuzzSSEEvent: whatever a stored record holds, the stream carries it as
// one event of its id whose data is the record, line breaks made "\n".
func FuzzSSEEvent(f *testing.F) {
	for _, s := range []string{`{"a":1}`, "a\nb", "a\r\nb", "a\rb\n", "\n\nid: 1\nevent: x\n\n", "", "\r", "data: x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rec string) {
		key := audit.MakeKey(0x16B3800, 3)
		out := string(sseEvent(key[:], []byte(rec)))
		// Parse as a browser does: lines end at CR, LF or CRLF; a blank line
		// ends an event.
		lines := strings.Split(strings.ReplaceAll(strings.ReplaceAll(out, "\r\n", "\n"), "\r", "\n"), "\n")
		var events []sse
		var ev sse
		var data []string
		for _, line := range lines {
			if line == "" {
				if data != nil {
					ev.data = strings.Join(data, "\n")
					events = append(events, ev)
				}
				ev, data = sse{}, nil
				continue
			}
			name, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch name {
			case "id":
				ev.id = value
			case "event":
				ev.event = value
			case "data":
				data = append(data, value)
			default:
				t.Fatalf("field %q in %q", name, out)
			}
		}
		want := strings.ReplaceAll(strings.ReplaceAll(rec, "\r\n", "\n"), "\r", "\n")
		if len(events) != 1 || events[0] != (sse{id: "00000000016B3800-000003", event: "audit", data: want}) {
			t.Fatalf("%q streamed as %q: %+v", rec, out, events)
		}
	})
}

// A stream ends after streamMaxAge; the client reconnects (and signs in
// again) with Last-Event-ID.
func TestEventStreamMaxAge(t *testing.T) {
	// Restored after the server's cleanup has closed it (cleanups run last
	// first): its handlers read streamMaxAge until then.
	old := streamMaxAge
	t.Cleanup(func() { streamMaxAge = old })
	streamMaxAge = 100 * time.Millisecond
	f := newFixture(t)
	srv := f.streamServer(t, &viewer, Options{MaxStreams: 1})
	c := openStream(t, srv, "/api/v1/events/stream", "")
	select {
	case <-c.closed:
	case <-time.After(streamWait):
		t.Fatal("the stream outlived streamMaxAge")
	}
	// Its place is given back.
	deadline := time.Now().Add(streamWait)
	for openStream(t, srv, "/api/v1/events/stream", "").status != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("no place after the stream ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
