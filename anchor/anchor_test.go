package anchor

import (
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/instancekey"
)

func key(t *testing.T) *instancekey.Key {
	t.Helper()
	k, err := instancekey.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var sample = Anchor{Time: time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC), Genesis: strings.Repeat("a", 64),
	HeadID: "0000000001000000-000002", HeadHash: strings.Repeat("b", 64), Events: 2, Checkpoint: "0/1000040"}

func TestSignParse(t *testing.T) {
	k := key(t)
	tok := Sign(sample, k)
	if strings.ContainsAny(tok, " \"\\\n") {
		t.Fatalf("token %q must survive any log format", tok)
	}
	a, err := Parse(tok)
	want := sample
	want.Key = k.Public()
	if err != nil || a != want {
		t.Fatalf("Parse: %+v %v, want %+v", a, err, want)
	}
	// Altered payload: the signature no longer verifies.
	parts := strings.Split(tok, ".")
	other := sample
	other.HeadHash = strings.Repeat("c", 64)
	forged := strings.Split(Sign(other, k), ".")
	if _, err := Parse(strings.Join([]string{parts[0], parts[1], forged[2], parts[3]}, ".")); err == nil {
		t.Fatal("a token with another anchor's payload verified")
	}
}

// Find reads anchors from a file of anchors and from logs (text and JSON).
func TestFindInLogs(t *testing.T) {
	k := key(t)
	dir := t.TempDir()
	var text strings.Builder
	p := &Publisher{Log: slog.New(slog.NewTextHandler(&text, nil)), Key: k, File: filepath.Join(dir, "anchors")}
	var js strings.Builder
	pj := &Publisher{Log: slog.New(slog.NewJSONHandler(&js, nil)), Key: k}
	for i := range 3 {
		a := sample
		a.Events = uint64(i)
		if err := p.Publish("chain head", a); err != nil {
			t.Fatal(err)
		}
		pj.Publish("chain head", a)
	}
	f, _ := os.ReadFile(p.File)
	for name, src := range map[string]string{"file": string(f), "text log": "noise\n" + text.String(), "json log": js.String()} {
		got, err := Find(strings.NewReader(src))
		if err != nil || len(got) != 3 || got[2].Events != 2 {
			t.Errorf("%s: %d anchors, %v", name, len(got), err)
		}
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(js.String(), "\n", 2)[0]), &line); err != nil || line["head_event"] != sample.HeadID {
		t.Errorf("JSON log line %v %v", line, err)
	}
	// A forged line makes the file suspect.
	bad := string(f) + strings.Replace(strings.SplitN(string(f), "\n", 2)[0], "cdcaudit-anchor.v1.e", "cdcaudit-anchor.v1.f", 1) + "\n"
	if _, err := Find(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("a forged anchor: %v", err)
	}
}

func TestCheck(t *testing.T) {
	k := key(t)
	a1, a2 := sample, sample
	a1.Key, a2.Key = k.Public(), k.Public()
	a2.Time, a2.HeadID, a2.HeadHash, a2.Events, a2.Checkpoint = a1.Time.Add(time.Minute), "0000000002000000-000001", strings.Repeat("d", 64), 3, "0/2000040"
	store := map[string]string{a1.HeadID: a1.HeadHash, a2.HeadID: a2.HeadHash}
	chain := func() Chain {
		return Chain{Genesis: sample.Genesis, Key: k.Public(), Checkpoint: 0x2000040,
			Lookup: func(id string) (string, bool) { h, ok := store[id]; return h, ok }}
	}
	if n, err := Check([]Anchor{a2, a1}, chain()); err != nil || n != a2 {
		t.Fatalf("intact: newest %+v, %v", n, err)
	}
	for _, c := range []struct {
		name string
		edit func(c *Chain)
		want string
	}{
		{"rewritten", func(c *Chain) { store[a1.HeadID] = strings.Repeat("e", 64) }, "rewritten"},
		{"tail removed", func(c *Chain) { delete(store, a2.HeadID) }, "removed"},
		{"rolled back", func(c *Chain) { c.Checkpoint = 0x1000040 }, "rolled back"},
		{"replaced", func(c *Chain) { c.Genesis = strings.Repeat("f", 64) }, "replaced"},
		{"wiped", func(c *Chain) { c.Genesis = "" }, "no genesis"},
		{"other key", func(c *Chain) { c.Key = key(t).Public() }, "key was replaced"},
	} {
		saved := map[string]string{a1.HeadID: a1.HeadHash, a2.HeadID: a2.HeadHash}
		store = saved
		ch := chain()
		c.edit(&ch)
		if _, err := Check([]Anchor{a1, a2}, ch); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
	if _, err := Check(nil, chain()); err == nil {
		t.Error("no anchors at all passed")
	}
	// An anchored record that retention removed under a cut that a later
	// anchor covers is not missing; the checkpoint is still checked.
	store = map[string]string{a2.HeadID: a2.HeadHash}
	pruned := func(cut string) func(string) (string, bool) {
		return func(id string) (string, bool) { return cut, id == a1.HeadID }
	}
	ch := chain()
	ch.Pruned = pruned("0000000001800000-000000")
	if _, err := Check([]Anchor{a1, a2}, ch); err != nil {
		t.Errorf("pruned anchored record: %v", err)
	}
	ch.Checkpoint = 0x1000040
	if _, err := Check([]Anchor{a1, a2}, ch); err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Errorf("pruned, rolled back: %v", err)
	}
	// A cut after the newest anchor may be a forgery: refused.
	ch = chain()
	ch.Pruned = pruned("0000000003000000-000000")
	if _, err := Check([]Anchor{a1, a2}, ch); err == nil || !strings.Contains(err.Error(), "no anchor covers that cut") {
		t.Errorf("pruned under a cut no anchor covers: %v", err)
	}
	ch = chain()
	ch.Pruned = func(string) (string, bool) { return "", false }
	if _, err := Check([]Anchor{a1, a2}, ch); err == nil || !strings.Contains(err.Error(), "removed") {
		t.Errorf("removed without a cut: %v", err)
	}
}

// Anchors reach a syslog server, and a bad address is refused up front.
func TestSyslog(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w, err := DialSyslog("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var logged strings.Builder
	p := &Publisher{Log: slog.New(slog.NewTextHandler(&logged, nil)), Key: key(t), Syslog: w}
	if err := p.Publish("chain head", sample); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	ln.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := ln.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Find(strings.NewReader(string(buf[:n])))
	if err != nil || len(got) != 1 || got[0].HeadID != sample.HeadID {
		t.Fatalf("syslog received %q: %v %v", buf[:n], got, err)
	}
	for _, bad := range []string{"", "logs:514", "udp://logs", "http://logs:80", "unix://"} {
		if _, _, err := SyslogAddr(bad); err == nil {
			t.Errorf("SyslogAddr(%q) accepted", bad)
		}
	}
}
