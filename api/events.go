package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/history"
	"github.com/cdcaudit/cdcaudit/sink"
)

// maxPageBytes bounds the events one page holds in memory: a page of
// large rows ends early, with a cursor. A variable for tests.
var maxPageBytes = 16 << 20

// errPageFull stops a read once a page is full.
var errPageFull = errors.New("page full")

// page reads one page of q: q.Limit events at most, fewer when they would
// pass maxPageBytes; next continues it ("" when nothing follows). Each
// call of the store is one short read transaction.
func (s *server) page(ctx context.Context, q sink.Query) (events [][]byte, next string, err error) {
	size := 0
	next, err = s.readPage(ctx, q, func(_, rec []byte) bool {
		if len(events) > 0 && size+len(rec) > maxPageBytes {
			return false
		}
		events = append(events, bytes.Clone(rec))
		size += len(rec)
		return true
	})
	return events, next, queryErr(err)
}

// readPage hands the events of one page of q (q.Limit at most) to add, in
// one read transaction; add reports false when the page is full before
// the event it is given. next continues after the last event add took
// ("" when nothing follows, or add took none).
func (s *server) readPage(ctx context.Context, q sink.Query, add func(key, rec []byte) bool) (next string, err error) {
	n := 0
	next, err = s.query(ctx, q, func(key, rec []byte) error {
		if !add(key, rec) {
			return errPageFull
		}
		n++
		return nil
	})
	if !errors.Is(err, errPageFull) {
		return next, err
	}
	if n == 0 {
		return "", nil
	}
	// The store's cursor after the last event kept: the same query
	// stopped there by its limit.
	q.Limit = n
	return s.query(ctx, q, func(_, _ []byte) error { return nil })
}

// queryErr makes a cursor of another query a bad parameter.
func queryErr(err error) error {
	if errors.Is(err, sink.ErrCursor) {
		return badRequest("cursor does not belong to this query (other filters or order): start again without it")
	}
	return err
}

// writeEvents writes {"events":[...],"next_cursor":"..."} with the events
// as stored, and fields before them (name, value pairs of JSON). A failed
// write is not an error to answer: the client has gone.
func writeEvents(w http.ResponseWriter, events [][]byte, next string, fields ...any) error {
	var head []byte
	for i := 0; i+1 < len(fields); i += 2 {
		b, err := marshal(fields[i+1])
		if err != nil {
			return err
		}
		head = audit.AppendString(head, fields[i].(string))
		head = append(append(head, ':'), bytes.TrimRight(b, "\n")...)
		head = append(head, ',')
	}
	return writeList(w, "events", events, next, head...)
}

// writeList answers {<head>"<name>":[<items as they are>],"next_cursor":…}.
func writeList(w http.ResponseWriter, name string, items [][]byte, next string, head ...byte) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteByte('{')
	bw.Write(head)
	bw.Write(audit.AppendString(nil, name))
	bw.WriteString(`:[`)
	for i, e := range items {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.Write(e)
	}
	bw.WriteString(`],"next_cursor":`)
	bw.Write(audit.AppendString(nil, next))
	bw.WriteString("}\n")
	bw.Flush()
	return nil
}

// eventsQuery reads the filters and the page of a request, kept to p's
// own events; none reports a query that can see nothing.
func eventsQuery(r *http.Request, p access.Principal, paged bool) (q sink.Query, none bool, err error) {
	allowed := filterParams
	if paged {
		allowed = append(append([]string(nil), filterParams...), pageParams...)
	}
	v, err := query(r, allowed...)
	if err != nil {
		return q, false, err
	}
	if q, err = parseFilter(v); err != nil {
		return q, false, err
	}
	if paged {
		if err := parsePage(v, &q); err != nil {
			return q, false, err
		}
	}
	return q, !keepToOwn(&q, p), nil
}

func (s *server) events(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	q, none, err := eventsQuery(r, p, true)
	if err != nil {
		return err
	}
	var events [][]byte
	next := ""
	if !none {
		if events, next, err = s.page(r.Context(), q); err != nil {
			return err
		}
	}
	return writeEvents(w, events, next)
}

type countBody struct {
	Count uint64 `json:"count"`
}

func (s *server) eventsCount(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	q, none, err := eventsQuery(r, p, false)
	if err != nil {
		return err
	}
	var n uint64
	switch {
	case none:
	case indexCounts(&q):
		n, err = s.store.Count(r.Context(), q)
	default:
		// Counting reads the events: a page per read transaction.
		n, err = s.scan(r.Context(), q, nil)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, countBody{n})
}

// indexCounts reports whether the store counts q without reading a long
// run of events in one read transaction: from its index postings alone
// (nothing; only one of user, session and flag; only tables and ops — the
// rule of sink.Store.Count), or through the record index, which holds one
// record's events.
func indexCounts(q *sink.Query) bool {
	given := 0
	for _, s := range []string{q.User, q.Session, q.Flag} {
		if s != "" {
			given++
		}
	}
	tablesOrOps := len(q.Tables) > 0 || len(q.Ops) > 0
	timed := !q.Since.IsZero() || !q.Until.IsZero()
	switch {
	case q.Record != nil:
		return true
	case timed:
		return false
	}
	return given == 0 || given == 1 && !tablesOrOps
}

func (s *server) event(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	if err := noParams(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	_, ord, err := audit.ParseID(id)
	if err != nil {
		return badRequest("event id %q: want the form 00000000016B3800-000003", clip(id))
	}
	unknown := errNotFound("no such event")
	if ord == 0 {
		return unknown // the chain's own records, not events
	}
	rec, err := s.store.Get(id)
	if isNotFound(err) {
		return unknown
	}
	if err != nil {
		return err
	}
	terms, err := audit.ParseTerms(rec)
	if err != nil {
		return err
	}
	if !sees(p, terms.User) {
		return unknown // whether it exists is not theirs to know
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(append(rec, '\n'))
	return nil
}

// recordHistory answers the history of one record, oldest first, a page at
// a time. Its cursor is the last event id handed on (bound to the record),
// as the history follows the record through key changes and truncates,
// which the store's cursor of one query cannot.
func (s *server) recordHistory(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	v, err := query(r, "record", "limit", "cursor")
	if err != nil {
		return err
	}
	text := v.Get("record")
	if text == "" {
		return badRequest("record is required: TABLE:KEY, e.g. public.sale_order:42")
	}
	ref, err := history.ParseRef(text)
	if err != nil {
		return badRequest("record %q: %v", clip(text), err)
	}
	limit, err := parseLimit(v, defaultLimit, maxLimit)
	if err != nil {
		return err
	}
	var after []byte
	if c := v.Get("cursor"); c != "" {
		if after, err = decodeHistoryCursor(c, ref); err != nil {
			return err
		}
	}
	var (
		events [][]byte
		size   int
		last   []byte
		more   bool
	)
	_, err = history.Record(s.store, ref, func(e *history.Event) error {
		lsn, ord, err := audit.ParseID(e.ID)
		if err != nil {
			return err
		}
		key := audit.MakeKey(lsn, ord)
		if after != nil && bytes.Compare(key[:], after) <= 0 {
			return nil
		}
		if !p.SeesAll() {
			t, err := audit.ParseTerms(e.Record)
			if err != nil {
				return err
			}
			if t.User != p.Login {
				return nil
			}
		}
		if len(events) == limit || len(events) > 0 && size+len(e.Record) > maxPageBytes {
			more = true
			return errPageFull
		}
		events = append(events, e.Record) // history hands on copies
		size += len(e.Record)
		last = key[:]
		return nil
	})
	switch {
	case errors.Is(err, errPageFull):
	case errors.Is(err, history.ErrKeyColumns):
		return badRequest("record %q: %v", clip(text), err)
	case err != nil:
		return err
	}
	next := ""
	if more {
		next = historyCursor(ref, last)
	}
	return writeEvents(w, events, next, "record", ref.String())
}

// A history cursor: version, 8 bytes of the record's term's hash, the
// store key of the last event handed on.
const historyCursorVersion = 'h'

func historyCursor(ref history.Ref, key []byte) string {
	sum := sha256.Sum256(ref.Term())
	b := append([]byte{historyCursorVersion}, sum[:8]...)
	return base64.RawURLEncoding.EncodeToString(append(b, key...))
}

func decodeHistoryCursor(c string, ref history.Ref) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	sum := sha256.Sum256(ref.Term())
	if err != nil || len(b) != 1+8+audit.KeyLen || b[0] != historyCursorVersion || !bytes.Equal(b[1:9], sum[:8]) {
		return nil, badRequest("cursor does not belong to this record's history: start again without it")
	}
	return b[9:], nil
}
