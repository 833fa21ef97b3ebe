package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/anchor"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/backup"
	"github.com/cdcaudit/cdcaudit/instancekey"
	"github.com/cdcaudit/cdcaudit/sink"
)

// holdStore holds dir's store as 'cdcaudit run' does (internal/pipeline's
// chainServices): open for writing, its socket serving copies and reads.
// The read commands cannot open it then: they must ask the socket.
func holdStore(t *testing.T, dir string) (release func()) {
	t.Helper()
	s, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := backup.Serve(dir, s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv.ServeReads(s, nil)
	if _, err := sink.OpenReadOnly(dir); !errors.Is(err, sink.ErrLocked) {
		t.Fatalf("the held store opens: %v", err)
	}
	return func() { srv.Close(); s.Close() }
}

// readRun is what a command left: its exit status, standard output and
// the files it wrote.
type readRun struct {
	code   int
	stdout string
	stderr string
	files  map[string][]byte
}

// runRead runs args with {out} and {manifest} replaced by files in a
// fresh directory, and collects them.
func runRead(t *testing.T, args []string) readRun {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"{out}": filepath.Join(dir, "export"), "{manifest}": filepath.Join(dir, "manifest.json")}
	var a []string
	for _, s := range args {
		if f, ok := files[s]; ok {
			s = f
		}
		a = append(a, s)
	}
	stdout, stderr, code := runCLI(t, nil, a...)
	r := readRun{code: code, stdout: stdout, stderr: stderr, files: map[string][]byte{}}
	for name, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			if name == "{manifest}" {
				b = sameManifest(t, b)
			}
			r.files[name] = b
		}
	}
	return r
}

// sameManifest blanks what differs between two manifests of the same
// export: when it was made, and so the signature over it.
func sameManifest(t *testing.T, b []byte) []byte {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if _, err := time.Parse(time.RFC3339Nano, m["made"].(string)); err != nil {
		t.Errorf("manifest made: %v", err)
	}
	m["made"], m["signature"] = "", ""
	out, _ := json.Marshal(m)
	return out
}

// sameWhileHeld runs each command on dir's store stopped, then held by a
// daemon, and wants the same exit status, standard output and files
// byte for byte (manifests but for their time and signature).
func sameWhileHeld(t *testing.T, dir string, cases [][]string) {
	t.Helper()
	var stopped []readRun
	for _, args := range cases {
		stopped = append(stopped, runRead(t, args))
	}
	release := holdStore(t, dir)
	defer release()
	for i, args := range cases {
		held := runRead(t, args)
		want := stopped[i]
		if held.code != want.code || held.stdout != want.stdout {
			t.Errorf("%v\nstopped: exit %d\n%s%s\nheld: exit %d\n%s%s", args, want.code, want.stdout, want.stderr, held.code, held.stdout, held.stderr)
			continue
		}
		if len(held.files) != len(want.files) {
			t.Errorf("%v: files %d held, %d stopped", args, len(held.files), len(want.files))
		}
		for name, b := range want.files {
			if !bytes.Equal(held.files[name], b) {
				t.Errorf("%v: %s differs (%d bytes held, %d stopped)", args, name, len(held.files[name]), len(b))
			}
		}
	}
}

// Every read command prints the same, byte for byte, whether it read the
// store itself or a daemon read it for it: export in every format and
// selection, to standard output and to files with manifests (over more
// events than a page the daemon sends); events in every mode; sessions;
// verify with its anchors, cuts and access log.
func TestReadCommandsWhileTheDaemonRuns(t *testing.T) {
	dir := makeStore(t, 2500)
	s, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, login := range []string{"alice", "mallory"} {
		if _, err := s.AppendAccess(sink.AccessEntry{Time: time.Now(), Action: "signin", Result: "failed", Login: login, Address: "192.0.2.9"}); err != nil {
			t.Fatal(err)
		}
	}
	key, err := instancekey.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	gen, _ := s.GenesisHash()
	anchorOf := func(id string, events uint64) string {
		rec, err := s.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		_, _, h, _ := audit.Check(rec)
		return anchor.Sign(anchor.Anchor{Time: time.Now(), Genesis: gen.String(), HeadID: id, HeadHash: h.String(), Events: events, Checkpoint: "0/0"}, key)
	}
	anchors := anchorOf(audit.FormatID(0x1080+5*0x100, 1), 6) + "\n" + anchorOf(audit.FormatID(0x1080+2000*0x100, 1), 2001) + "\n"
	now := time.Date(2026, 11, 23, 10, 0, 30, 0, time.UTC).Add(time.Hour)
	p, err := s.NewPruner(sink.Retention{Default: time.Hour, Now: func() time.Time { return now }, Batch: 8})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Prune(t.Context()); err != nil {
		t.Fatal(err)
	}
	headKey, headHash, n := s.Head()
	lsn, ord := mustSplit(t, headKey)
	anchors += anchor.Sign(anchor.Anchor{Time: time.Now().Add(time.Minute), Genesis: gen.String(), HeadID: audit.FormatID(lsn, ord),
		HeadHash: headHash.String(), Events: n, Checkpoint: "0/0"}, key) + "\n"
	s.Close()
	anchorFile := filepath.Join(t.TempDir(), "anchors")
	os.WriteFile(anchorFile, []byte(anchors), 0o600)
	stale := filepath.Join(t.TempDir(), "stale-anchors") // of the records retention removed, no anchor after the cut
	os.WriteFile(stale, []byte(firstAnchor(anchors)), 0o600)

	export := func(a ...string) []string { return append([]string{"export", "--data-dir", dir}, a...) }
	sameWhileHeld(t, dir, [][]string{
		export(),
		export("--format", "csv"),
		export("--table", "sale_*", "--op", "insert", "--since", "2026-11-23T10:05:00Z", "--until", "2026-11-23T10:20:00Z"),
		export("--record", "public.sale_order:2401", "--format", "csv"),
		export("--table", "res_partner", "--format", "xlsx", "--out", "{out}", "--manifest", "{manifest}"),
		export("--format", "csv", "--out", "{out}", "--manifest", "{manifest}"),
		export("--manifest", "{manifest}"),
		export("--user", "nobody"),
		export("--flag", "orm_bypass"),
		{"verify", "--data-dir", dir},
		{"verify", "--data-dir", dir, "--anchor", anchorFile},
		{"verify", "--data-dir", dir, "--anchor", stale},
		{"sessions", "--data-dir", dir},
	})
}

// firstAnchor keeps the first anchor of a file: one of a record retention
// removed, under a cut no anchor covers.
func firstAnchor(anchors string) string {
	first, _, _ := strings.Cut(anchors, "\n")
	return first + "\n"
}

// events, sessions and the --user and --session selections, which read
// the session state, print the same held or stopped; so do the failures:
// a record not found (4), a key that does not fit (2).
func TestRecordsAndSessionsWhileTheDaemonRuns(t *testing.T) {
	dir, _ := recordStore(t)
	events := func(a ...string) []string { return append([]string{"events", "--data-dir", dir}, a...) }
	sameWhileHeld(t, dir, [][]string{
		events("--record", "sale_order:42"),
		events("--record", "sale_order:42", "--format", "json"),
		events("--record", "sale_order:42", "--format", "jsonl"),
		events("--record", "public.sale_order:142"),
		events("--record", `tag_rel:{"order_id":42,"tag":"x"}`),
		events("--record", "tag_rel:42"),
		events("--record", "sale_order:42", "--at", "2026-11-23T10:00:03Z"),
		events("--record", "sale_order:42", "--at", "2026-11-23T10:00:03Z", "--format", "json"),
		events("--record", "doc:2", "--at", "2026-11-23T11:00:00Z", "--format", "jsonl"),
		events("--record", "doc:1", "--at", "2026-11-23T11:00:00Z"),
		events("--record", "sale_order:7"),
		events("--record", "nosuch:1", "--at", "2026-11-23T11:00:00Z"),
	})

	sdir, now, alice, _, _ := sessionsStore(t)
	fixNow(t, now)
	sessions := func(a ...string) []string { return append([]string{"sessions", "--data-dir", sdir}, a...) }
	sameWhileHeld(t, sdir, [][]string{
		sessions(),
		sessions("--active"),
		sessions("--format", "json"),
		sessions("--user", "alice@example.com", "--format", "json"),
		sessions("--user", "#7"),
		sessions("--user", "nobody"),
		{"export", "--data-dir", sdir, "--session", alice[:8]},
		{"verify", "--data-dir", sdir},
	})

	udir, _ := userIDStore(t)
	page := exportPage
	exportPage = 2 // each page a request of its own, with its limit and cursor
	t.Cleanup(func() { exportPage = page })
	export := func(a ...string) []string { return append([]string{"export", "--data-dir", udir}, a...) }
	sameWhileHeld(t, udir, [][]string{
		export("--user", "#9"),
		export("--user", "#9", "--since", "2026-11-23T10:04:00Z", "--until", "2026-11-23T10:09:00Z", "--format", "csv"),
		export("--user", "#12"),
		export("--user", "carol@example.com"),
		{"sessions", "--data-dir", udir, "--format", "json"},
	})
}

// A damaged store fails the same way held or stopped: verify names the
// first bad event (exit 1), and export writes the events before it and
// fails, never ending as if complete.
func TestDamageWhileTheDaemonRuns(t *testing.T) {
	dir := makeStore(t, 30)
	found := false
	if err := sink.EditRecords(dir, func(k, rec []byte) ([]byte, error) {
		if i := bytes.Index(rec, []byte(`"id":21`)); i >= 0 && !found {
			found = true
			rec = bytes.Replace(rec, []byte("quoted"), []byte("QUOTED"), 1)
		}
		return rec, nil
	}); err != nil || !found {
		t.Fatalf("event not found in the store: %v", err)
	}
	sameWhileHeld(t, dir, [][]string{
		{"verify", "--data-dir", dir},
		{"export", "--data-dir", dir},
		{"export", "--data-dir", dir, "--format", "csv", "--out", "{out}"},
		{"events", "--data-dir", dir, "--record", "sale_order:21"},
	})
	release := holdStore(t, dir)
	defer release()
	out, errOut, code := runCLI(t, nil, "export", "--data-dir", dir)
	if code != exitFail || strings.Count(out, "\n") != 20 || !strings.Contains(errOut, "cdcaudit export: ") {
		t.Errorf("export of a damaged store, held: exit %d, %d lines, %q", code, strings.Count(out, "\n"), errOut)
	}
}

// A store held by a process that does not serve it (a reindex, a compact,
// a daemon still starting, an older daemon) is refused with a message that
// says so.
func TestReadCommandsOnAStoreHeldWithoutADaemon(t *testing.T) {
	dir := makeStore(t, 3)
	s, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, args := range [][]string{
		{"export", "--data-dir", dir},
		{"events", "--data-dir", dir, "--record", "sale_order:1"},
		{"sessions", "--data-dir", dir},
		{"verify", "--data-dir", dir},
	} {
		out, errOut, code := runCLI(t, nil, args...)
		if code != exitFail || out != "" || !strings.Contains(errOut, "locked by another process") ||
			!strings.Contains(errOut, "no running 'cdcaudit run' answers on "+filepath.Join(dir, backup.SocketName)) {
			t.Errorf("%v: exit %d, %q %q", args, code, out, errOut)
		}
	}
	// A daemon whose socket serves no reads (an older cdcaudit).
	srv, err := backup.Serve(dir, s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	out, errOut, code := runCLI(t, nil, "export", "--data-dir", dir)
	if code != exitFail || out != "" || !strings.Contains(errOut, "locked by another process") || !strings.Contains(errOut, "does not serve reads") {
		t.Errorf("a daemon that serves no reads: exit %d, %q %q", code, out, errOut)
	}
}
