// Package storewatch watches Odoo's own web session store — the files
// <data_dir>/sessions/<sid[:2]>/<sid> of Odoo 18 (84-character sids whose
// first 42 characters are res_device_log.session_identifier) — and tells
// the session tracker what the database never records: a logout, an
// expiry by Odoo's vacuum, a file removed, activity.
//
// How Odoo 18 changes the store (recorded: testdata/odoo18/sessions): a
// login creates a file (the pre-login one is rotated away); a request that
// changes the session rewrites it (written to a temporary file in the
// store's root, then renamed over it: at least hourly while the session is
// used, and on an identity check); a logout removes the file and writes a
// new anonymous one (rotation, in the same request); a revoke removes the
// device's files; the vacuum (autovacuum, daily) removes files not
// written for sessions.max_inactivity_seconds (default 7 days).
//
// So a removed logged-in file becomes:
//   - logged_out when a new file that is anonymous or of the same user
//     appears within Options.Rotation (a logout; or a login over an old
//     session of the same browser);
//   - expired when it had not been written for Options.ExpiredAfter;
//   - deleted otherwise (a revoke, whose row update the stream brings, or
//     cdcaudit's own termination: the tracker then says which).
//
// File names and contents are secrets: the watcher keeps only pseudonyms
// (sessions.Pseudonym) of them and whether a file names a user, in
// memory; signals carry the pseudonym of the 42-character identifier, the
// tracker's session id. It only reads the store.
//
// It is bounded: at most Options.MaxFiles files are tracked (more are
// counted and ignored until room is made), contents are read up to 64 KiB,
// and fsnotify watches one directory per prefix (at most 64² + 1). When
// fsnotify cannot be used (no inotify, watch limit reached) or loses
// events, the store is scanned instead: every Options.Poll in polling
// mode, and in full after an overflow.
package storewatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/cdcaudit/cdcaudit/sessions"
)

// Defaults of Options.
const (
	DefaultMaxFiles     = 100_000
	DefaultPoll         = 10 * time.Second
	DefaultRotation     = 3 * time.Second
	DefaultExpiredAfter = sessions.DefaultLifetime // Odoo's SESSION_LIFETIME
)

// maxContent bounds what is read of a session file: Odoo's are a few
// hundred bytes.
const maxContent = 64 << 10

// Options tune a Watcher.
type Options struct {
	Dir string // Odoo's <data_dir>/sessions
	// MaxFiles bounds the files tracked (default 100000).
	MaxFiles int
	// Poll is the scan interval when fsnotify is not used (default 10s).
	Poll time.Duration
	// Rotation is how long a removal waits for the new file of a rotation
	// (default 3s; in polling mode at least two Poll intervals).
	Rotation time.Duration
	// ExpiredAfter: a removed file not written for this long was Odoo's
	// vacuum (default 7 days: set it to sessions.max_inactivity_seconds).
	ExpiredAfter time.Duration
	// ForcePoll scans instead of using fsnotify.
	ForcePoll bool
	Logger    *slog.Logger
	Now       func() time.Time
}

// Stats counts what the watcher did.
type Stats struct {
	Tracked  int64  // files tracked now
	Ignored  uint64 // files not tracked: past MaxFiles
	Signals  uint64 // signals sent
	Polling  bool   // scanning instead of fsnotify
	Rescans  uint64 // full scans after lost events
	Unusable uint64 // entries whose name or content is not an Odoo session
}

// Watcher watches one session store.
type Watcher struct {
	opts  Options
	log   *slog.Logger
	files map[string]map[string]*file // prefix directory → pseudonym of the whole sid → file
	count int
	gone  []removal // removed logged-in files waiting for their classification
	born  []birth   // files created recently, for pairing with a removal

	tracked atomic.Int64
	ignored atomic.Uint64
	signals atomic.Uint64
	polling atomic.Bool
	rescans atomic.Uint64
	unusabl atomic.Uint64
}

// file is what is kept of a session file.
type file struct {
	id       string // sessions.Pseudonym(sid[:42]): the tracker's session id
	uid      int64  // the user it names, 0 for an anonymous session
	modified time.Time
	size     int64
}

type removal struct {
	id       string
	uid      int64
	at       time.Time
	modified time.Time
}

type birth struct {
	id  string
	uid int64
	at  time.Time
}

// ValidateDir checks that dir is a directory (Odoo's <data_dir>/sessions).
// A directory that does not exist yet is accepted: Odoo makes it when it
// first starts, and cdcaudit may start before Odoo (Run waits for it).
func ValidateDir(dir string) error {
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// New makes a watcher of opts.Dir, which need not exist yet.
func New(opts Options) (*Watcher, error) {
	if opts.Dir == "" {
		return nil, errors.New("storewatch: no directory")
	}
	if err := ValidateDir(opts.Dir); err != nil {
		return nil, fmt.Errorf("storewatch: %w", err)
	}
	if opts.MaxFiles <= 0 {
		opts.MaxFiles = DefaultMaxFiles
	}
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.Rotation <= 0 {
		opts.Rotation = DefaultRotation
	}
	if opts.ExpiredAfter <= 0 {
		opts.ExpiredAfter = DefaultExpiredAfter
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Watcher{opts: opts, log: opts.Logger, files: map[string]map[string]*file{}}, nil
}

// Stats returns the watcher's counters (safe for concurrent use).
func (w *Watcher) Stats() Stats {
	return Stats{Tracked: w.tracked.Load(), Ignored: w.ignored.Load(), Signals: w.signals.Load(),
		Polling: w.polling.Load(), Rescans: w.rescans.Load(), Unusable: w.unusabl.Load()}
}

// Run watches until ctx ends, sending signals to out (blocking: the
// pipeline drains it between transactions). The files present at start
// are the baseline: they signal nothing until they change.
func (w *Watcher) Run(ctx context.Context, out chan<- sessions.Signal) error {
	emit := func(s sessions.Signal) error {
		select {
		case out <- s:
			w.signals.Add(1)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := w.awaitDir(ctx); err != nil {
		return err
	}
	var fw *fsnotify.Watcher
	if !w.opts.ForcePoll {
		var err error
		if fw, err = fsnotify.NewWatcher(); err != nil {
			w.log.Warn("session store: fsnotify unavailable, scanning instead", "dir", w.opts.Dir, "every", w.opts.Poll, "err", err)
		} else {
			defer fw.Close()
			if err := fw.Add(w.opts.Dir); err != nil {
				w.log.Warn("session store: cannot watch, scanning instead", "dir", w.opts.Dir, "every", w.opts.Poll, "err", err)
				fw.Close()
				fw = nil
			}
		}
	}
	w.scanAll(fw, nil) // baseline
	if fw == nil {
		w.polling.Store(true)
		if w.opts.Rotation < 2*w.opts.Poll {
			w.opts.Rotation = 2 * w.opts.Poll
		}
	}
	tick := time.NewTicker(w.tick())
	defer tick.Stop()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if fw != nil {
		events, errs = fw.Events, fw.Errors
	}
	nextPoll := w.opts.Now().Add(w.opts.Poll)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			w.event(fw, ev, emit)
		case err, ok := <-errs:
			if !ok {
				return nil
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.rescans.Add(1)
				w.log.Warn("session store: events lost, scanning it again", "dir", w.opts.Dir)
				w.scanAll(fw, emit)
			} else {
				w.log.Warn("session store: watch error", "dir", w.opts.Dir, "err", err)
			}
		case <-tick.C:
			if fw == nil && !w.opts.Now().Before(nextPoll) {
				w.scanAll(nil, emit)
				nextPoll = w.opts.Now().Add(w.opts.Poll)
			}
		}
		if err := w.settle(emit); err != nil {
			return nil
		}
	}
}

// tick is how often pending removals are looked at.
func (w *Watcher) tick() time.Duration {
	return max(min(w.opts.Rotation/4, w.opts.Poll/2), 10*time.Millisecond)
}

// event handles one fsnotify event: the root's prefix directories come
// and go; a change in a prefix directory rescans it.
func (w *Watcher) event(fw *fsnotify.Watcher, ev fsnotify.Event, emit func(sessions.Signal) error) {
	rel, err := filepath.Rel(w.opts.Dir, ev.Name)
	if err != nil {
		return
	}
	dir, name := filepath.Split(rel)
	dir = filepath.Clean(dir)
	switch {
	case dir == "." && validPrefix(name):
		// A prefix directory created (watch it and read what is already
		// in it) or removed (its files are gone).
		w.scanDir(fw, name, emit)
	case validPrefix(dir) && ev.Op&(fsnotify.Create|fsnotify.Write|fsnotify.Remove|fsnotify.Rename|fsnotify.Chmod) != 0:
		w.scanDir(nil, dir, emit)
	}
}

// validPrefix: a two-character prefix of a base64url sid.
func validPrefix(s string) bool { return len(s) == 2 && validChars(s) }

// validSid: an Odoo 18 session file name, in the directory of its prefix.
func validSid(prefix, name string) bool {
	return len(name) == 84 && validChars(name) && name[:2] == prefix
}

func validChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// scanAll reads every prefix directory (watching each when fw is set);
// emit nil: a baseline, no signals.
func (w *Watcher) scanAll(fw *fsnotify.Watcher, emit func(sessions.Signal) error) {
	entries, err := os.ReadDir(w.opts.Dir)
	if err != nil {
		w.log.Warn("session store: cannot read", "dir", w.opts.Dir, "err", err)
		return
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() && validPrefix(e.Name()) {
			seen[e.Name()] = true
			w.scanDir(fw, e.Name(), emit)
		}
	}
	for prefix := range w.files {
		if !seen[prefix] {
			w.scanDir(nil, prefix, emit)
		}
	}
}

// scanDir compares one prefix directory with what is known of it.
func (w *Watcher) scanDir(fw *fsnotify.Watcher, prefix string, emit func(sessions.Signal) error) {
	path := filepath.Join(w.opts.Dir, prefix)
	if fw != nil {
		if err := fw.Add(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("session store: cannot watch a directory; its changes are seen by the next full scan", "err", err)
		}
	}
	entries, err := os.ReadDir(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		w.log.Warn("session store: cannot read a directory", "err", err)
		return
	}
	now := w.opts.Now()
	known := w.files[prefix]
	present := make(map[string]bool, len(entries))
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !validSid(prefix, name) {
			w.unusabl.Add(1)
			continue
		}
		key := sessions.Pseudonym(name)
		present[key] = true
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile: the next scan sees it gone
		}
		f := known[key]
		if f != nil && f.modified.Equal(info.ModTime()) && f.size == info.Size() {
			continue
		}
		uid, ok := readUser(filepath.Join(path, name))
		if !ok {
			w.unusabl.Add(1)
			continue
		}
		if f == nil {
			if w.count >= w.opts.MaxFiles {
				w.ignored.Add(1)
				continue
			}
			if known == nil {
				known = map[string]*file{}
				w.files[prefix] = known
			}
			f = &file{id: sessions.Pseudonym(name[:42])}
			known[key] = f
			w.count++
			if emit != nil {
				w.born = append(w.born, birth{id: f.id, uid: uid, at: now})
			}
		}
		f.uid, f.modified, f.size = uid, info.ModTime(), info.Size()
		if emit != nil && uid != 0 {
			at := info.ModTime()
			if at.After(now) {
				at = now // a file's time is whatever was set: never activity in the future
			}
			emit(sessions.Signal{ID: f.id, At: at})
		}
	}
	for key, f := range known {
		if present[key] {
			continue
		}
		delete(known, key)
		w.count--
		if emit != nil && f.uid != 0 {
			w.gone = append(w.gone, removal{id: f.id, uid: f.uid, at: now, modified: f.modified})
		}
	}
	if len(known) == 0 {
		delete(w.files, prefix)
	}
	w.tracked.Store(int64(w.count))
}

// readUser reads the uid of a session file (0: anonymous). ok is false for
// a file that is not an Odoo session (unreadable, too big, not JSON).
func readUser(path string) (uid int64, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxContent+1))
	if err != nil || len(b) > maxContent {
		return 0, false
	}
	return parseUser(b)
}

// parseUser reads "uid" of an Odoo session (JSON object): a positive
// integer, or null/absent for an anonymous session.
func parseUser(b []byte) (int64, bool) {
	var s struct {
		UID json.RawMessage `json:"uid"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return 0, false
	}
	if len(s.UID) == 0 || string(s.UID) == "null" {
		return 0, true
	}
	var uid int64
	if err := json.Unmarshal(s.UID, &uid); err != nil || uid < 0 {
		return 0, false
	}
	return uid, true
}

// settle classifies the removals whose rotation window has passed, and
// forgets births too old to pair.
func (w *Watcher) settle(emit func(sessions.Signal) error) error {
	now := w.opts.Now()
	keep := w.gone[:0]
	for _, r := range w.gone {
		reason := ""
		if i := w.pair(r); i >= 0 {
			reason = sessions.EndLoggedOut
			w.born = append(w.born[:i], w.born[i+1:]...)
		} else if now.Sub(r.at) >= w.opts.Rotation {
			reason = sessions.EndDeleted
			if r.at.Sub(r.modified) >= w.opts.ExpiredAfter {
				reason = sessions.EndExpired
			}
		}
		if reason == "" {
			keep = append(keep, r)
			continue
		}
		if err := emit(sessions.Signal{ID: r.id, At: r.at, End: reason}); err != nil {
			return err
		}
	}
	w.gone = keep
	born := w.born[:0]
	for _, b := range w.born {
		if now.Sub(b.at) < w.opts.Rotation {
			born = append(born, b)
		}
	}
	w.born = born
	return nil
}

// pair finds the new file of a rotation that removed r: created within
// the window around the removal (the events of two directories may be
// read in either order), another session, anonymous or of the same user.
func (w *Watcher) pair(r removal) int {
	for i, b := range w.born {
		if b.id != r.id && (b.uid == 0 || b.uid == r.uid) && absDuration(b.at.Sub(r.at)) <= w.opts.Rotation {
			return i
		}
	}
	return -1
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// ValidIdentifier says whether id is an Odoo session identifier
// (res_device_log.session_identifier: the sid's first 42 characters,
// ^[A-Za-z0-9_-]{42}$): nothing else may name files of the store.
func ValidIdentifier(id string) bool { return len(id) == 42 && validChars(id) }

// Identifiers returns the identifiers of the store's files whose
// pseudonym (sessions.Pseudonym of the 42-character identifier) is id:
// what ends a session known by its pseudonym only. They are secrets: the
// caller uses them and forgets them.
func Identifiers(dir, id string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() || !validPrefix(e.Name()) {
			continue
		}
		files, err := os.ReadDir(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, f := range files {
			if n := f.Name(); len(n) >= 42 && ValidIdentifier(n[:42]) && n[:2] == e.Name() &&
				sessions.Pseudonym(n[:42]) == id && !slices.Contains(out, n[:42]) {
				out = append(out, n[:42])
			}
		}
	}
	return out, nil
}

// awaitDir waits, polling, for the session store to exist: Odoo makes it
// at its first start, which may come after cdcaudit's.
func (w *Watcher) awaitDir(ctx context.Context) error {
	for logged := false; ; logged = true {
		if _, err := os.Stat(w.opts.Dir); !errors.Is(err, fs.ErrNotExist) {
			if logged {
				w.log.Info("session store: the directory exists now, watching it", "dir", w.opts.Dir)
			}
			return nil
		}
		if !logged {
			w.log.Info("session store: waiting for the directory to appear (Odoo makes it when it first starts)", "dir", w.opts.Dir, "every", w.opts.Poll)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(w.opts.Poll):
		}
	}
}
