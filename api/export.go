package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/export"
	"github.com/cdcaudit/cdcaudit/manifest"
	"github.com/cdcaudit/cdcaudit/sink"
)

// An export through the API is the file 'cdcaudit export' writes for the
// same filter, streamed: its manifest is known only once the body is sent,
// so the answer names the export (ExportHeader) and the manifest is
// fetched afterwards from /api/v1/exports/{id}/manifest. It is kept whole
// in the export's access log entry, which is what makes it durable: the
// route finds it there, also after a restart.
const (
	// ExportHeader names an export in its answer.
	ExportHeader = "X-Cdcaudit-Export"
	// DigestTrailer is the trailer of a complete export: its manifest's
	// Digest, as the access log records it.
	DigestTrailer = "X-Cdcaudit-Manifest-Digest"
)

// Bounds of an export.
const (
	// exportIdle is how long a client may take no bytes before the export
	// is cut off (the server's write timeout is lifted for the export).
	exportIdle = time.Minute
	// exportClockSlack is how far the access log's times may go back (a
	// clock set back) while the manifest route looks for an export.
	exportClockSlack = 5 * time.Minute
	// accessPage is how many access log entries one read transaction of
	// the manifest route reads.
	accessPage = 256
)

// exportPageEvents is how many events one read transaction of an export
// reads at most (and maxPageBytes how many bytes); the page is written to
// the client after the transaction has ended. A variable for tests.
var exportPageEvents = 1024

var exportParams = append([]string{"format"}, filterParams...)

// exportID is an export's id: when it began (microseconds since 1970, 16
// hex digits) and 64 random bits.
var exportID = regexp.MustCompile(`^([0-9a-f]{16})-[0-9a-f]{16}$`)

func newExportID(made time.Time) string {
	var r [8]byte
	rand.Read(r[:])
	began := binary.BigEndian.AppendUint64(nil, uint64(max(made.UnixMicro(), 0)))
	return hex.EncodeToString(began) + "-" + hex.EncodeToString(r[:])
}

// accessAppender is the store's access log, written (sink.Store).
type accessAppender interface {
	AppendAccess(sink.AccessEntry) (uint64, error)
}

// header is the store's head: the export reads no event beyond where the
// store ended when it began (sink.Store).
type header interface {
	Head() (key []byte, hash audit.Hash, count uint64)
}

// export streams the events the filters select as 'cdcaudit export' writes
// them, and records the export in the access log once it has ended
// (finished, failed or cut off by the client).
func (s *server) export(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	v, err := query(r, exportParams...)
	if err != nil {
		return err
	}
	format := v.Get("format")
	if format == "" {
		format = "jsonl"
	}
	if !slices.Contains(export.Formats, format) {
		return badRequest("format %q: want jsonl, csv or xlsx", clip(format))
	}
	q, err := parseFilter(v)
	if err != nil {
		return err
	}
	log, ok := s.store.(accessAppender)
	if !ok || s.signer == nil {
		return errNotFound("this daemon serves no exports (it needs the store's access log and the instance key)")
	}
	if format == "xlsx" && r.Method != http.MethodHead {
		select {
		case s.xlsx <- struct{}{}:
			defer func() { <-s.xlsx }()
		default:
			w.Header().Set("Retry-After", "30")
			return &httpError{http.StatusServiceUnavailable, "an XLSX export is already running (one at a time: each holds tens of MiB until its file ends); retry when it has ended, or export CSV, which spreadsheets open too"}
		}
	}
	made := s.now()
	var src export.Source = pagedSource{s: s, head: s.head()}
	if !keepToOwn(&q, p) {
		src = noEvents{}
	}
	h := w.Header()
	h.Set("Content-Type", export.ContentType(format))
	h.Set("Content-Disposition", mime.FormatMediaType("attachment",
		map[string]string{"filename": "cdcaudit-export-" + made.UTC().Format("20060102T150405Z") + "." + format}))
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	id := newExportID(made)
	h.Set(ExportHeader, id)
	h.Set("Trailer", DigestTrailer)
	out := &idleWriter{w: w, rc: http.NewResponseController(w)}
	out.renew(time.Now())
	// The header goes now: an XLSX export writes nothing before its end.
	w.WriteHeader(http.StatusOK)
	out.rc.Flush()

	rec := manifest.NewRecorder(out)
	_, err = export.WriteContext(r.Context(), rec, export.Observe(src, rec.Event), q, format)
	m := rec.Manifest(format, manifest.FilterOf(q), made)
	m.Source = s.name
	result := "ok"
	switch {
	case err == nil:
		m = manifest.Sign(s.signer, m)
	case r.Context().Err() != nil || out.err != nil:
		result = "cut" // the client went away
	default:
		result = "failed"
		s.log.Error("api: export failed", "export", id, "err", err)
	}
	if _, aerr := log.AppendAccess(exportEntry(s.now(), p, r, id, result, m)); aerr != nil {
		s.log.Error("api: the access log did not take an export: the export is cut off", "export", id, "err", aerr)
		result = "failed"
	}
	if result != "ok" {
		// The status is sent: cutting the connection before the body's end
		// is how the client learns the file is incomplete.
		panic(http.ErrAbortHandler)
	}
	h.Set(DigestTrailer, m.Digest())
	return nil
}

// exportEntry is an export's access log entry: who, from where, the
// filter, the format, the count, and for a complete export its manifest
// (whole, for the manifest route) and the manifest's digest.
func exportEntry(now time.Time, p access.Principal, r *http.Request, id, result string, m manifest.Manifest) sink.AccessEntry {
	field := func(name string, v any) sink.Field {
		b, _ := json.Marshal(v) // strings, numbers and manifest structs: cannot fail
		return sink.Field{Name: name, Value: b}
	}
	e := sink.AccessEntry{Time: now, Action: "export", Result: result, Role: string(p.Role), Login: p.Login, Via: p.Via,
		Address: clientIP(r.RemoteAddr),
		Detail: []sink.Field{field("export", id), field("format", m.Format), field("filter", m.Filter),
			field("count", m.Events), field("bytes", m.Bytes)}}
	if result == "ok" {
		e.Detail = append(e.Detail, field("manifest_digest", m.Digest()), field("manifest", m))
	}
	return e
}

// clientIP is the connection's peer as the access log records it (auth's
// rule): its IP without the port.
func clientIP(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().WithZone("").String()
	}
	return host // not an IP (a unix socket's name); the log bounds it
}

func (s *server) head() []byte {
	if hd, ok := s.store.(header); ok {
		key, _, _ := hd.Head()
		return key
	}
	return nil
}

// pagedSource is the store read for an export a page at a time: each page
// in a read transaction of its own, copied out and handed on after it has
// ended, so that neither a long export nor a slow client holds one open
// (a long read transaction makes the store's file grow while the daemon
// writes). It stops at head, the store's last event when the export
// began: the export is what the store held then, not a chase of the
// events arriving while it runs.
type pagedSource struct {
	s    *server
	head []byte // nil: no bound
}

// exportPage is a page of events copied out of the store.
type exportPage struct {
	arena []byte
	spans []struct{ key, rec, end int }
}

// Query hands on the events of q page by page. The next page is read
// while the one before is being written (two pages in memory at most): the
// store's reading and checking and the writing with its hashing run side
// by side rather than in turn.
func (ps pagedSource) Query(ctx context.Context, q sink.Query, fn func(key, record []byte) error) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages, free := make(chan *exportPage), make(chan *exportPage, 2)
	free <- &exportPage{}
	free <- &exportPage{}
	var readErr error // set before pages is closed
	go func() {
		defer close(pages)
		readErr = ps.read(ctx, q, pages, free)
	}()
	for pg := range pages {
		err := ps.s.paced(ctx, func() error {
			for _, sp := range pg.spans {
				if err := fn(pg.arena[sp.key:sp.rec], pg.arena[sp.rec:sp.end]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			cancel()
			for range pages { // the reader stops at once: wait for it
			}
			return "", err
		}
		free <- pg
	}
	return "", readErr
}

// read reads the pages of q into the free pages and sends them on, until
// the events end, the store's head is passed, or ctx is done.
func (ps pagedSource) read(ctx context.Context, q sink.Query, pages chan<- *exportPage, free <-chan *exportPage) error {
	q.Limit = exportPageEvents
	for {
		var pg *exportPage
		select {
		case pg = <-free:
		case <-ctx.Done():
			return ctx.Err()
		}
		pg.arena, pg.spans = pg.arena[:0], pg.spans[:0]
		past := false
		next, err := ps.s.readPage(ctx, q, func(key, rec []byte) bool {
			if ps.head != nil && bytes.Compare(key, ps.head) > 0 {
				past = true
				return false
			}
			if len(pg.spans) > 0 && len(pg.arena)+len(key)+len(rec) > maxPageBytes {
				return false
			}
			k := len(pg.arena)
			pg.arena = append(append(pg.arena, key...), rec...)
			pg.spans = append(pg.spans, struct{ key, rec, end int }{k, k + len(key), len(pg.arena)})
			return true
		})
		if err != nil {
			return err
		}
		select {
		case pages <- pg:
		case <-ctx.Done():
			return ctx.Err()
		}
		if next == "" || past {
			return nil
		}
		q.Cursor = next
	}
}

// noEvents is the source of a self principal's export of another user's
// events: nothing.
type noEvents struct{}

func (noEvents) Query(context.Context, sink.Query, func(key, record []byte) error) (string, error) {
	return "", nil
}

// idleWriter writes an export's answer, keeping the connection's write
// deadline exportIdle ahead of each write: the server's deadline for the
// whole answer is lifted, a client that stops reading is still cut off.
// It keeps the first write error (the client has gone).
type idleWriter struct {
	w       io.Writer
	rc      *http.ResponseController
	renewed time.Time
	err     error
}

func (d *idleWriter) renew(now time.Time) {
	d.rc.SetWriteDeadline(now.Add(exportIdle)) // not supported (a test's recorder): no deadline to lift
	d.renewed = now
}

func (d *idleWriter) Write(p []byte) (int, error) {
	if now := time.Now(); now.Sub(d.renewed) > time.Second {
		d.renew(now)
	}
	n, err := d.w.Write(p)
	if err != nil && d.err == nil {
		d.err = err
	}
	return n, err
}

// exportRecord is what the manifest route reads of an access log entry.
type exportRecord struct {
	Time     time.Time       `json:"time"`
	Action   string          `json:"action"`
	Result   string          `json:"result"`
	Login    *string         `json:"login"`
	Via      *string         `json:"via"`
	Export   string          `json:"export"`
	Manifest json.RawMessage `json:"manifest"`
}

// exportManifest answers the signed manifest of a complete export, found
// in the access log: to an admin, and to the principal that exported (a
// self principal: to any sign-in of its login). Anyone else's export is
// 404, as an unknown one is.
func (s *server) exportManifest(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	if err := noParams(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	mt := exportID.FindStringSubmatch(id)
	if mt == nil {
		return badRequest("export id %q: want the form of the %s header, e.g. 00064b1a2f3c4d5e-9f8e7d6c5b4a3928", clip(id), ExportHeader)
	}
	us, _ := strconv.ParseUint(mt[1], 16, 63)
	began := time.UnixMicro(int64(us))
	al, ok := s.store.(AccessLog)
	if !ok {
		return errNotFound("this store keeps no access log")
	}
	found, err := s.findExport(r.Context(), al, id, began)
	if err != nil {
		return err
	}
	if found == nil || !p.IsAdmin() && !exportedBy(p, found) {
		return errNotFound("no such export (its manifest is there once the export's answer has ended)")
	}
	if found.Result != "ok" {
		return errNotFound("export " + id + " did not complete (" + found.Result + "): it has no manifest")
	}
	m, err := manifest.Parse(found.Manifest)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment",
		map[string]string{"filename": "cdcaudit-export-" + id + ".manifest.json"}))
	w.WriteHeader(http.StatusOK)
	w.Write(m.Marshal())
	return nil
}

// exportedBy reports whether p made the export: a self principal by its
// login, anyone else by the same way in (token or password sign-in) and
// login.
func exportedBy(p access.Principal, e *exportRecord) bool {
	login, via := "", ""
	if e.Login != nil {
		login = *e.Login
	}
	if e.Via != nil {
		via = *e.Via
	}
	if p.Role == access.Self {
		return p.Login != "" && login == p.Login
	}
	return via == p.Via && login == p.Login
}

// errFound stops the access log's read at the export.
var errFound = errors.New("found")

// findExport reads the access log newest first, a page per read
// transaction, for the entry of export id: no further back than when the
// export began (its entry is written at its end).
func (s *server) findExport(ctx context.Context, al AccessLog, id string, began time.Time) (*exportRecord, error) {
	needle := []byte(`"export":"` + id + `"`)
	var found *exportRecord
	var after uint64
	for {
		done := false
		next, err := al.AccessLog(ctx, after, true, accessPage, func(rec sink.AccessRecord) error {
			var e exportRecord
			if !bytes.Contains(rec.Record, needle) {
				// Only the time: to know when to stop.
				var t struct {
					Time time.Time `json:"time"`
				}
				if json.Unmarshal(rec.Record, &t) == nil && t.Time.Before(began.Add(-exportClockSlack)) {
					done = true
					return errFound
				}
				return nil
			}
			if err := json.Unmarshal(rec.Record, &e); err != nil {
				return err
			}
			if e.Action == "export" && e.Export == id {
				found = &e
				return errFound
			}
			return nil
		})
		switch {
		case errors.Is(err, errFound):
			return found, nil
		case err != nil:
			return nil, err
		case next == 0 || done:
			return nil, nil
		}
		after = next
	}
}
