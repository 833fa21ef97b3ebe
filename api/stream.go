package api

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// DefaultMaxStreams is how many event streams may be open at once when
// Options.MaxStreams is 0.
const DefaultMaxStreams = 32

// How a stream follows the store; variables for tests.
var (
	// streamPoll is how often a stream looks at the store's head.
	streamPoll = 250 * time.Millisecond
	// streamKeepalive is how long a stream stays silent before it writes
	// a comment, so that proxies and the browser keep the connection.
	streamKeepalive = 15 * time.Second
	// streamPage is the most events one read transaction hands a stream.
	streamPage = 100
	// streamMaxAge ends a stream: EventSource reconnects (Last-Event-ID),
	// and the reconnection signs in again, so that a session that ended or
	// a token that expired reads no more than this long.
	streamMaxAge = 5 * time.Minute
)

// streamRetry is the reconnection delay the stream asks EventSource for.
const streamRetry = "retry: 2000\n\n"

// Follower is a store whose head can be watched cheaply (sink.Store): the
// event stream looks at it, and reads only when it moved.
type Follower interface {
	Head() (key []byte, hash audit.Hash, count uint64)
}

// eventStream serves GET /api/v1/events/stream: Server-Sent Events of the
// events stored from now on (or after Last-Event-ID) that the filters
// select, kept to a self principal's own. Each look at the store is one
// short read transaction per page; events are written after it ended.
func (s *server) eventStream(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	store, ok := s.store.(Follower)
	if !ok {
		return errNotFound("this store cannot be followed")
	}
	q, none, err := eventsQuery(r, p, false)
	if err != nil {
		return err
	}
	var after []byte
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		lsn, ord, err := audit.ParseID(id)
		if err != nil {
			return badRequest("Last-Event-ID %q: not an event id this stream sent", clip(id))
		}
		k := audit.MakeKey(lsn, ord)
		after = k[:]
	}
	if !s.streams.take() {
		return &httpError{http.StatusServiceUnavailable, "too many event streams are open; try again later"}
	}
	defer s.streams.give()
	if after == nil {
		after, _, _ = store.Head()
		if after == nil { // an empty store: from its first record on
			k := audit.MakeKey(0, 0)
			after = k[:]
		}
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("X-Accel-Buffering", "no") // a proxy must not hold events back
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	out := &idleWriter{w: w, rc: http.NewResponseController(w)}
	send := func(b []byte) bool {
		out.Write(b)
		return out.err == nil && out.rc.Flush() == nil
	}
	if !send([]byte(streamRetry)) {
		return nil
	}

	ctx, cancel := context.WithTimeout(r.Context(), streamMaxAge)
	defer cancel()
	tick := time.NewTicker(streamPoll)
	defer tick.Stop()
	var head []byte // the head at the last look
	looked := false
	lastWrite := time.Now()
	for {
		if h, _, _ := store.Head(); !none && (!looked || !bytes.Equal(h, head)) {
			n, err := s.streamSince(ctx, q, &after, h, send)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, errClientGone) {
					s.log.Error("api: event stream failed", "err", err)
				}
				return nil // the answer has started: the client reconnects
			}
			head, looked = h, true
			if n > 0 {
				lastWrite = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		case now := <-tick.C:
			if now.Sub(lastWrite) >= streamKeepalive {
				if !send([]byte(": keepalive\n\n")) {
					return nil
				}
				lastWrite = now
			}
		}
	}
}

// errClientGone ends a stream whose client stopped reading.
var errClientGone = errors.New("the client has gone")

// streamSince sends the events of q after *after, a page per read
// transaction, and moves *after past them — and to head, read before the
// first page: every event up to it has been looked at.
func (s *server) streamSince(ctx context.Context, q sink.Query, after *[]byte, head []byte, send func([]byte) bool) (int, error) {
	type event struct{ key, rec []byte }
	sent := 0
	for {
		cursor, err := q.CursorAfter(*after)
		if err != nil {
			return sent, err
		}
		q.Cursor, q.Limit = cursor, streamPage
		var page []event
		size := 0
		next, err := s.readPage(ctx, q, func(key, rec []byte) bool {
			if len(page) > 0 && size+len(rec) > maxPageBytes {
				return false
			}
			page = append(page, event{bytes.Clone(key), bytes.Clone(rec)})
			size += len(rec)
			return true
		})
		if err != nil {
			return sent, err
		}
		for _, e := range page {
			if !send(sseEvent(e.key, e.rec)) {
				return sent, errClientGone
			}
			*after = e.key
			sent++
		}
		if next == "" {
			break
		}
	}
	if head != nil && bytes.Compare(head, *after) > 0 {
		*after = head
	}
	return sent, nil
}

// sseEvent is one event of the stream: its id (what Last-Event-ID gives
// back), the type "audit", and the stored JSON as data.
func sseEvent(key, rec []byte) []byte {
	lsn, ord, _ := audit.SplitKey(key)
	b := make([]byte, 0, len(rec)+64)
	b = append(b, "id: "...)
	b = audit.AppendID(b, lsn, ord)
	b = append(b, "\nevent: audit\n"...)
	// A stored event is one line of JSON. Should one ever hold a line break
	// (CR, LF or both: each ends a line of the stream), each line goes in a
	// data field of its own, so that nothing in it can start a field or an
	// event; the client joins them with "\n", which JSON reads as white
	// space.
	for {
		i := bytes.IndexAny(rec, "\r\n")
		b = append(b, "data: "...)
		if i < 0 {
			b = append(b, rec...)
			break
		}
		b = append(append(b, rec[:i]...), '\n')
		if rec[i] == '\r' && i+1 < len(rec) && rec[i+1] == '\n' {
			i++
		}
		rec = rec[i+1:]
	}
	return append(b, "\n\n"...)
}

// streamSlots bounds the streams open at once.
type streamSlots chan struct{}

func (c streamSlots) take() bool {
	select {
	case c <- struct{}{}:
		return true
	default:
		return false
	}
}

func (c streamSlots) give() { <-c }
