package manifest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/export"
	"github.com/cdcaudit/cdcaudit/instancekey"
	"github.com/cdcaudit/cdcaudit/sink"
)

var t0 = time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)

// store is a real store of n events, one transaction each, a minute
// apart, alternating two tables; every event's note is the same text so
// that a test can find and edit it.
func store(t testing.TB, n int, note string) *sink.Store {
	t.Helper()
	s, err := sink.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var b sink.Batch
	for i := 0; i < n; i++ {
		commit := uint64(i+1) << 8
		id := []byte(fmt.Sprint(i + 1))
		e := &audit.Event{
			LSN: commit - 0x10, CommitLSN: commit, Ordinal: 1, XID: uint32(700 + i),
			CommitTime: t0.Add(time.Duration(i) * time.Minute), Database: "odoo", Schema: "public",
			Table: []string{"sale_order", "res_partner"}[i%2], Op: audit.OpInsert,
			Key:   audit.Row{{Name: "id", Value: id}},
			After: audit.Row{{Name: "id", Value: id}, {Name: "note", Value: audit.AppendString(nil, note)}},
		}
		b.Events = append(b.Events, sink.Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil)})
		b.Checkpoint = commit + 8
	}
	if _, err := s.Append([]sink.Batch{b}); err != nil {
		t.Fatal(err)
	}
	return s
}

func newKey(t testing.TB) *instancekey.Key {
	t.Helper()
	k, err := instancekey.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// exported writes an export and its manifest to files, as the manifest
// file says it, and returns their paths.
func exported(t *testing.T, s *sink.Store, q sink.Query, format string, k Signer) (file string, m *Manifest) {
	t.Helper()
	var buf bytes.Buffer
	signed, err := Export(context.Background(), &buf, s, q, format, k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file = filepath.Join(dir, "export."+format)
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err = Parse(signed.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	return file, m
}

func check(t *testing.T, file string, m *Manifest, trusted string) *Result {
	t.Helper()
	res, err := Check(file, m, trusted)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestRoundTrip(t *testing.T) {
	s := store(t, 7, "hello")
	k := newKey(t)
	q := sink.Query{Tables: []string{"sale_order"}, Since: t0.Add(time.Minute)}
	for _, format := range export.Formats {
		file, m := exported(t, s, q, format, k)
		if m.Events != 3 || m.FirstID != "0000000000000300-000001" || m.LastID != "0000000000000700-000001" || m.Format != format {
			t.Fatalf("%s: manifest %+v", format, m)
		}
		if m.Filter.Since != "2026-11-23T13:01:00Z" || strings.Join(m.Filter.Tables, ",") != "sale_order" || m.Key != k.Public() {
			t.Errorf("%s: filter %+v, key %s", format, m.Filter, m.Key)
		}
		if again, _ := Parse(bytes.ReplaceAll(m.Marshal(), []byte("\n  "), []byte(" "))); again == nil || again.Digest() != m.Digest() {
			t.Errorf("%s: the digest depends on the file's layout", format)
		}
		// The chain values are the store's.
		var prevs, hashes []string
		s.Query(t.Context(), q, func(_, rec []byte) error {
			p, h, _ := audit.Links(rec)
			prevs, hashes = append(prevs, p.String()), append(hashes, h.String())
			return nil
		})
		if m.FirstPrevHash != prevs[0] || m.LastHash != hashes[2] {
			t.Errorf("%s: chain values %s %s, want %s %s", format, m.FirstPrevHash, m.LastHash, prevs[0], hashes[2])
		}
		res := check(t, file, m, k.Public())
		if !res.OK() || !res.KeyTrusted || res.Events != 3 || res.Rechecked != 3 || res.SHA256 != m.SHA256 {
			t.Errorf("%s: %+v", format, res)
		}
		// Without a trusted key: consistent, but not proved from the instance.
		if res := check(t, file, m, ""); !res.OK() || res.KeyTrusted {
			t.Errorf("%s without a trusted key: %+v", format, res)
		}
	}
	// An export of nothing has a manifest too.
	file, m := exported(t, s, sink.Query{Tables: []string{"nope"}}, "jsonl", k)
	if res := check(t, file, m, k.Public()); !res.OK() || m.Events != 0 || m.FirstID != "" || m.Bytes != 0 {
		t.Errorf("empty export: %+v %+v", m, res)
	}
}

// hasProblem fails unless res names a problem containing each of want.
func hasProblem(t *testing.T, what string, res *Result, want ...string) {
	t.Helper()
	all := strings.Join(res.Problems, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("%s: no problem says %q; problems:\n%s", what, w, all)
		}
	}
}

func TestTamperedFiles(t *testing.T) {
	s := store(t, 5, "hello")
	k := newKey(t)
	for _, format := range []string{"jsonl", "csv"} {
		file, m := exported(t, s, sink.Query{}, format, k)
		orig, _ := os.ReadFile(file)
		lines := strings.SplitAfter(string(orig), "\n")
		lines = lines[:len(lines)-1] // after the last newline
		head := 0
		if format == "csv" {
			head = 1
		}
		edit := func(name string, content string, want ...string) {
			t.Helper()
			if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			res := check(t, file, m, k.Public())
			if res.OK() {
				t.Errorf("%s %s: not detected", format, name)
			}
			hasProblem(t, format+" "+name, res, want...)
		}
		edit("one byte", strings.Replace(string(orig), "hello", "hellO", 1),
			"the file's SHA-256 is", "the file was altered", "event 0000000000000100-000001: its content does not match its hash")
		dropped := strings.Join(append(append([]string{}, lines[:head+2]...), lines[head+3:]...), "")
		edit("dropped line", dropped, "the file holds 4 events, the manifest says 5: events were removed", "the file's SHA-256 is")
		swapped := append([]string{}, lines...)
		swapped[head+1], swapped[head+2] = swapped[head+2], swapped[head+1]
		edit("reordered lines", strings.Join(swapped, ""),
			"event 0000000000000200-000001 comes after event 0000000000000300-000001: the events are out of commit order")
		edit("last line dropped", strings.Join(lines[:len(lines)-1], ""),
			"the file's events run from 0000000000000100-000001 to 0000000000000400-000001, the manifest says from 0000000000000100-000001 to 0000000000000500-000001",
			"the file's chain values")
		edit("line repeated", string(orig)+lines[len(lines)-1], "events were added", "out of commit order (moved or repeated)")
		if format == "jsonl" {
			edit("cut short", string(orig[:len(orig)-1]), "the file ends without a newline")
		}
		os.WriteFile(file, orig, 0o600)
		if res := check(t, file, m, k.Public()); !res.OK() {
			t.Fatalf("%s: the original no longer checks: %v", format, res.Problems)
		}
	}
}

// An event altered with its hash recomputed still verifies on its own: the
// file's SHA-256, signed, is what catches it.
func TestRehashedEventCaughtBySHA(t *testing.T) {
	s := store(t, 3, "hello")
	k := newKey(t)
	file, m := exported(t, s, sink.Query{}, "jsonl", k)
	b, _ := os.ReadFile(file)
	lines := strings.SplitAfter(string(b), "\n")
	body, prev, _, ok := audit.SplitSealed([]byte(strings.TrimSuffix(lines[1], "\n")))
	if !ok {
		t.Fatal("not a sealed record")
	}
	forged, _ := audit.Seal(nil, bytes.Replace(body, []byte("hello"), []byte("HELLO"), 1), prev)
	lines[1] = string(forged) + "\n"
	os.WriteFile(file, []byte(strings.Join(lines, "")), 0o600)
	res := check(t, file, m, k.Public())
	hasProblem(t, "rehashed", res, "the file's SHA-256 is")
	if res.Rechecked != 3 {
		t.Errorf("the forged event's own hash should recompute: %+v", res)
	}
}

func TestTamperedXLSX(t *testing.T) {
	s := store(t, 4, "hello")
	k := newKey(t)
	file, m := exported(t, s, sink.Query{}, "xlsx", k)
	b, _ := os.ReadFile(file)
	b[len(b)/2] ^= 1
	os.WriteFile(file, b, 0o600)
	res := check(t, file, m, k.Public())
	hasProblem(t, "xlsx byte", res, "the file's SHA-256 is", "the workbook's rows were not read")

	// A value longer than a cell: its row is counted, its hash not
	// recomputed, and said so.
	long := store(t, 2, strings.Repeat("v", 40000))
	file, m = exported(t, long, sink.Query{}, "xlsx", k)
	res = check(t, file, m, k.Public())
	if !res.OK() || res.Events != 2 || res.Rechecked != 0 || res.Uncheckable != 2 {
		t.Errorf("cut values: %+v", res)
	}
}

func TestTamperedManifest(t *testing.T) {
	s := store(t, 5, "hello")
	k := newKey(t)
	file, m := exported(t, s, sink.Query{Ops: []audit.Op{audit.OpInsert}}, "jsonl", k)
	for name, change := range map[string]func(m *Manifest){
		"events":   func(m *Manifest) { m.Events = 4 },
		"filter":   func(m *Manifest) { m.Filter.Ops = nil },
		"user":     func(m *Manifest) { m.Filter.User = "alice" },
		"made":     func(m *Manifest) { m.Made = "2020-01-01T00:00:00Z" },
		"sha256":   func(m *Manifest) { m.SHA256 = strings.Repeat("0", 64) },
		"last id":  func(m *Manifest) { m.LastID = "0000000000000400-000001" },
		"the hash": func(m *Manifest) { m.LastHash = strings.Repeat("a", 64) },
		"source":   func(m *Manifest) { m.Source = "erp_b" },
	} {
		c := *m
		change(&c)
		if c.Digest() == m.Digest() {
			t.Errorf("changed %s: same digest", name)
		}
		got, err := Parse(c.Marshal())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		res := check(t, file, got, k.Public())
		hasProblem(t, "changed "+name, res, ErrSignature.Error())
		if res.KeyTrusted {
			t.Errorf("changed %s: key trusted", name)
		}
	}

	// Another instance signs the altered manifest: consistent in itself,
	// but not signed by the trusted key.
	other := newKey(t)
	c := *m
	c.Filter.User = "alice"
	forged := Sign(other, c)
	res := check(t, file, &forged, k.Public())
	hasProblem(t, "another key", res, "the manifest is signed by key "+instancekey.Fingerprint(other.Public())+", not by the trusted key "+instancekey.Fingerprint(k.Public()))
	if res := check(t, file, &forged, ""); !res.OK() || res.KeyTrusted {
		t.Errorf("without a trusted key a forged manifest is only self-consistent: %+v", res)
	}
}

func TestParseRejects(t *testing.T) {
	s := store(t, 2, "x")
	k := newKey(t)
	var buf bytes.Buffer
	m, err := Export(t.Context(), &buf, s, sink.Query{}, "csv", k)
	if err != nil {
		t.Fatal(err)
	}
	good := string(m.Marshal())
	if _, err := Parse([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"not json":      "hello",
		"unknown field": strings.Replace(good, `"format"`, `"extra": 1, "format"`, 1),
		"trailing":      good + "{}",
		"version":       strings.Replace(good, Version, "cdcaudit.export-manifest.v9", 1),
		"format":        strings.Replace(good, `"csv"`, `"pdf"`, 1),
		"sha256":        strings.Replace(good, m.SHA256, "xyz", 1),
		"first id":      strings.Replace(good, m.FirstID, "1", 1),
		"key":           strings.Replace(good, m.Key, "ed25519:nope", 1),
		"made":          strings.Replace(good, m.Made, "yesterday", 1),
		"too large":     good + strings.Repeat(" ", MaxSize),
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A source's name as the configuration allows it, or none.
	named := m
	named.Source = "erp_a.2024-x"
	named = Sign(k, named)
	if got, err := Parse(named.Marshal()); err != nil || got.Source != "erp_a.2024-x" || got.VerifySignature() != nil {
		t.Errorf("a manifest naming its source: %+v, %v", got, err)
	}
	if !strings.Contains(good, `"format": "csv",`+"\n"+`  "filter"`) {
		t.Errorf("a manifest without a source has a source member:\n%s", good)
	}
	for _, bad := range []string{"-a", "a/b", "a b", strings.Repeat("a", 65), "a\u0000"} {
		c := strings.Replace(good, `"format": "csv",`, `"format": "csv", "source": "`+bad+`",`, 1)
		if _, err := Parse([]byte(c)); err == nil {
			t.Errorf("source %q: accepted", bad)
		}
	}
	// The signature: a manifest whose signature is not one.
	c := m
	c.Signature = "AAAA"
	if err := c.VerifySignature(); err == nil || errors.Is(err, ErrSignature) {
		t.Errorf("a malformed signature: %v", err)
	}
	if _, err := Export(t.Context(), &buf, s, sink.Query{Limit: 1}, "csv", k); err == nil {
		t.Error("an export with a limit got a manifest")
	}
}

// The recorder hashes what the writer accepted, not what it was handed.
func TestRecorderCountsWhatWasWritten(t *testing.T) {
	var fw failAfter
	fw.n = 10
	r := NewRecorder(&fw)
	r.Write([]byte("0123456789abcdef"))
	if m := r.Manifest("jsonl", Filter{}, t0); m.Bytes != 10 {
		t.Errorf("bytes %d, want the 10 accepted", m.Bytes)
	}
}

type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, errors.New("full")
	}
	f.n -= len(p)
	return len(p), nil
}

func FuzzParse(f *testing.F) {
	k, err := instancekey.LoadOrCreate(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	m := Sign(k, Manifest{Format: "jsonl", Events: 2, FirstID: "0000000000000100-000001", LastID: "0000000000000200-000001",
		FirstPrevHash: strings.Repeat("0", 64), LastHash: strings.Repeat("a", 64), SHA256: strings.Repeat("b", 64),
		Made: t0.Format(time.RFC3339Nano), Filter: Filter{Tables: []string{"sale_*"}, Record: "public.t:1"}})
	f.Add(m.Marshal())
	f.Add([]byte(`{"manifest":"cdcaudit.export-manifest.v1"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		// What parses marshals and parses back to the same manifest, with
		// the same signed bytes.
		again, err := Parse(m.Marshal())
		if err != nil {
			t.Fatalf("a parsed manifest does not parse back: %v", err)
		}
		if !bytes.Equal(again.SigningBytes(), m.SigningBytes()) {
			t.Fatalf("signed bytes changed:\n%s\n%s", m.SigningBytes(), again.SigningBytes())
		}
		m.VerifySignature()
	})
}

// The manifest names the events' source; an upgraded store's export holds
// events stored before sources existed (none) and after (one): that is one
// source. Events of two sources are refused.
func TestRecorderSource(t *testing.T) {
	record := func(commit uint64, source string) []byte {
		e := &audit.Event{LSN: commit - 0x10, CommitLSN: commit, Ordinal: 1, CommitTime: t0, Database: "odoo", Source: source,
			Schema: "public", Table: "res_partner", Op: audit.OpInsert, Key: audit.Row{{Name: "id", Value: []byte("1")}}}
		rec, _ := audit.Seal(nil, e.AppendBody(nil), audit.Genesis)
		return rec
	}
	r := NewRecorder(io.Discard)
	for i, src := range []string{"", "erp", "", "erp"} {
		if err := r.Event(record(uint64(i+1)<<8, src)); err != nil {
			t.Fatalf("event %d (source %q): %v", i, src, err)
		}
	}
	if m := r.Manifest("jsonl", Filter{}, t0); m.Source != "erp" || m.Events != 4 {
		t.Errorf("source %q, %d events; want erp, 4", m.Source, m.Events)
	}
	if err := r.Event(record(5<<8, "hr")); !errors.Is(err, audit.ErrMalformed) {
		t.Errorf("an event of another source: %v", err)
	}
}
