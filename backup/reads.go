package backup

// The reads of the store that `export`, `events`, `sessions` and `verify`
// make, served by the daemon that holds the store. The commands render
// what they read themselves, the same code either way: over the socket they
// print exactly what they print on a stopped store.
//
//	info    {}                       → info {"index_complete":bool}
//	query   a Query (wireQuery)      → ev <uvarint key length, key, record>…, next <cursor> when a limit stopped it
//	count   a Query                  → count <decimal>
//	state   {"bucket":"sessions"}    → kv <uvarint key length, key, value>…
//	verify  {"waypoints":[ids]}      → progress <done> <total>…, report <ChainReport JSON>
//
// Requests are untrusted input, even from the store's owner: bounded,
// decoded strictly, every value checked before it reaches the store.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Store is what the read requests read: sink.Store.
type Store interface {
	Query(ctx context.Context, q sink.Query, fn func(key, record []byte) error) (next string, err error)
	Count(ctx context.Context, q sink.Query) (uint64, error)
	LoadState(bucket string, fn func(key, value []byte) error) error
	IndexComplete() (bool, error)
	GenesisHash() (audit.Hash, bool)
	Head() (key []byte, hash audit.Hash, count uint64)
	VerifyThrough(ctx context.Context, progress func(done uint64), points sink.Waypoints) (sink.VerifyResult, error)
	VerifyAccess(ctx context.Context) (uint64, error)
}

// Page sizes of a query served: each page is read in one short read
// transaction and held in memory until sent, so a slow client never keeps
// a transaction open. Variables for tests.
var (
	pageEvents = 1024
	pageBytes  = 4 << 20
)

// Pacer runs a reader's work when recording leaves room for it
// (readpace.Pacer).
type Pacer interface {
	Do(ctx context.Context, work func() error) error
}

// ServeReads makes s answer the read commands' requests on st; pace, when
// not nil, paces the reading of every page of events.
func (s *Server) ServeReads(st Store, pace Pacer) {
	r := &reads{st: st, pace: pace}
	s.HandleStream("info", r.info)
	s.HandleStream("query", r.query)
	s.HandleStream("count", r.count)
	s.HandleStream("state", r.state)
	s.HandleStream("verify", r.verify)
}

type reads struct {
	st        Store
	pace      Pacer
	verifying sync.Mutex // one verify at a time: each reads the whole store
}

type wireInfo struct {
	IndexComplete bool `json:"index_complete"`
}

func (r *reads) info(_ context.Context, body []byte, s *Stream) error {
	var req struct{}
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	complete, err := r.st.IndexComplete()
	if err != nil {
		return err
	}
	b, _ := json.Marshal(wireInfo{IndexComplete: complete})
	return s.Send("info", b)
}

func (r *reads) query(ctx context.Context, body []byte, s *Stream) error {
	q, err := parseQuery(body)
	if err != nil {
		return err
	}
	var frames []byte
	sent := 0
	for {
		pq := q
		pq.Limit = pageEvents
		if q.Limit > 0 && q.Limit-sent < pageEvents {
			pq.Limit = q.Limit - sent
		}
		var n int
		var next string
		frames, n, next, err = r.page(ctx, pq, frames[:0])
		if serr := s.sendFrames(frames); err == nil {
			err = serr
		}
		if err != nil {
			return err // after the events before the failure, as the store hands them on
		}
		if err := s.Flush(); err != nil {
			return err
		}
		sent += n
		switch {
		case next == "":
			return nil
		case q.Limit > 0 && sent >= q.Limit:
			return s.Send("next", []byte(next))
		case n == 0:
			return errors.New("the store's query did not advance")
		}
		q.Cursor = next
	}
}

// errPageFull stops a page's read once it holds pageBytes.
var errPageFull = errors.New("page full")

// page reads one page of q into frames ("ev" frames, appended): q.Limit
// events, fewer when they would pass pageBytes (one event at least); next
// continues q ("" when nothing follows). On an error, the events before it
// come with it.
func (r *reads) page(ctx context.Context, q sink.Query, frames []byte) (_ []byte, n int, next string, err error) {
	if r.pace == nil {
		return r.readPage(ctx, q, frames)
	}
	err = r.pace.Do(ctx, func() error {
		frames, n, next, err = r.readPage(ctx, q, frames)
		return err
	})
	return frames, n, next, err
}

func (r *reads) readPage(ctx context.Context, q sink.Query, frames []byte) (_ []byte, n int, next string, err error) {
	next, err = r.st.Query(ctx, q, func(k, rec []byte) error {
		if n > 0 && len(frames)+len(rec) > pageBytes {
			return errPageFull
		}
		size := binary.PutUvarint(make([]byte, binary.MaxVarintLen64), uint64(len(k))) + len(k) + len(rec)
		if size > maxFrame {
			return fmt.Errorf("event at key %x: %d bytes, more than a reply frame holds (%d)", k, size, maxFrame)
		}
		frames = appendHead(frames, "ev", size)
		frames = append(append(binary.AppendUvarint(frames, uint64(len(k))), k...), rec...)
		n++
		return nil
	})
	if errors.Is(err, errPageFull) {
		// The cursor after the last event kept: the same query stopped
		// there by its limit.
		q.Limit = n
		next, err = r.st.Query(ctx, q, func(_, _ []byte) error { return nil })
	}
	return frames, n, next, err
}

func (r *reads) count(ctx context.Context, body []byte, s *Stream) error {
	q, err := parseQuery(body)
	if err != nil {
		return err
	}
	n, err := r.st.Count(ctx, q)
	if err != nil {
		return err
	}
	return s.Send("count", strconv.AppendUint(nil, n, 10))
}

// stateBuckets are the state buckets the read commands read.
var stateBuckets = []string{"sessions", "applog", "dbsessions", "alerts"}

func (r *reads) state(_ context.Context, body []byte, s *Stream) error {
	var req struct {
		Bucket string `json:"bucket"`
	}
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	if !slices.Contains(stateBuckets, req.Bucket) {
		return badRequest("no state %q to read (want one of %s)", req.Bucket, strings.Join(stateBuckets, ", "))
	}
	// Read whole, in one short transaction, then sent: the daemon holds
	// the state in memory anyway (its session tracker).
	var frames [][]byte
	err := r.st.LoadState(req.Bucket, func(k, v []byte) error {
		f := binary.AppendUvarint(nil, uint64(len(k)))
		frames = append(frames, append(append(f, k...), v...))
		return nil
	})
	if err != nil {
		return err
	}
	for _, f := range frames {
		if err := s.Send("kv", f); err != nil {
			return err
		}
	}
	return nil
}

// maxWaypoints bounds the records a verify is asked to look at (the heads
// of anchors: one every 10 minutes is 52,560 a year).
const maxWaypoints = 500_000

func (r *reads) verify(ctx context.Context, body []byte, s *Stream) error {
	var req struct {
		Waypoints []string `json:"waypoints"`
	}
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	if len(req.Waypoints) > maxWaypoints {
		return badRequest("%d waypoints: at most %d", len(req.Waypoints), maxWaypoints)
	}
	for _, id := range req.Waypoints {
		if _, _, err := audit.ParseID(id); err != nil {
			return badRequest("waypoint %.40q is not an event id", id)
		}
	}
	r.verifying.Lock()
	defer r.verifying.Unlock()
	// Progress goes out from here, never from inside the verify's read
	// transaction: a client that reads slowly does not make it longer.
	var done, total atomic.Uint64
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				s.Send("progress", fmt.Appendf(nil, "%d %d", done.Load(), total.Load()))
				s.Flush()
			}
		}
	}()
	rep, err := CheckChain(ctx, r.st, req.Waypoints, func(d, t uint64) { done.Store(d); total.Store(t) })
	close(stop)
	<-sent
	if err != nil {
		return err
	}
	b, err := json.Marshal(&rep)
	if err != nil {
		return err
	}
	return s.Send("report", b)
}

// ChainReport is what 'cdcaudit verify' learns of a store.
type ChainReport struct {
	// Genesis is the store's genesis hash as it records it (zero when it
	// has lost the record): anchors name their chain by it.
	Genesis audit.Hash
	Result  sink.VerifyResult
	// Broken is the first problem found, in the chain ("chain") or in the
	// access log ("access"): BrokenIn says which.
	Broken   *sink.VerifyError
	BrokenIn string
	// Points are the waypoints asked for: found in the chain with their
	// hash, or removed under the cut Cut.
	Points map[string]Point
	Access uint64 // access log entries verified
}

// Point is what the chain holds of a record asked for.
type Point struct {
	Found bool
	Hash  audit.Hash
	Cut   string // the cut that removed it ("" for none)
}

// CheckChain verifies st's hash chain, looking at the waypoints in
// passing, and then its access log: the work of 'cdcaudit verify', done in
// the daemon for a store it holds, in the command for a stopped one.
// progress, when set, hears how many events are checked of how many. A
// broken chain or log is a report, not an error.
//
// The chain is read in one read transaction (sink.Store.VerifyThrough): it
// never blocks the daemon's writer, but pages freed while it runs are
// reused only after it, so the file grows by about what is written
// meanwhile; and should the file outgrow its memory map then, the writer
// waits for the verify to end.
func CheckChain(ctx context.Context, st Store, waypoints []string, progress func(done, total uint64)) (ChainReport, error) {
	var rep ChainReport
	rep.Genesis, _ = st.GenesisHash()
	_, _, total := st.Head()
	if progress == nil {
		progress = func(uint64, uint64) {}
	}
	progress(0, total)
	points := sink.Waypoints{}
	for _, id := range waypoints {
		points[id] = &sink.Waypoint{}
	}
	var err error
	rep.Result, err = st.VerifyThrough(ctx, func(n uint64) { progress(n, total) }, points)
	if broken(err, &rep, "chain") {
		return rep, nil
	}
	if err != nil {
		return rep, err
	}
	rep.Points = make(map[string]Point, len(points))
	for id, p := range points {
		pt := Point{Found: p.Found, Hash: p.Hash}
		if c, ok := rep.Result.Covering(id); ok && !p.Found {
			pt.Cut = c.ID
		}
		rep.Points[id] = pt
	}
	rep.Access, err = st.VerifyAccess(ctx)
	if broken(err, &rep, "access") {
		return rep, nil
	}
	return rep, err
}

// broken records a *sink.VerifyError in rep.
func broken(err error, rep *ChainReport, in string) bool {
	var ve *sink.VerifyError
	if !errors.As(err, &ve) {
		return false
	}
	rep.Broken, rep.BrokenIn = ve, in
	return true
}

// errBadRequest is a request the daemon refuses.
var errBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadRequest}, args...)...)
}

// decodeStrict decodes one JSON object into v: no unknown member, nothing
// after it.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("something follows the request's object")
	}
	return nil
}

// wireQuery is a sink.Query on the wire.
type wireQuery struct {
	Since   time.Time   `json:"since,omitzero"`
	Until   time.Time   `json:"until,omitzero"`
	Tables  []string    `json:"tables,omitempty"`
	Ops     []string    `json:"ops,omitempty"`
	User    string      `json:"user,omitempty"`
	Session string      `json:"session,omitempty"`
	Flag    string      `json:"flag,omitempty"`
	Record  *wireRecord `json:"record,omitempty"`
	Desc    bool        `json:"desc,omitempty"`
	Limit   int         `json:"limit,omitempty"`
	Cursor  string      `json:"cursor,omitempty"`
}

type wireRecord struct {
	Schema string         `json:"schema"`
	Table  string         `json:"table"`
	Key    []wireKeyValue `json:"key"`
}

type wireKeyValue struct {
	Column string `json:"column,omitempty"`
	Text   string `json:"text"`
}

// Bounds of a query's values: far above what a command line gives.
const (
	maxName   = 4096 // a glob, user, session, flag, table, key value, cursor
	maxList   = 1024 // globs, ops, key columns
	maxLimit  = 1 << 24
	maxTables = maxList
)

func encodeQuery(q sink.Query) ([]byte, error) {
	w := wireQuery{Since: q.Since, Until: q.Until, Tables: q.Tables, User: q.User, Session: q.Session, Flag: q.Flag,
		Desc: q.Desc, Limit: q.Limit, Cursor: q.Cursor}
	for _, op := range q.Ops {
		w.Ops = append(w.Ops, op.String())
	}
	if r := q.Record; r != nil {
		w.Record = &wireRecord{Schema: r.Schema, Table: r.Table, Key: []wireKeyValue{}}
		for _, kv := range r.Key {
			w.Record.Key = append(w.Record.Key, wireKeyValue{Column: kv.Column, Text: kv.Text})
		}
	}
	return json.Marshal(&w)
}

// parseQuery reads and checks a query request.
func parseQuery(body []byte) (sink.Query, error) {
	var w wireQuery
	if err := decodeStrict(body, &w); err != nil {
		return sink.Query{}, err
	}
	q := sink.Query{Since: w.Since, Until: w.Until, User: w.User, Session: w.Session, Flag: w.Flag, Desc: w.Desc,
		Limit: w.Limit, Cursor: w.Cursor}
	for _, s := range []string{w.User, w.Session, w.Flag, w.Cursor} {
		if len(s) > maxName {
			return q, badRequest("a value of %d bytes: at most %d", len(s), maxName)
		}
	}
	if !w.Since.IsZero() && !w.Until.IsZero() && !w.Since.Before(w.Until) {
		return q, badRequest("since must be before until")
	}
	if w.Limit < 0 || w.Limit > maxLimit {
		return q, badRequest("limit %d: want 0 to %d", w.Limit, maxLimit)
	}
	if len(w.Tables) > maxTables || len(w.Ops) > maxList {
		return q, badRequest("%d tables, %d ops: at most %d", len(w.Tables), len(w.Ops), maxList)
	}
	for _, t := range w.Tables {
		if _, err := path.Match(t, ""); err != nil || len(t) > maxName {
			return q, badRequest("table %.40q is not a valid glob", t)
		}
	}
	q.Tables = w.Tables
	for _, s := range w.Ops {
		op, err := audit.ParseOp(s)
		if err != nil {
			return q, badRequest("%v", err)
		}
		q.Ops = append(q.Ops, op)
	}
	if w.Record != nil {
		ref, err := parseRecord(w.Record)
		if err != nil {
			return q, err
		}
		q.Record = &ref
	}
	return q, nil
}

// parseRecord checks a record: named table, a key of one value or of
// named columns, sorted and distinct (as audit.ParseRecordKey makes it).
func parseRecord(w *wireRecord) (audit.RecordRef, error) {
	ref := audit.RecordRef{Schema: w.Schema, Table: w.Table}
	if w.Schema == "" || w.Table == "" || len(w.Table) > maxName || len(w.Schema) > maxName {
		return ref, badRequest("a record needs a schema and a table name of at most %d bytes", maxName)
	}
	if len(w.Key) == 0 || len(w.Key) > maxList {
		return ref, badRequest("a record's key has 1 to %d values", maxList)
	}
	for i, kv := range w.Key {
		if len(kv.Column) > maxName || len(kv.Text) > maxName {
			return ref, badRequest("a key value of more than %d bytes", maxName)
		}
		if (kv.Column == "") != (len(w.Key) == 1 && kv.Column == "") {
			return ref, badRequest("a key of several values names each column")
		}
		if i > 0 && kv.Column <= w.Key[i-1].Column {
			return ref, badRequest("a key's columns are sorted and distinct")
		}
		ref.Key = append(ref.Key, audit.KeyValue{Column: kv.Column, Text: kv.Text})
	}
	return ref, nil
}

// Error kinds: the store's errors a command tells apart (errors.Is),
// kept across the socket.
var errorKinds = []struct {
	kind string
	err  error
}{
	{"damaged", sink.ErrDamaged},
	{"cursor", sink.ErrCursor},
	{"chain", sink.ErrChainBroken},
	{"malformed", audit.ErrMalformed},
	{"not_found", sink.ErrNotFound},
	{"request", errBadRequest},
	{"canceled", context.Canceled},
}

func errorKind(err error) string {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.kind
		}
	}
	return ""
}

func kindError(kind string) error {
	for _, k := range errorKinds {
		if k.kind == kind {
			return k.err
		}
	}
	return nil
}
