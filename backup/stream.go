package backup

// Streamed requests and replies. A request is one line "verb <size>" and
// a body of that many bytes (JSON, at most maxBody); the client sends
// nothing more, and closing its end says it has lost interest. The reply
// is "stream" on a line, then frames "<kind> <size>\n" and size bytes of
// payload, ended by exactly one of
//
//	end 0           the reply is complete
//	error <size>    it failed here: the payload is {"kind":…,"message":…}
//
// A reply that stops before either is a failure, never a short answer.
// A request refused before it began is answered "error <message>" on one
// line, as the other requests are.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// maxBody bounds a request's body.
	maxBody = 16 << 20
	// maxFrame bounds a frame's payload: one stored event at most (bbolt
	// holds values below 2 GiB; an event that large is not exported
	// anywhere at once).
	maxFrame = 1 << 30
)

// StreamHandler answers one streamed request: its body in, frames out
// through s. ctx ends when the client goes away or the server closes. Its
// error reaches the client as the reply's end.
type StreamHandler func(ctx context.Context, body []byte, s *Stream) error

// HandleStream adds a streamed request verb.
func (s *Server) HandleStream(verb string, h StreamHandler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams == nil {
		s.streams = map[string]StreamHandler{}
	}
	s.streams[verb] = h
}

// Stream is a streamed reply. Its methods may be called from several
// goroutines.
type Stream struct {
	mu  sync.Mutex
	w   *bufio.Writer
	err error // the first failed write: the client has gone
}

// Send writes one frame (buffered: Flush sends what must not wait).
func (s *Stream) Send(kind string, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.send(kind, payload)
}

func (s *Stream) send(kind string, payload []byte) error {
	if s.err != nil {
		return s.err
	}
	if len(payload) > maxFrame {
		s.err = fmt.Errorf("a reply frame of %d bytes is larger than %d", len(payload), maxFrame)
		return s.err
	}
	if _, s.err = s.w.Write(appendHead(nil, kind, len(payload))); s.err == nil {
		_, s.err = s.w.Write(payload)
	}
	return s.err
}

// sendFrames writes frames made with appendHead.
func (s *Stream) sendFrames(frames []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		_, s.err = s.w.Write(frames)
	}
	return s.err
}

// appendHead appends a frame's head: its kind and the size of its payload.
func appendHead(b []byte, kind string, size int) []byte {
	b = append(append(b, kind...), ' ')
	return append(strconv.AppendInt(b, int64(size), 10), '\n')
}

// Flush sends the frames buffered.
func (s *Stream) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = s.w.Flush()
	}
	return s.err
}

// wireError is an error frame's payload.
type wireError struct {
	Kind    string `json:"kind"` // errorKind: lets the client keep errors.Is
	Message string `json:"message"`
}

// stream serves a streamed request whose line was "verb arg".
func (s *Server) stream(c net.Conn, br *bufio.Reader, verb, arg string, h StreamHandler, log *slog.Logger) {
	size, err := strconv.Atoi(arg)
	if err != nil || size < 0 || size > maxBody {
		fmt.Fprintf(c, "error malformed request: want %q and a body of at most %d bytes\n", verb+" <size>", maxBody)
		return
	}
	body, err := readPayload(br, nil, size) // grown as it comes: a size alone allocates nothing
	if err != nil {
		fmt.Fprintf(c, "error the request ended before its body\n")
		return
	}
	c.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() {
		// The client sends nothing more: a read returns when it closes its
		// end (or when this request ends and closes the connection).
		var b [1]byte
		c.Read(b[:])
		cancel()
	}()
	st := &Stream{w: bufio.NewWriterSize(deadlineWriter{c}, 256<<10)}
	st.w.WriteString("stream\n")
	err = h(ctx, body, st)
	st.mu.Lock()
	defer st.mu.Unlock()
	if err == nil {
		err = st.send("end", nil)
	} else if st.err == nil {
		b, _ := json.Marshal(wireError{Kind: errorKind(err), Message: err.Error()})
		st.send("error", b)
	}
	if st.err == nil {
		st.err = st.w.Flush()
	}
	if st.err != nil && ctx.Err() == nil {
		log.Warn("control socket: reply not sent", "request", verb, "err", st.err)
	}
}

// RemoteError is an error the daemon answered: its message as the daemon
// wrote it, and what it is (errors.Is finds the store's errors through it).
type RemoteError struct {
	Kind, Message string
}

func (e *RemoteError) Error() string { return e.Message }
func (e *RemoteError) Unwrap() error { return kindError(e.Kind) }

// dial connects to dir's socket: ErrNoDaemon when nobody listens.
func dial(dir string) (net.Conn, error) {
	path := filepath.Join(dir, SocketName)
	c, err := net.Dial("unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOTDIR) {
			return nil, ErrNoDaemon
		}
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return c, nil
}

// errUnknownVerb: the daemon does not know the request (an older one).
var errUnknownVerb = errors.New("the running daemon does not know this request (an older cdcaudit?)")

// call sends a streamed request to the daemon serving dir's store and
// hands fn each frame of its reply; payload is valid only during the call.
// It returns nil once the reply ended complete, the daemon's error as a
// *RemoteError, fn's error, or ctx's. ErrNoDaemon when none listens.
func call(ctx context.Context, dir, verb string, body []byte, fn func(kind string, payload []byte) error) error {
	if len(body) > maxBody {
		return fmt.Errorf("control socket: a request of %d bytes is larger than %d", len(body), maxBody)
	}
	c, err := dial(dir)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	fail := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	if _, err := c.Write(append([]byte(verb+" "+strconv.Itoa(len(body))+"\n"), body...)); err != nil {
		return fail(fmt.Errorf("control socket: %w", err))
	}
	br := bufio.NewReaderSize(c, 64<<10)
	head, err := readHead(br)
	if err != nil {
		return fail(fmt.Errorf("control socket: no answer from the daemon (%v): see its log", err))
	}
	if msg, ok := strings.CutPrefix(head, "error "); ok {
		if msg == "unknown request" {
			return errUnknownVerb
		}
		return fmt.Errorf("the daemon says: %s", msg)
	}
	if head != "stream" {
		return fmt.Errorf("control socket: the daemon says %q", head)
	}
	var buf []byte
	for {
		kind, size, err := readFrameHead(br)
		if err != nil {
			return fail(err)
		}
		if buf, err = readPayload(br, buf, size); err != nil {
			return fail(fmt.Errorf("the daemon's reply ended early (%v): see its log", err))
		}
		switch kind {
		case "end":
			return nil
		case "error":
			var we wireError
			if err := json.Unmarshal(buf, &we); err != nil {
				return fmt.Errorf("control socket: a malformed error frame: %v", err)
			}
			return &RemoteError{Kind: we.Kind, Message: we.Message}
		}
		if err := fn(kind, buf); err != nil {
			return err
		}
	}
}

// frameKinds are the kinds of frame the daemon sends, named without an
// allocation per frame.
var frameKinds = []string{"ev", "kv", "next", "count", "info", "progress", "report", "end", "error"}

// readFrameHead reads a frame's head.
func readFrameHead(br *bufio.Reader) (kind string, size int, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return "", 0, fmt.Errorf("the daemon's reply ended early (%v): see its log", err)
	}
	k, sz, ok := bytes.Cut(line[:len(line)-1], []byte(" "))
	n, perr := strconv.Atoi(string(sz))
	if !ok || perr != nil || n < 0 || n > maxFrame || len(k) == 0 {
		return "", 0, fmt.Errorf("control socket: a malformed reply frame %.80q", line)
	}
	for _, known := range frameKinds {
		if string(k) == known {
			return known, n, nil
		}
	}
	return string(k), n, nil
}

// readPayload reads size bytes into buf (its room reused): grown as they
// come, never ahead of them by more than a chunk, whatever the head said.
func readPayload(br *bufio.Reader, buf []byte, size int) ([]byte, error) {
	const chunk = 1 << 20
	buf = buf[:0]
	for len(buf) < size {
		n := min(size-len(buf), chunk)
		if cap(buf)-len(buf) < n {
			buf = append(buf[:cap(buf)], make([]byte, n)...)[:len(buf)]
		}
		if _, err := io.ReadFull(br, buf[len(buf):len(buf)+n]); err != nil {
			return buf, err
		}
		buf = buf[:len(buf)+n]
	}
	return buf, nil
}

// readHead reads one line of at most the reader's buffer, without its
// line feed.
func readHead(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errors.New("a line too long")
	}
	if err != nil {
		return "", err
	}
	return string(line[:len(line)-1]), nil
}
