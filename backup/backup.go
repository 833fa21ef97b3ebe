// Package backup makes consistent copies of a store that a running daemon
// holds. bbolt's file lock keeps every other process out of a store while
// `cdcaudit run` writes it (and a cp of the file while it is written is not
// a usable copy), so the daemon itself serves copies, over a unix socket in
// the data directory: only the store's owner (and root) may connect, the
// socket's mode (0600) and the peer's uid say so.
//
// The same socket carries the daemon's other requests: one line
// "verb [argument]" in, "ok <size>" and that many bytes out, or
// "error <message>" (status, snapshot); and the reads of the store that the
// read commands make while the daemon holds it (reads.go), whose replies
// are streamed (stream.go).
package backup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SocketName is the socket's file in the data directory.
const SocketName = "cdcaudit.sock"

// ErrNoDaemon means no daemon serves copies of the store: nobody listens on
// its socket.
var ErrNoDaemon = errors.New("no running cdcaudit serves this store")

// Source is what is copied: sink.Store.
type Source interface {
	WriteCopy(w io.Writer, start func(size int64) error) (int64, error)
}

const request = "copy\n"

// Server serves copies of one store.
type Server struct {
	ln     net.Listener
	path   string
	done   chan struct{}
	ctx    context.Context // cancelled by Close: ends the requests being served
	cancel context.CancelFunc
	conns  sync.WaitGroup

	mu       sync.Mutex
	active   map[net.Conn]bool // the connections being served; Close ends them
	closed   bool
	handlers map[string]Handler
	streams  map[string]StreamHandler
}

// maxConns bounds the requests served at once: each may hold a read
// transaction of the store (pages bbolt cannot reuse) or a page of events.
const maxConns = 8

// Handler answers one request verb: its argument in, the reply out.
type Handler func(arg string) ([]byte, error)

// Handle adds a request verb ("status", "snapshot"; not "copy").
func (s *Server) Handle(verb string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handlers == nil {
		s.handlers = map[string]Handler{}
	}
	s.handlers[verb] = h
}

// stallAfter is how long a client may stop reading before its copy is given
// up: a stuck client must not keep a read transaction (pages bbolt cannot
// reuse) open, nor hold up the daemon's stop.
const stallAfter = 30 * time.Second

// Serve listens on dir's socket and serves copies of src until Close. A
// socket left behind by a crashed daemon is replaced: the caller holds the
// store, so no other daemon can be serving it.
func Serve(dir string, src Source, log *slog.Logger) (*Server, error) {
	path := filepath.Join(dir, SocketName)
	// Bind in a private directory, then rename into place: the socket is
	// never reachable before its mode is 0600, whatever the umask.
	tmp, err := os.MkdirTemp(dir, ".sock-")
	if err != nil {
		return nil, fmt.Errorf("backup socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	ln, err := net.Listen("unix", bound)
	if err != nil {
		return nil, fmt.Errorf("backup socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(bound, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("backup socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	if err := os.Rename(bound, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("backup socket: %w", err)
	}
	s := &Server{ln: ln, path: path, done: make(chan struct{}), active: map[net.Conn]bool{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.serve(src, log)
	return s, nil
}

// Close stops serving, ends the requests being served and removes the
// socket.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.active {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.ln.Close()
	<-s.done
	s.conns.Wait()
	os.Remove(s.path)
}

func (s *Server) serve(src Source, log *slog.Logger) {
	defer close(s.done)
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		// A few requests at a time: a client that stalls one (it is given
		// up after stallAfter) holds up neither the others nor the
		// daemon's stop.
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		if len(s.active) >= maxConns {
			s.mu.Unlock()
			c.SetWriteDeadline(time.Now().Add(time.Second))
			fmt.Fprintf(c, "error the daemon is serving %d requests already: try again in a moment\n", maxConns)
			c.Close()
			continue
		}
		s.active[c] = true
		s.conns.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.conns.Done()
			s.handle(c.(*net.UnixConn), src, log)
			s.mu.Lock()
			delete(s.active, c)
			s.mu.Unlock()
		}()
	}
}

// deadlineWriter moves the write deadline forward before every write, so a
// copy may take as long as it needs but a client may not stall it.
type deadlineWriter struct{ c net.Conn }

func (w deadlineWriter) Write(p []byte) (int, error) {
	if err := w.c.SetWriteDeadline(time.Now().Add(stallAfter)); err != nil {
		return 0, err
	}
	return w.c.Write(p)
}

func (s *Server) handle(c *net.UnixConn, src Source, log *slog.Logger) {
	defer c.Close()
	if uid, err := peerUID(c); err != nil || (uid != os.Getuid() && uid != 0) {
		log.Warn("backup socket: refused a connection from another user", "uid", uid, "err", err)
		return
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, maxRequest)
	line, err := br.ReadSlice('\n') // at most maxRequest bytes
	if err != nil {
		fmt.Fprintf(c, "error unknown request\n")
		return
	}
	if string(line) != request {
		s.answer(c, br, strings.TrimSuffix(string(line), "\n"), log)
		return
	}
	c.SetReadDeadline(time.Time{})
	start := time.Now()
	bw := bufio.NewWriterSize(deadlineWriter{c}, 1<<20)
	n, err := src.WriteCopy(bw, func(size int64) error {
		_, err := fmt.Fprintf(bw, "ok %d\n", size)
		return err
	})
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		log.Error("backup copy failed", "err", err)
		return
	}
	log.Info("backup copy served", "bytes", n, "took", time.Since(start).Round(time.Millisecond))
}

// maxRequest bounds a request line.
const maxRequest = 4096

// answer serves a request other than a copy.
func (s *Server) answer(c net.Conn, br *bufio.Reader, line string, log *slog.Logger) {
	verb, arg, _ := strings.Cut(line, " ")
	s.mu.Lock()
	h, sh := s.handlers[verb], s.streams[verb]
	s.mu.Unlock()
	c.SetWriteDeadline(time.Now().Add(stallAfter))
	if sh != nil {
		s.stream(c, br, verb, arg, sh, log)
		return
	}
	if h == nil {
		fmt.Fprintf(c, "error unknown request\n")
		return
	}
	reply, err := h(arg)
	if err != nil {
		fmt.Fprintf(c, "error %s\n", oneLine(err.Error()))
		return
	}
	if _, err := fmt.Fprintf(c, "ok %d\n%s", len(reply), reply); err != nil {
		log.Warn("control socket: reply not sent", "request", verb, "err", err)
	}
}

// oneLine keeps a message on one line: it must not forge the framing.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// Ask sends one request ("status", "snapshot public.t*") to the daemon
// serving dir's store and returns its reply. It returns ErrNoDaemon when
// none listens.
func Ask(dir, verb, arg string) ([]byte, error) {
	path := filepath.Join(dir, SocketName)
	line := verb
	if arg != "" {
		line += " " + arg
	}
	if strings.ContainsAny(line, "\n") || len(line) >= maxRequest {
		return nil, fmt.Errorf("control socket: malformed request")
	}
	c, err := dial(dir)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	br := bufio.NewReader(c)
	head, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("control socket %s: no answer (%v): see the daemon's log", path, err)
	}
	head = strings.TrimSuffix(head, "\n")
	if msg, ok := strings.CutPrefix(head, "error "); ok {
		return nil, fmt.Errorf("the daemon says: %s", msg)
	}
	size, err := strconv.Atoi(strings.TrimPrefix(head, "ok "))
	if !strings.HasPrefix(head, "ok ") || err != nil || size < 0 || size > 64<<20 {
		return nil, fmt.Errorf("control socket %s: the daemon says %q", path, head)
	}
	reply := make([]byte, size)
	if _, err := io.ReadFull(br, reply); err != nil {
		return nil, fmt.Errorf("control socket %s: the reply ended early: %w", path, err)
	}
	return reply, nil
}

// Fetch asks the daemon serving dir's store for a copy and writes it to w.
// It returns ErrNoDaemon when none listens.
func Fetch(dir string, w io.Writer) (int64, error) {
	path := filepath.Join(dir, SocketName)
	c, err := dial(dir)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := io.WriteString(c, request); err != nil {
		return 0, fmt.Errorf("backup socket %s: %w", path, err)
	}
	br := bufio.NewReaderSize(c, 1<<20)
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("backup socket %s: the daemon sent no copy (%v): see its log", path, err)
	}
	line = strings.TrimSuffix(line, "\n")
	size, err := strconv.ParseInt(strings.TrimPrefix(line, "ok "), 10, 64)
	if !strings.HasPrefix(line, "ok ") || err != nil || size < 0 {
		return 0, fmt.Errorf("backup socket %s: the daemon says %q", path, line)
	}
	n, err := io.CopyN(w, br, size)
	if err != nil {
		return n, fmt.Errorf("backup: the copy ended after %d of %d bytes: %w", n, size, err)
	}
	return n, nil
}
