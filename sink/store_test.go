package sink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)

// ev builds an event at (commit, ord) with a body of a realistic shape.
func ev(commit uint64, ord uint32) Encoded {
	uid := int64(ord)
	e := &audit.Event{
		LSN: commit - 0x10, CommitLSN: commit, Ordinal: ord, XID: uint32(commit),
		CommitTime: t0.Add(time.Duration(commit) * time.Millisecond),
		Database:   "odoo", Schema: "public", Table: "sale_order", Model: "sale.order", Op: audit.OpUpdate,
		Key:     audit.Row{{Name: "id", Value: []byte(strconv.Itoa(int(ord)))}},
		Before:  audit.Row{{Name: "state", Value: []byte(`"draft"`)}},
		After:   audit.Row{{Name: "state", Value: []byte(`"sale"`)}},
		Changed: []string{"state"},
		Actor:   audit.Actor{UserID: &uid, UserVia: "row_user"},
	}
	return Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil)}
}

// txBatch is one complete transaction: n events at commit, checkpoint end.
func txBatch(commit uint64, n int) Batch {
	b := Batch{Checkpoint: commit + 8}
	for i := 1; i <= n; i++ {
		b.Events = append(b.Events, ev(commit, uint32(i)))
	}
	return b
}

func mustOpen(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustAppend(t testing.TB, s *Store, bs ...Batch) Result {
	t.Helper()
	r, err := s.Append(bs)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func scanAll(t testing.TB, s *Store) (keys []string, recs [][]byte) {
	t.Helper()
	err := s.Scan(nil, nil, func(k, v []byte) error {
		keys = append(keys, keyID(k))
		recs = append(recs, append([]byte(nil), v...))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys, recs
}

func TestAppendReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := mustOpen(t, dir)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(dir, FileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode: %v %v", fi.Mode(), err)
	}
	if pid, _ := os.ReadFile(filepath.Join(dir, PidFileName)); strings.TrimSpace(string(pid)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("pid file holds %q", pid)
	}
	if s.Checkpoint() != 0 {
		t.Fatal("new store has a checkpoint")
	}
	if k, h, n := s.Head(); !bytes.Equal(k, mkey(0, 0)) || h == audit.Genesis || n != 0 {
		t.Fatalf("a new store's head is not its genesis record: %x %s %d", k, h, n)
	}

	// Two transactions, then the first half of a third (no checkpoint).
	r := mustAppend(t, s, txBatch(0x100, 3), txBatch(0x200, 2), Batch{Events: []Encoded{ev(0x300, 1)}})
	if r.Stored != 6 || r.Duplicates != 0 || r.Checkpoint != 0x208 || r.Bytes == 0 {
		t.Fatalf("result %+v", r)
	}
	// The rest of it, then an idle advance.
	r = mustAppend(t, s, Batch{Events: []Encoded{ev(0x300, 2)}, Checkpoint: 0x308})
	if r.Stored != 1 || r.Checkpoint != 0x308 {
		t.Fatalf("result %+v", r)
	}
	r = mustAppend(t, s, Batch{Checkpoint: 0x5000})
	if r.Stored != 0 || r.Checkpoint != 0x5000 {
		t.Fatalf("idle advance: %+v", r)
	}
	// A lower checkpoint never moves it back.
	if r = mustAppend(t, s, Batch{Checkpoint: 0x400}); r.Checkpoint != 0x5000 {
		t.Fatalf("checkpoint went back: %+v", r)
	}
	_, wantHash, _ := s.Head()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, PidFileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("pid file left behind: %v", err)
	}

	s = mustOpen(t, dir)
	defer s.Close()
	if s.Checkpoint() != 0x5000 {
		t.Fatalf("checkpoint after reopen %x", s.Checkpoint())
	}
	k, h, n := s.Head()
	if keyID(k) != audit.FormatID(0x300, 2) || h != wantHash || n != 7 {
		t.Fatalf("head after reopen %s %s %d", keyID(k), h, n)
	}
	keys, recs := scanAll(t, s)
	want := []string{"0000000000000100-000001", "0000000000000100-000002", "0000000000000100-000003",
		"0000000000000200-000001", "0000000000000200-000002", "0000000000000300-000001", "0000000000000300-000002"}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("keys %v", keys)
	}
	prev, _ := s.GenesisHash() // Scan skips the genesis record, the chain's first
	for i, rec := range recs {
		id, p, h, err := audit.Check(rec)
		if err != nil || id != keys[i] || p != prev {
			t.Fatalf("record %d: %s %v", i, id, err)
		}
		prev = h
	}
	got, err := s.Get("0000000000000200-000001")
	if err != nil || string(got) != string(recs[3]) {
		t.Fatalf("Get: %v", err)
	}
	if _, err := s.Get("0000000000000200-000009"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing id: %v", err)
	}
	// Scan bounds: from inclusive, to exclusive.
	from, to := audit.MakeKey(0x100, 3), audit.MakeKey(0x300, 1)
	var ids []string
	s.Scan(from[:], to[:], func(k, _ []byte) error { ids = append(ids, keyID(k)); return nil })
	if len(ids) != 3 || ids[0] != want[2] || ids[2] != want[4] {
		t.Fatalf("bounded scan %v", ids)
	}
	if _, err := s.Verify(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if s.Size() <= 0 {
		t.Fatal("size")
	}
}

func TestReplayIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	defer s.Close()
	batches := []Batch{txBatch(0x100, 3), txBatch(0x200, 2)}
	mustAppend(t, s, batches...)
	_, head, _ := s.Head()

	r := mustAppend(t, s, batches...)
	if r.Stored != 0 || r.Duplicates != 5 || r.Checkpoint != 0x208 {
		t.Fatalf("replay: %+v", r)
	}
	if _, h, n := s.Head(); h != head || n != 5 {
		t.Fatal("replay moved the head")
	}
	// A replay that runs on into new events: the old are skipped, the new chained.
	r = mustAppend(t, s, txBatch(0x200, 2), txBatch(0x300, 2))
	if r.Stored != 2 || r.Duplicates != 2 || r.Checkpoint != 0x308 {
		t.Fatalf("overlapping replay: %+v", r)
	}
	// The same event twice in one append is one event.
	r = mustAppend(t, s, Batch{Events: []Encoded{ev(0x400, 1), ev(0x400, 1)}, Checkpoint: 0x408})
	if r.Stored != 1 || r.Duplicates != 1 {
		t.Fatalf("twice in one append: %+v", r)
	}
	res, err := s.Verify(t.Context(), nil)
	if err != nil || res.Events != 8 {
		t.Fatalf("verify: %+v %v", res, err)
	}
}

func TestMissingBelowHeadIsAnError(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	mustAppend(t, s, txBatch(0x100, 1), txBatch(0x300, 1))
	_, err := s.Append([]Batch{txBatch(0x400, 1), txBatch(0x200, 1)})
	if err == nil || !strings.Contains(err.Error(), "0000000000000200-000001") {
		t.Fatalf("out-of-order event accepted: %v", err)
	}
	// Nothing of the failed append is stored, not even the event before it.
	if _, _, n := s.Head(); n != 2 || s.Checkpoint() != 0x308 {
		t.Fatalf("failed append left state: n=%d cp=%x", n, s.Checkpoint())
	}
	s.Close()
	s = mustOpen(t, dir)
	defer s.Close()
	if keys, _ := scanAll(t, s); len(keys) != 2 {
		t.Fatalf("failed append left events: %v", keys)
	}
	if _, err := s.Verify(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestRefusesBadBodies(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	defer s.Close()
	other := ev(0x500, 1)
	other.Key = audit.MakeKey(0x500, 2)
	e := &audit.Event{CommitLSN: 0x600, Ordinal: 1, Op: audit.OpInsert,
		After: audit.Row{{Name: "doc", Value: []byte("{\"a\":\n1}")}}}
	sealed, _ := audit.Seal(nil, ev(0x700, 1).Body, audit.Genesis)
	for name, bad := range map[string]Encoded{
		"body of another key": other,
		"raw line break":      {Key: e.StoreKey(), Body: e.AppendBody(nil)},
		"already sealed":      {Key: audit.MakeKey(0x700, 1), Body: sealed},
		"empty":               {Key: audit.MakeKey(0x800, 1)},
	} {
		if _, err := s.Append([]Batch{{Events: []Encoded{bad}, Checkpoint: 0x900}}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, _, n := s.Head(); n != 0 || s.Checkpoint() != 0 {
		t.Fatal("a refused append left state")
	}
}

func TestIdentity(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if _, ok, err := s.Identity(); ok || err != nil {
		t.Fatalf("new store has an identity: %v", err)
	}
	want := Identity{SystemID: "7312345678901234567", Database: "odoo", Slot: "cdcaudit"}
	if err := s.SetIdentity(want); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, ok, err := s.Identity(); !ok || err != nil || got != want {
		t.Fatalf("identity %+v %v %v", got, ok, err)
	}
	if err := s.SetIdentity(want); err == nil {
		t.Fatal("read-only store accepted a write")
	}
}

func TestOpenReadOnlyMissing(t *testing.T) {
	_, err := OpenReadOnly(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
	// Not a cdcaudit store: a bbolt file without our buckets.
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := OpenReadOnly(dir); err == nil || !strings.Contains(err.Error(), "not a cdcaudit store") {
		t.Fatalf("got %v", err)
	}
}

func TestLockedSameProcess(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	defer s.Close()
	for name, open := range map[string]func(string) (*Store, error){"Open": Open, "OpenReadOnly": OpenReadOnly} {
		start := time.Now()
		_, err := open(dir)
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("%s: %v", name, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("%s took %v", name, d)
		}
		if msg := err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, "pid "+strconv.Itoa(os.Getpid())) {
			t.Fatalf("%s: message does not name dir and pid: %s", name, msg)
		}
	}
	// The failed opens must not have removed the holder's pid file.
	if _, err := os.Stat(filepath.Join(dir, PidFileName)); err != nil {
		t.Fatal(err)
	}
}

// TestHelperHold is not a test: TestLockedOtherProcess runs it in a child
// process to hold a store until its stdin closes.
func TestHelperHold(t *testing.T) {
	dir := os.Getenv("SINK_TEST_HOLD")
	if dir == "" {
		t.Skip("helper process only")
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("ready\n")
	bufio.NewReader(os.Stdin).ReadString('\n')
	s.Close()
}

func TestLockedOtherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHold$")
	cmd.Env = append(os.Environ(), "SINK_TEST_HOLD="+dir)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("helper said %q", line)
	}
	start := time.Now()
	_, err := Open(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("open after the holder exited: %v", err)
	}
	s.Close()
}

// Derived state is stored with the events, in the same transaction, and
// read back after a reopen; a nil value deletes.
func TestStateStoredWithEvents(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	_, err := s.Append([]Batch{{
		Events:     []Encoded{ev(0x100, 1)},
		Checkpoint: 0x108,
		State: []StateRecord{
			{Bucket: "sessions", Key: "s/a", Value: []byte(`{"user":1}`)},
			{Bucket: "sessions", Key: "s/b", Value: []byte(`{"user":2}`)},
			{Bucket: "models", Key: "public.sale_order", Value: []byte(`"sale.order"`)},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// A batch with state only (no events, no new checkpoint) is still written.
	if _, err := s.Append([]Batch{{State: []StateRecord{{Bucket: "sessions", Key: "s/a"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append([]Batch{{State: []StateRecord{{Bucket: "", Key: "x", Value: []byte("1")}}}}); err == nil {
		t.Fatal("an empty bucket name was accepted")
	}
	s.Close()
	s, err = OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := map[string]string{}
	if err := s.LoadState("sessions", func(k, v []byte) error { got[string(k)] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["s/b"] != `{"user":2}` {
		t.Fatalf("sessions state = %v", got)
	}
	n := 0
	if err := s.LoadState("never", func(k, v []byte) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("unknown bucket: %d records, %v", n, err)
	}
	if _, err := s.Verify(context.Background(), nil); err != nil {
		t.Fatalf("state must not disturb the chain: %v", err)
	}
}
