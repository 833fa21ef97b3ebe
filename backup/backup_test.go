package backup

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// memSource is a store of fixed bytes.
type memSource []byte

func (m memSource) WriteCopy(w io.Writer, start func(int64) error) (int64, error) {
	if err := start(int64(len(m))); err != nil {
		return 0, err
	}
	n, err := w.Write(m)
	return int64(n), err
}

func TestServeFetch(t *testing.T) {
	dir := t.TempDir()
	if _, err := Fetch(dir, io.Discard); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("Fetch without a daemon: %v, want ErrNoDaemon", err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // larger than any buffer
	srv, err := Serve(dir, memSource(data), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dir, SocketName))
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v, want a socket of mode 0600", fi.Mode(), err)
	}
	for range 2 {
		var got bytes.Buffer
		n, err := Fetch(dir, &got)
		if err != nil || n != int64(len(data)) || !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("Fetch: %d bytes, %v", n, err)
		}
	}
	srv.Close()
	if _, err := os.Lstat(filepath.Join(dir, SocketName)); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
	if _, err := Fetch(dir, io.Discard); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("Fetch after Close: %v, want ErrNoDaemon", err)
	}
	// A socket left by a crash is replaced.
	srv, err = Serve(dir, memSource("x"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv.ln.Close() // as if the process died: the file stays
	<-srv.done
	srv2, err := Serve(dir, memSource("y"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("Serve over a stale socket: %v", err)
	}
	defer srv2.Close()
	var got bytes.Buffer
	if _, err := Fetch(dir, &got); err != nil || got.String() != "y" {
		t.Fatalf("Fetch from the new server: %q %v", got.String(), err)
	}
}

// A client that stops reading must not hold up the daemon's stop: Close
// ends the copy being served.
func TestCloseEndsAStalledCopy(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("x"), 64<<20) // far more than the socket buffers
	srv, err := Serve(dir, memSource(data), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", filepath.Join(dir, SocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 16)); err != nil { // the copy has begun; now stop reading
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close is still waiting for a client that stopped reading")
	}
}

// The socket answers other requests besides copies: a registered verb gets
// its argument and its reply goes back whole; an error comes back on one
// line; an unknown verb is refused; copies still work.
func TestAskHandlers(t *testing.T) {
	dir := t.TempDir()
	if _, err := Ask(dir, "status", ""); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("Ask without a daemon: %v, want ErrNoDaemon", err)
	}
	srv, err := Serve(dir, memSource("copy"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	big := bytes.Repeat([]byte("status\n"), 100_000)
	srv.Handle("status", func(arg string) ([]byte, error) { return big, nil })
	srv.Handle("snapshot", func(arg string) ([]byte, error) {
		if arg == "bad" {
			return nil, errors.New("no such table\nok 5")
		}
		return []byte("asked for " + arg), nil
	})
	if got, err := Ask(dir, "status", ""); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("status: %d bytes, %v", len(got), err)
	}
	if got, err := Ask(dir, "snapshot", "public.a*,b"); err != nil || string(got) != "asked for public.a*,b" {
		t.Fatalf("snapshot: %q, %v", got, err)
	}
	if _, err := Ask(dir, "snapshot", "bad"); err == nil || err.Error() != "the daemon says: no such table ok 5" {
		t.Fatalf("a failing handler: %v", err)
	}
	if _, err := Ask(dir, "rm", "-rf"); err == nil || !bytes.Contains([]byte(err.Error()), []byte("unknown request")) {
		t.Fatalf("an unknown verb: %v", err)
	}
	if _, err := Ask(dir, "snapshot", "a\nb"); err == nil {
		t.Fatal("a request with a line break was sent")
	}
	var got bytes.Buffer
	if _, err := Fetch(dir, &got); err != nil || got.String() != "copy" {
		t.Fatalf("Fetch beside the handlers: %q %v", got.String(), err)
	}
}
