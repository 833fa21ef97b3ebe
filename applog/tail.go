package applog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Bucket is the state bucket of the tailer: the login records
// ("r/<time>/<file>/<offset>"), the recent failures per login and address
// ("b/l/<login>", "b/i/<address>") and the position in the log ("p").
const Bucket = "applog"

const (
	prefixRecord = "r/"
	prefixBurst  = "b/"
	keyPosition  = "p"
)

// Defaults of Options.
const (
	DefaultPoll    = 2 * time.Second
	DefaultMaxLine = 16 << 10
)

// Options configure a Tailer.
type Options struct {
	Path  string // Odoo's log file (logfile = … in its configuration)
	Burst Burst  // zero: no burst alerts
	// Poll is how often the file is looked at besides fsnotify's events
	// (default 2s); MaxLine bounds a line (default 16 KiB: longer ones are
	// skipped).
	Poll    time.Duration
	MaxLine int
	Log     *slog.Logger
}

// StateSink stores state records with the store's writer and returns once
// they are durable (pipeline.StateSink).
type StateSink = func(ctx context.Context, recs []sink.StateRecord) error

// LoadState reads a state bucket (sink.Store.LoadState).
type LoadState = func(bucket string, fn func(key, value []byte) error) error

// position is where the tailer is in which file: the file's device and
// inode, the offset of the first byte not consumed, and the length and
// SHA-256 of the file's first bytes, which tell a file replaced or
// truncated and refilled under the same inode (copytruncate).
type position struct {
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	Offset  int64  `json:"offset"`
	HeadLen int64  `json:"head_len"`
	Head    string `json:"head"`
	// Skipping: the offset is inside a line longer than MaxLine.
	Skipping bool `json:"skipping,omitempty"`
}

// headBytes is how much of a file's start identifies it.
const headBytes = 256

// Tailer follows Odoo's log file and records its logins.
type Tailer struct {
	opts  Options
	load  LoadState
	log   *slog.Logger
	pos   position
	burst *bursts

	f        *os.File
	buf      []byte
	lastSave time.Time
}

// New makes a tailer; load reads its state back at start.
func New(opts Options, load LoadState) *Tailer {
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.MaxLine <= 0 {
		opts.MaxLine = DefaultMaxLine
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Tailer{opts: opts, load: load, log: opts.Log.With("app_log", opts.Path)}
}

// Run follows the file until ctx ends, storing each batch of logins with
// the alerts they raise and the position after them in one call of state:
// after a crash the file is read again from the last stored position, so
// no line is recorded twice or lost. Errors of the file or the store are
// logged and retried.
func (t *Tailer) Run(ctx context.Context, state StateSink) error {
	w, err := fsnotify.NewWatcher()
	var events chan fsnotify.Event
	var watchErrs chan error
	if err == nil {
		defer w.Close()
		if err := w.Add(filepath.Dir(t.opts.Path)); err != nil {
			t.log.Warn("app log: cannot watch its directory; polling only", "err", err)
		} else {
			events, watchErrs = w.Events, w.Errors
		}
	}
	defer t.closeFile()
	tick := time.NewTicker(t.opts.Poll)
	defer tick.Stop()
	loaded := false
	delay := time.Second
	for {
		if !loaded {
			if err := t.restore(); err != nil {
				return err // the store is unreadable: nothing sensible to do
			}
			loaded = true
		}
		if err := t.step(ctx, state); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			t.log.Warn("app log: cannot read or record; retrying", "err", err, "in", delay)
			loaded = false // what was not stored is read again
			t.closeFile()
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(delay):
			}
			delay = min(2*delay, time.Minute)
			continue
		}
		delay = time.Second
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case ev, ok := <-events:
			if !ok {
				events = nil
			} else if filepath.Base(ev.Name) != filepath.Base(t.opts.Path) {
				continue
			}
		case err, ok := <-watchErrs:
			if !ok {
				watchErrs = nil
			} else {
				t.log.Debug("app log: watching its directory", "err", err) // polling goes on
			}
		}
	}
}

// restore loads the stored position and bursts.
func (t *Tailer) restore() error {
	t.pos, t.burst = position{}, newBursts(t.opts.Burst)
	err := t.load(Bucket, func(k, v []byte) error {
		key := string(k)
		switch {
		case key == keyPosition:
			return json.Unmarshal(v, &t.pos)
		case strings.HasPrefix(key, prefixBurst):
			return t.burst.load(key[len(prefixBurst):], v)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("applog: loading the position in %s: %w", t.opts.Path, err)
	}
	return nil
}

func (t *Tailer) closeFile() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

// step reads what is new and stores it, batch by batch, until the end of
// the file (following a rotation to the new file).
func (t *Tailer) step(ctx context.Context, state StateSink) error {
	for ctx.Err() == nil {
		if t.f == nil {
			ok, err := t.open()
			if err != nil || !ok {
				return err
			}
		}
		logins, consumed, eof, err := t.read()
		if err != nil {
			return err
		}
		if consumed > 0 || len(logins) > 0 {
			if err := t.store(ctx, state, logins, consumed, false); err != nil {
				return err
			}
		}
		if !eof {
			continue
		}
		switched, err := t.followRotation(ctx, state)
		if err != nil || !switched {
			return err
		}
	}
	return nil
}

// open opens the file at the path: at the stored position when it is the
// stored file, after reading to its end the rotated copy of the stored
// file when the path is a new one, else from its start.
func (t *Tailer) open() (bool, error) {
	f, err := os.Open(t.opts.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // not yet: Odoo creates it
	}
	if err != nil {
		return false, err
	}
	dev, ino, size, err := identity(f)
	if err != nil {
		f.Close()
		return false, err
	}
	if t.pos.Ino != 0 && (dev != t.pos.Dev || ino != t.pos.Ino) {
		// The stored file was rotated away while cdcaudit was not
		// looking: finish it first, where it is now.
		if old := t.findRotated(); old != nil {
			f.Close()
			f = old
			_, _, size, err = identity(f)
			if err != nil {
				f.Close()
				return false, err
			}
			dev, ino = t.pos.Dev, t.pos.Ino
		}
	}
	if dev != t.pos.Dev || ino != t.pos.Ino || !t.sameHead(f, size) {
		if t.pos.Ino != 0 {
			t.log.Info("app log: a new file; reading it from its start")
		}
		t.pos = position{Dev: dev, Ino: ino}
	}
	t.f = f
	return true, nil
}

// findRotated looks beside the path for the stored file under another
// name (odoo.log.1, odoo.log-20261203 …).
func (t *Tailer) findRotated() *os.File {
	dir, base := filepath.Split(t.opts.Path)
	entries, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if e.Name() == base || !strings.HasPrefix(e.Name(), base) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && uint64(st.Dev) == t.pos.Dev && st.Ino == t.pos.Ino {
			f, err := os.Open(filepath.Join(dir, e.Name()))
			if err == nil {
				return f
			}
		}
	}
	return nil
}

// sameHead reports whether f still starts with the bytes the position
// recorded and is not shorter than the offset (else it was truncated).
func (t *Tailer) sameHead(f *os.File, size int64) bool {
	if size < t.pos.Offset || size < t.pos.HeadLen {
		return false
	}
	if t.pos.HeadLen == 0 {
		return true
	}
	h, err := headOf(f, t.pos.HeadLen)
	return err == nil && h == t.pos.Head
}

func headOf(f *os.File, n int64) (string, error) {
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

func identity(f *os.File) (dev, ino uint64, size int64, err error) {
	info, err := f.Stat()
	if err != nil {
		return 0, 0, 0, err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0, errors.New("applog: no inode for the file on this system")
	}
	return uint64(st.Dev), st.Ino, info.Size(), nil
}

// readChunk is how much is read at once; maxBatch how many logins go in
// one store call.
const (
	readChunk = 64 << 10
	maxBatch  = 512
)

// read parses complete lines from the position: the logins found, how
// many bytes they and the other lines took, and whether it reached the end
// of what is written. A truncated file starts over from its beginning.
func (t *Tailer) read() (logins []located, consumed int64, eof bool, err error) {
	_, _, size, err := identity(t.f)
	if err != nil {
		return nil, 0, false, err
	}
	if !t.sameHead(t.f, size) {
		t.log.Info("app log: truncated; reading it from its start")
		t.pos = position{Dev: t.pos.Dev, Ino: t.pos.Ino}
	}
	chunk := max(readChunk, t.opts.MaxLine+1) // a chunk without a newline is an over-long line
	if cap(t.buf) < chunk {
		t.buf = make([]byte, 0, chunk)
	}
	off := t.pos.Offset
	skipping := t.pos.Skipping
	for len(logins) < maxBatch {
		n, rerr := t.f.ReadAt(t.buf[:chunk], off+consumed)
		data := t.buf[:n]
		for len(data) > 0 {
			nl := bytes.IndexByte(data, '\n')
			if nl < 0 {
				if skipping || len(data) > t.opts.MaxLine {
					consumed += int64(len(data)) // the rest of an over-long line
					skipping = true
					data = nil
				}
				break
			}
			line := data[:nl]
			if !skipping && len(line) <= t.opts.MaxLine {
				if l, ok := ParseLine(line); ok {
					logins = append(logins, located{Login: l, offset: off + consumed})
				}
			}
			skipping = false
			consumed += int64(nl + 1)
			data = data[nl+1:]
		}
		if rerr != nil && rerr != io.EOF {
			return nil, 0, false, rerr
		}
		if n < chunk {
			eof = true // what is left is a line still being written
			break
		}
	}
	t.pos.Skipping = skipping
	return logins, consumed, eof, nil
}

// located is a login and where its line starts.
type located struct {
	Login
	offset int64
}

// store records logins, the bursts they complete and the position after
// consumed bytes in one call of state. Lines without logins only move the
// position, which is stored at most every few seconds (re-reading them
// after a crash records nothing).
func (t *Tailer) store(ctx context.Context, state StateSink, logins []located, consumed int64, force bool) error {
	next := t.pos
	next.Offset += consumed
	if next.HeadLen < headBytes && next.Offset > next.HeadLen {
		next.HeadLen = min(int64(headBytes), next.Offset)
		h, err := headOf(t.f, next.HeadLen)
		if err != nil {
			return err
		}
		next.Head = h
	}
	if len(logins) == 0 && !force && time.Since(t.lastSave) < 5*t.opts.Poll {
		t.pos = next // kept in memory; stored with the next logins or soon
		return nil
	}
	var recs []sink.StateRecord
	var last time.Time
	for _, l := range logins {
		rec := LoginRecord(l.Login, next.Ino, l.offset)
		key := rec.Key
		recs = append(recs, rec)
		if l.Result == ResultFailed {
			if a, ok := t.failed(l.Login, key); ok {
				recs = append(recs, alerts.Queue(a))
			}
		}
		last = l.Time
	}
	if !last.IsZero() && t.burst.rule.Failures > 0 {
		t.burst.expire(last)
	}
	for _, r := range t.burst.records() {
		recs = append(recs, sink.StateRecord{Bucket: Bucket, Key: r.key, Value: r.value})
	}
	pv, _ := json.Marshal(next)
	recs = append(recs, sink.StateRecord{Bucket: Bucket, Key: keyPosition, Value: pv})
	if err := state(ctx, recs); err != nil {
		return err // restore() rereads position and bursts as stored
	}
	t.pos = next
	t.lastSave = time.Now()
	return nil
}

// failed counts a failed login by login and by address, and returns the
// alert of a burst it completes (one, when it completes both).
func (t *Tailer) failed(l Login, key string) (alerts.Alert, bool) {
	byLogin, n := t.burst.failed("l/"+l.Login, l.Time)
	byIP, m := false, 0
	if l.IP != "" {
		byIP, m = t.burst.failed("i/"+l.IP, l.Time)
	}
	if !byLogin && !byIP {
		return alerts.Alert{}, false
	}
	rule := t.burst.rule
	a := alerts.Alert{
		ID: alerts.KindFailedLoginBurst + "/" + Bucket + ":" + key[len(prefixRecord):], Kind: alerts.KindFailedLoginBurst,
		Time: l.Time, Login: l.Login, IP: l.IP,
		Detail: map[string]string{"db": l.DB, "window": rule.Within.String(), "record": key},
	}
	var by []string
	if byLogin {
		by = append(by, "login")
		a.Detail["failures_login"] = strconv.Itoa(n)
	}
	if byIP {
		by = append(by, "ip")
		a.Detail["failures_ip"] = strconv.Itoa(m)
	}
	a.Detail["by"] = strings.Join(by, ",")
	switch {
	case byLogin:
		a.Summary = fmt.Sprintf("%d failed logins for %q within %s (the last from %s)", n, l.Login, rule.Within, orNA(l.IP))
	default:
		a.Summary = fmt.Sprintf("%d failed logins from %s within %s (the last for %q)", m, l.IP, rule.Within, l.Login)
	}
	return a, true
}

func orNA(ip string) string {
	if ip == "" {
		return "an unknown address"
	}
	return ip
}

// followRotation, at the end of the file, switches to a new file at the
// path (rotated: renamed, and a new one made), once the old one is read to
// its end. It reports whether it switched.
func (t *Tailer) followRotation(ctx context.Context, state StateSink) (bool, error) {
	info, err := os.Stat(t.opts.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // renamed, the new one not made yet
	}
	if err != nil {
		return false, err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || (uint64(st.Dev) == t.pos.Dev && st.Ino == t.pos.Ino) {
		return false, nil
	}
	// The old file gets no more lines: read what came since the last
	// read, and its last line, if it has no newline, is complete as it is.
	for eof := false; !eof; {
		logins, consumed, end, err := t.read()
		if err != nil {
			return false, err
		}
		if consumed > 0 || len(logins) > 0 {
			if err := t.store(ctx, state, logins, consumed, false); err != nil {
				return false, err
			}
		}
		eof = end
	}
	if logins, consumed, err := t.readTail(); err != nil {
		return false, err
	} else if consumed > 0 {
		if err := t.store(ctx, state, logins, consumed, true); err != nil {
			return false, err
		}
	}
	t.closeFile()
	t.pos = position{} // the new file, from its start
	t.log.Info("app log: rotated; following the new file")
	return true, nil
}

// readTail takes what is left after the last newline of a file that grows
// no more.
func (t *Tailer) readTail() ([]located, int64, error) {
	_, _, size, err := identity(t.f)
	if err != nil {
		return nil, 0, err
	}
	rest := size - t.pos.Offset
	if rest <= 0 {
		return nil, 0, nil
	}
	if t.pos.Skipping || rest > int64(t.opts.MaxLine) {
		return nil, rest, nil
	}
	b := make([]byte, rest)
	if _, err := t.f.ReadAt(b, t.pos.Offset); err != nil && err != io.EOF {
		return nil, 0, err
	}
	if l, ok := ParseLine(b); ok {
		return []located{{Login: l, offset: t.pos.Offset}}, rest, nil
	}
	return nil, rest, nil
}

// LoginRecord is the state record of a login read at offset of file ino.
// Its key is the login's time, then its place, so keys sort by time and two
// lines never share one.
func LoginRecord(l Login, ino uint64, offset int64) sink.StateRecord {
	key := prefixRecord + l.Time.UTC().Format("20060102T150405.000Z") + "/" +
		strconv.FormatUint(ino, 16) + "-" + fmt.Sprintf("%012x", offset)
	v, _ := json.Marshal(l)
	return sink.StateRecord{Bucket: Bucket, Key: key, Value: v}
}

// Record is a login as stored, with its key.
type Record struct {
	Key string `json:"id"`
	Login
}

// ReadLogins decodes the stored logins (for the CLI and the API), oldest
// first: load reads the bucket (sink.Store.LoadState).
func ReadLogins(load LoadState) ([]Record, error) {
	var out []Record
	err := load(Bucket, func(k, v []byte) error {
		key := string(k)
		if !strings.HasPrefix(key, prefixRecord) {
			return nil
		}
		var r Record
		if err := json.Unmarshal(v, &r.Login); err != nil {
			return fmt.Errorf("applog: state record %s: %w", key, err)
		}
		r.Key = key[len(prefixRecord):]
		out = append(out, r)
		return nil
	})
	return out, err
}

// Match selects logins: all of the set conditions hold.
type Match struct {
	Login, IP string
	Result    string // "" for any
	Since     time.Time
}

// Filter returns the records m selects, in their order.
func Filter(recs []Record, m Match) []Record {
	var out []Record
	for _, r := range recs {
		if m.Login != "" && r.Login.Login != m.Login || m.IP != "" && r.IP != m.IP ||
			m.Result != "" && r.Result != m.Result || !m.Since.IsZero() && r.Time.Before(m.Since) {
			continue
		}
		out = append(out, r)
	}
	return out
}
