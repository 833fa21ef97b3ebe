package api

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/export"
	"github.com/cdcaudit/cdcaudit/manifest"
	"github.com/cdcaudit/cdcaudit/sink"
)

// exported is an export's answer, read to its end over a real connection.
type exported struct {
	status  int
	header  http.Header
	trailer http.Header
	body    []byte
	readErr error // the body did not end well
}

// exportOver runs h behind a real server and GETs target as p.
func exportOver(t *testing.T, h http.Handler, target string) exported {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := http.Get(srv.URL + target)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, rerr := io.ReadAll(res.Body)
	return exported{res.StatusCode, res.Header, res.Trailer, body, rerr}
}

// manifestOf fetches an export's manifest as p.
func (f *fixture) manifestOf(t *testing.T, p *access.Principal, id string) (answer, *manifest.Manifest) {
	t.Helper()
	a := f.get(t, p, "/api/v1/exports/"+id+"/manifest")
	if a.status != http.StatusOK {
		return a, nil
	}
	m, err := manifest.Parse(a.body)
	if err != nil {
		t.Fatalf("the manifest route answered no manifest: %v\n%s", err, a.body)
	}
	return a, m
}

// TestExportIsTheCommandsFile exports through the API with the filters of
// the events routes, in every format and with pages of every size, and
// compares each file byte for byte with what export.Write (the code of
// 'cdcaudit export') writes for the same filter on the same store; then
// checks the headers, the trailer, and the manifest fetched afterwards
// against the file (signature by the instance key, SHA-256, events).
func TestExportIsTheCommandsFile(t *testing.T) {
	f := newFixture(t)
	filters := []string{
		"",
		"user=bob@example.com",
		"table=sale_*&op=update",
		"record=" + url.QueryEscape("public.sale_order:42"),
		"flag=orm_bypass&since=2026-11-23T09:45:00Z&until=2026-11-23T12:00:00Z",
	}
	defer func(n, b int) { exportPageEvents, maxPageBytes = n, b }(exportPageEvents, maxPageBytes)
	for _, pages := range []struct{ events, bytes int }{{1024, 16 << 20}, {2, 16 << 20}, {3, 1}} {
		exportPageEvents, maxPageBytes = pages.events, pages.bytes
		for _, format := range export.Formats {
			for _, filter := range filters {
				target := "/api/v1/export?format=" + format + "&" + filter
				v, _ := url.ParseQuery(filter)
				q, err := parseFilter(v)
				if err != nil {
					t.Fatal(err)
				}
				var want bytes.Buffer
				n, err := export.Write(&want, f.store, q, format)
				if err != nil {
					t.Fatal(err)
				}
				got := exportOver(t, f.handler(t, &viewer), target)
				if got.status != 200 || got.readErr != nil {
					t.Fatalf("%s: %d %v\n%s", target, got.status, got.readErr, got.body)
				}
				if format != "xlsx" && !bytes.Equal(got.body, want.Bytes()) {
					t.Fatalf("%s (pages of %d): the API's file differs from export.Write's:\n%s\nwant:\n%s", target, pages.events, got.body, want.Bytes())
				}
				if format == "xlsx" && !sameWorkbook(t, got.body, want.Bytes()) {
					t.Fatalf("%s: the API's workbook differs from export.Write's", target)
				}
				if ct := got.header.Get("Content-Type"); ct != export.ContentType(format) {
					t.Errorf("%s: Content-Type %q", target, ct)
				}
				if cd := got.header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment; filename=cdcaudit-export-20261123T120200Z."+format) {
					t.Errorf("%s: Content-Disposition %q", target, cd)
				}
				id := got.header.Get(ExportHeader)
				_, m := f.manifestOf(t, &viewer, id)
				if m == nil {
					t.Fatalf("%s: no manifest for export %q", target, id)
				}
				if got.trailer.Get(DigestTrailer) != m.Digest() {
					t.Errorf("%s: trailer %q, the manifest's digest %s", target, got.trailer.Get(DigestTrailer), m.Digest())
				}
				file := filepath.Join(t.TempDir(), "export."+format)
				os.WriteFile(file, got.body, 0o600)
				res, err := manifest.Check(file, m, f.key.Public())
				if err != nil || !res.OK() || !res.KeyTrusted || m.Events != n || m.Filter.String() != manifest.FilterOf(q).String() {
					t.Fatalf("%s: the manifest does not prove the file: %v %+v %+v", target, err, res, m)
				}
			}
		}
	}
}

// sameWorkbook compares two XLSX files by their parts (a ZIP archive
// holds its entries' times, which may differ by a second).
func sameWorkbook(t *testing.T, a, b []byte) bool {
	t.Helper()
	pa, pb := zipParts(t, a), zipParts(t, b)
	if len(pa) != len(pb) {
		return false
	}
	for name, data := range pa {
		if !bytes.Equal(data, pb[name]) {
			t.Logf("part %s differs", name)
			return false
		}
	}
	return true
}

// TestExportSelfGetsItsOwnOnly exports as a self principal with every
// filter that might reach another user's events: the file holds alice's
// events only, and another user's export is empty.
func TestExportSelfGetsItsOwnOnly(t *testing.T) {
	f := newFixture(t)
	h := f.handler(t, &self)
	var own []string
	for name, id := range f.ids {
		if strings.HasPrefix(name, "alice-") {
			own = append(own, id)
		}
	}
	for _, format := range export.Formats {
		for _, filter := range []string{"", "user=alice@example.com", "user=bob@example.com", "user=%23" + "7",
			"record=" + url.QueryEscape("public.res_partner:7"), "flag=orm_bypass", "session=" + f.bob} {
			got := exportOver(t, h, "/api/v1/export?format="+format+"&"+filter)
			if got.status != 200 || got.readErr != nil {
				t.Fatalf("%s %s: %d %v %s", format, filter, got.status, got.readErr, got.body)
			}
			text := string(got.body)
			if format == "xlsx" {
				text = ""
				for _, part := range zipParts(t, got.body) {
					text += string(part)
				}
			}
			for name, id := range f.ids {
				if !strings.HasPrefix(name, "alice-") && strings.Contains(text, id) {
					t.Errorf("self's %s export (%s) holds %s's event %s", format, filter, name, id)
				}
			}
			for _, leak := range []string{"bob@example.com", f.bob} {
				if strings.Contains(text, leak) {
					t.Errorf("self's %s export (%s) names %q", format, filter, leak)
				}
			}
			_, m := f.manifestOf(t, &self, got.header.Get(ExportHeader))
			if m == nil || m.Filter.User != "alice@example.com" && m.Events != 0 {
				t.Errorf("%s: the manifest's filter is not kept to alice: %+v", filter, m)
			}
			if filter == "" && m.Events != uint64(len(own)) {
				t.Errorf("self's whole export holds %d events, alice made %d", m.Events, len(own))
			}
		}
	}
}

// TestExportManifestIsTheExporters checks who may fetch a manifest: the
// exporter, an admin; not another token, not another self; a malformed
// id is 400, an unknown one 404.
func TestExportManifestIsTheExporters(t *testing.T) {
	f := newFixture(t)
	byViewer := exportOver(t, f.handler(t, &viewer), "/api/v1/export?format=csv").header.Get(ExportHeader)
	bySelf := exportOver(t, f.handler(t, &self), "/api/v1/export").header.Get(ExportHeader)
	otherViewer := access.Principal{Role: access.Viewer, Via: "token:intern"}
	selfByToken := access.Principal{Role: access.Self, Login: "alice@example.com", Via: "token:alice-laptop"}
	bob := access.Principal{Role: access.Self, Login: "bob@example.com", Via: "password"}
	for _, c := range []struct {
		p    *access.Principal
		id   string
		want int
	}{
		{&viewer, byViewer, 200}, {&admin, byViewer, 200}, {&otherViewer, byViewer, 404}, {&self, byViewer, 404},
		{&self, bySelf, 200}, {&selfByToken, bySelf, 200}, {&admin, bySelf, 200}, {&bob, bySelf, 404}, {&viewer, bySelf, 404},
		{&admin, "0000000000000000-0000000000000000", 404}, {&admin, "nope", 400}, {&admin, strings.ToUpper(byViewer), 400},
	} {
		if a, _ := f.manifestOf(t, c.p, c.id); a.status != c.want {
			t.Errorf("%s fetching %s: %d, want %d: %s", c.p, c.id, a.status, c.want, a.body)
		}
	}
	if a := f.get(t, &admin, "/api/v1/exports/"+byViewer+"/manifest?x=1"); a.status != 400 {
		t.Errorf("a parameter: %d", a.status)
	}
}

// accessEntries reads the access log, oldest first.
func accessEntries(t *testing.T, s *sink.Store) []map[string]any {
	t.Helper()
	var out []map[string]any
	if _, err := s.AccessLog(t.Context(), 0, false, 0, func(r sink.AccessRecord) error {
		var e map[string]any
		if err := json.Unmarshal(r.Record, &e); err != nil {
			return err
		}
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyAccess(t.Context()); err != nil {
		t.Fatalf("the access log does not verify: %v", err)
	}
	return out
}

// TestExportIsInTheAccessLog checks the entry of a complete export: who,
// from where, the filter, the format, the count, the manifest and its
// digest.
func TestExportIsInTheAccessLog(t *testing.T) {
	f := newFixture(t)
	before := len(accessEntries(t, f.store))
	got := exportOver(t, f.handler(t, &self), "/api/v1/export?format=csv&table=sale_*&user=alice@example.com")
	entries := accessEntries(t, f.store)
	if len(entries) != before+1 {
		t.Fatalf("%d entries after an export, %d before", len(entries), before)
	}
	e := entries[len(entries)-1]
	_, m := f.manifestOf(t, &self, got.header.Get(ExportHeader))
	manifestJSON, _ := json.Marshal(e["manifest"])
	signed, err := manifest.Parse(manifestJSON)
	if err != nil || signed.VerifySignature() != nil {
		t.Fatalf("the entry's manifest: %v", err)
	}
	filter := e["filter"].(map[string]any)
	for name, want := range map[string]any{"action": "export", "result": "ok", "role": "self", "login": "alice@example.com",
		"via": "password", "address": "127.0.0.1", "export": got.header.Get(ExportHeader), "format": "csv",
		"count": float64(2), "bytes": float64(len(got.body)), "manifest_digest": m.Digest()} {
		if e[name] != want {
			t.Errorf("entry's %s: %v, want %v", name, e[name], want)
		}
	}
	if filter["user"] != "alice@example.com" || filter["tables"].([]any)[0] != "sale_*" {
		t.Errorf("entry's filter: %v", filter)
	}
	if h := sha256.Sum256(got.body); signed.SHA256 != hex.EncodeToString(h[:]) {
		t.Error("the entry's manifest is not the file's")
	}
}

// stalling is the fixture's store whose second page of a query waits for
// the client to leave (or fails with failWith).
type stalling struct {
	*sink.Store
	mu       sync.Mutex
	calls    int
	reached  chan struct{}
	failWith error
}

func (s *stalling) Query(ctx context.Context, q sink.Query, fn func(key, record []byte) error) (string, error) {
	s.mu.Lock()
	s.calls++
	second := s.calls == 2
	s.mu.Unlock()
	if second {
		close(s.reached)
		if s.failWith != nil {
			return "", s.failWith
		}
		<-ctx.Done()
		return "", ctx.Err()
	}
	return s.Store.Query(ctx, q, fn)
}

// TestExportCutOrFailedIsRecorded: a client that leaves mid-export stops
// it (the store is read no further) and the export is recorded as cut; a
// store failure mid-export cuts the connection (the client sees the body
// end early, no digest trailer) and is recorded as failed. Neither has a
// manifest.
func TestExportCutOrFailedIsRecorded(t *testing.T) {
	defer func(n int) { exportPageEvents = n }(exportPageEvents)
	exportPageEvents = 2
	for _, failWith := range []error{nil, errors.New("the disk is on fire")} {
		f := newFixture(t)
		st := &stalling{Store: f.store, reached: make(chan struct{}), failWith: failWith}
		srv := httptest.NewServer(f.handlerOn(t, st, &viewer))
		ctx, cancel := context.WithCancel(t.Context())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/export?format=jsonl", nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		id := res.Header.Get(ExportHeader) // the header comes before the events
		<-st.reached
		var body []byte
		if failWith == nil {
			cancel()
		} else {
			body, err = io.ReadAll(res.Body)
			if err == nil {
				t.Errorf("a failed export's body ended as a complete one (%d bytes)", len(body))
			}
			if res.Trailer.Get(DigestTrailer) != "" {
				t.Error("a failed export has a digest trailer")
			}
			cancel()
		}
		res.Body.Close()
		srv.Close() // waits for the handler
		e := accessEntries(t, f.store)
		last := e[len(e)-1]
		want := map[error]string{nil: "cut"}[failWith]
		if want == "" {
			want = "failed"
		}
		if last["action"] != "export" || last["result"] != want || last["export"] != id || last["manifest"] != nil || last["manifest_digest"] != nil {
			t.Errorf("entry of an export that ended %s: %v", want, last)
		}
		if st.calls != 2 {
			t.Errorf("the store was read %d times after the client left", st.calls-2)
		}
		if a, _ := f.manifestOf(t, &admin, id); a.status != 404 || !strings.Contains(string(a.body), "did not complete") {
			t.Errorf("the manifest of an export that ended %s: %d %s", want, a.status, a.body)
		}
	}
}

// growing is the fixture's store that receives a new event after the
// first page of a query.
type growing struct {
	*sink.Store
	t     *testing.T
	once  sync.Once
	added string
}

func (g *growing) Query(ctx context.Context, q sink.Query, fn func(key, record []byte) error) (string, error) {
	next, err := g.Store.Query(ctx, q, fn)
	g.once.Do(func() {
		k, _, _ := g.Store.Head()
		lsn, _, _ := audit.SplitKey(k)
		lsn += 0x1000
		e := &audit.Event{LSN: lsn - 0x10, CommitLSN: lsn, Ordinal: 1, XID: 99, Database: "odoo", CommitTime: t0.Add(5 * time.Hour),
			Schema: "public", Table: "sale_order", Op: audit.OpInsert, Key: audit.Row{{Name: "id", Value: []byte("99")}},
			After: audit.Row{{Name: "id", Value: []byte("99")}}, Actor: audit.Actor{UserVia: "none", SessionVia: "none"}}
		if _, err := g.Store.Append([]sink.Batch{{Events: []sink.Encoded{{Key: e.StoreKey(), Body: e.AppendBody(nil)}}, Checkpoint: lsn + 8}}); err != nil {
			g.t.Error(err)
		}
		g.added = audit.FormatID(e.CommitLSN, e.Ordinal)
	})
	return next, err
}

// TestExportIsTheStoreWhenItBegan: an event committed while an export
// runs (between two of its pages) is not in it.
func TestExportIsTheStoreWhenItBegan(t *testing.T) {
	defer func(n int) { exportPageEvents = n }(exportPageEvents)
	exportPageEvents = 2
	f := newFixture(t)
	g := &growing{Store: f.store, t: t}
	got := exportOver(t, f.handlerOn(t, g, &admin), "/api/v1/export")
	if g.added == "" || bytes.Contains(got.body, []byte(g.added)) {
		t.Fatalf("an event stored during the export (%q) is in it", g.added)
	}
	if n := bytes.Count(got.body, []byte("\n")); n != len(f.ids) {
		t.Errorf("%d events exported, the store held %d", n, len(f.ids))
	}
	later := exportOver(t, f.handler(t, &admin), "/api/v1/export")
	if !bytes.Contains(later.body, []byte(g.added)) {
		t.Error("the next export lacks the event")
	}
}

// TestExportBadRequests: bad parameters are 400 and record nothing; HEAD
// answers the headers without exporting.
func TestExportBadRequests(t *testing.T) {
	f := newFixture(t)
	before := len(accessEntries(t, f.store))
	for _, target := range []string{"/api/v1/export?format=pdf", "/api/v1/export?limit=3", "/api/v1/export?since=yesterday",
		"/api/v1/export?format=csv&format=jsonl", "/api/v1/export?record=nope", "/api/v1/export?op=select"} {
		if a := f.get(t, &admin, target); a.status != 400 {
			t.Errorf("%s: %d %s", target, a.status, a.body)
		}
	}
	a := serve(f.handler(t, &admin), httptest.NewRequest(http.MethodHead, "/api/v1/export?format=xlsx", nil))
	if a.status != 200 || len(a.body) != 0 || a.header.Get("Content-Type") != export.ContentType("xlsx") {
		t.Errorf("HEAD: %d %v %d bytes", a.status, a.header, len(a.body))
	}
	if a := f.get(t, nil, "/api/v1/export"); a.status != 401 {
		t.Errorf("no principal: %d", a.status)
	}
	if after := len(accessEntries(t, f.store)); after != before {
		t.Errorf("%d access log entries for refused exports", after-before)
	}
}

// zipParts unpacks an XLSX file's parts.
func zipParts(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("not a workbook: %v", err)
	}
	parts := map[string][]byte{}
	for _, zf := range zr.File {
		r, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		parts[zf.Name], err = io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return parts
}

// TestOneXLSXExportAtATime: while an XLSX export runs, another is 503 with
// Retry-After (each holds tens of MiB until its file ends); other formats
// still run; once it has ended the next XLSX export runs.
func TestOneXLSXExportAtATime(t *testing.T) {
	defer func(n int) { exportPageEvents = n }(exportPageEvents)
	exportPageEvents = 2
	f := newFixture(t)
	st := &stalling{Store: f.store, reached: make(chan struct{})}
	srv := httptest.NewServer(f.handlerOn(t, st, &viewer))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/export?format=xlsx", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	<-st.reached // the first XLSX export is under way, stalled
	second, err := http.Get(srv.URL + "/api/v1/export?format=xlsx")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(second.Body)
	second.Body.Close()
	if second.StatusCode != http.StatusServiceUnavailable || second.Header.Get("Retry-After") == "" || !bytes.Contains(body, []byte("already running")) {
		t.Fatalf("a second XLSX export: %d, Retry-After %q, %s", second.StatusCode, second.Header.Get("Retry-After"), body)
	}
	// The stalling store stalls only its second query: a CSV export now
	// runs on the fixture's store.
	csv := exportOver(t, f.handler(t, &viewer), "/api/v1/export?format=csv")
	if csv.status != http.StatusOK || csv.readErr != nil {
		t.Fatalf("a CSV export beside it: %d %v", csv.status, csv.readErr)
	}
	cancel()
	res.Body.Close()
	// The first has ended (cut): the slot is free again. The handler may
	// still be returning: wait for the slot, not a time.
	for {
		third, err := http.Get(srv.URL + "/api/v1/export?format=xlsx")
		if err != nil {
			t.Fatal(err)
		}
		_, rerr := io.ReadAll(third.Body)
		third.Body.Close()
		if third.StatusCode == http.StatusServiceUnavailable {
			runtime.Gosched()
			continue
		}
		if third.StatusCode != http.StatusOK || rerr != nil {
			t.Fatalf("the next XLSX export: %d %v", third.StatusCode, rerr)
		}
		break
	}
}
