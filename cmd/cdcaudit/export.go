package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/export"
	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

const exportAbout = `
Write the events of the store in --data-dir, in commit order, as JSON Lines
(one event per line, exactly as stored, so each line still verifies against
its hash) or CSV (one row per event; key, before, after and actor as JSON
text). Events stream out one at a time: any size of store can be exported.

Filters combine: an event is written when it matches --since/--until, one of
the --table globs, one of the --op operations, and --user, --session and
--record when given. The store's indexes find the events, so a narrow filter
reads little of a large store.

--user names the application user by its login, as the events name it, or
by its id, #ID: the events that name it by id only, and those under each
login the session state knows for that user (which name it by id too);
--session a session id as the events hold it (s…), or the start of one
as 'cdcaudit sessions' shows it. --record is TABLE:KEY as for 'cdcaudit events' (public.sale_order:42,
'public.t:{"a":1,"b":"x"}'): the events whose key, or whose before-image's
key, is KEY; unlike 'cdcaudit events', the export does not follow the
record through key changes.

Snapshot records (op "snapshot": rows as the table snapshot read them, not
changes) are left out unless asked for: --op snapshot selects them (with
other operations, e.g. --op insert,update,delete,truncate,snapshot, both).

With --out the file appears complete or not at all (a temporary file in the
same directory is renamed into place), readable by its owner only.

The store must not be held by a running 'cdcaudit run' on the same
--data-dir (one process at a time may open it).`

const exportExamples = `  cdcaudit export --data-dir /var/lib/cdcaudit --format jsonl > events.jsonl
  cdcaudit export --data-dir /var/lib/cdcaudit --format csv --since 2026-11-01 --until 2026-12-01 \
      --table 'public.sale_*' --op update,delete --out november.csv
  cdcaudit export --data-dir /var/lib/cdcaudit --user alice@example.com --since 2026-11-16 --until 2026-11-23
  cdcaudit export --data-dir /var/lib/cdcaudit --record public.account_move:4711 --format csv`

// listFlag collects a repeatable, comma-separated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// exportOptions are export's parsed flags.
type exportOptions struct {
	dataDir string
	format  string
	filter  sink.Query
	out     string
}

func (c *cli) export(args []string) int {
	fs := c.flagSet("export", "--data-dir DIR [--format jsonl|csv] [--since T] [--until T] [--table GLOB] [--op OPS] [--user LOGIN] [--session ID] [--record TABLE:KEY] [--out FILE]", exportAbout, exportExamples)
	set := config.Bind(fs.FlagSet, config.KeyDataDir).Require(config.KeyDataDir)
	fs.Lookup("data-dir").Usage = "`directory` of the audit store (of a stopped 'cdcaudit run') [CDCAUDIT_DATA_DIR]"
	format := fs.String("format", "jsonl", "output `format`: jsonl (one JSON event per line) or csv")
	since := fs.String("since", "", "only events committed at or after `time`: RFC 3339 (2026-11-23T13:00:00Z, 2026-11-23T14:00:00+01:00) or a date (2026-11-23, midnight UTC)")
	until := fs.String("until", "", "only events committed before `time` (same forms as --since)")
	var tables, ops listFlag
	fs.Var(&tables, "table", "only events of tables matching a `glob`, on the table name or schema.table (sale_*, public.res_*); repeat the flag or separate globs with commas")
	fs.Var(&ops, "op", "only these operations: insert, update, delete, truncate, snapshot (a comma-separated `list`, or repeat the flag; snapshot records are written only when snapshot is listed)")
	var sel selection
	fs.StringVar(&sel.user, "user", "", "only events of the application user `login`, or of the user #ID (by id: also its events under the logins the session state knows for it)")
	fs.StringVar(&sel.session, "session", "", "only events of the session `id` (a pseudonym, as the events hold it)")
	fs.StringVar(&sel.record, "record", "", "only events of the record `TABLE:KEY` (e.g. public.sale_order:42, or public.t:{\"a\":1,\"b\":\"x\"} for a composite key)")
	out := fs.String("out", "", "write to `file` (atomically) instead of standard output")
	fs.order = []string{"data-dir", "format", "since", "until", "table", "op", "user", "session", "record", "out", "config"}
	if code, done := c.parse(fs, args); done {
		return code
	}
	cfg, err := set.Load(c.env)
	if err != nil {
		return c.usageErr("export", err)
	}
	opts, err := parseExportOptions(cfg.DataDir, *format, *since, *until, tables, ops, sel, *out)
	if err != nil {
		return c.usageErr("export", err)
	}

	ctx, stop := signalContext()
	defer stop()

	store, err := sink.OpenReadOnly(opts.dataDir)
	if err != nil {
		return c.fail("export", err)
	}
	defer store.Close()
	if !unfiltered(opts.filter) {
		c.warnUnindexed("export", store)
	}
	var src export.Source = store
	if opts.filter.User != "" || opts.filter.Session != "" {
		known, err := readSessions(store)
		if err != nil {
			return c.fail("export", err)
		}
		if opts.filter.Session, err = expandSession(known, opts.filter.Session); err != nil {
			return c.usageErr("export", err)
		}
		src = forUser(store, known, opts.filter.User)
		defer c.hintUser(known, opts.filter.User)
	}

	start := time.Now()
	if opts.out == "" {
		n, err := export.Write(&ctxWriter{ctx: ctx, w: c.stdout}, src, opts.filter, opts.format)
		if err != nil {
			return c.fail("export", err)
		}
		if isTerminal(c.stderr) && !isTerminal(c.stdout) {
			fmt.Fprintf(c.stderr, "cdcaudit export: %s events in %s\n", thousands(n), time.Since(start).Round(time.Millisecond))
		}
		return exitOK
	}
	n, size, err := c.exportToFile(ctx, src, opts)
	if err != nil {
		return c.fail("export", err)
	}
	fmt.Fprintf(c.stderr, "cdcaudit export: %s events (%s) written to %s in %s\n",
		thousands(n), humanBytes(size), opts.out, time.Since(start).Round(time.Millisecond))
	return exitOK
}

// readSessions reads the sessions the store knows (none in a store
// without session state).
func readSessions(store *sink.Store) (*sessions.State, error) {
	st, err := sessions.ReadState(func(fn func(k, v []byte) error) error { return store.LoadState("sessions", fn) })
	if err != nil && !errors.Is(err, sink.ErrDamaged) {
		// The store read it, the state does not decode: its bytes changed.
		err = fmt.Errorf("%w: the session state does not decode: %v", sink.ErrDamaged, err)
	}
	return st, err
}

// expandSession turns the short session id 'cdcaudit sessions' shows into
// the full pseudonym the events hold, when exactly one known session begins
// with it; an id no known session begins with is taken as given (its
// session may have been pruned while its events are kept).
func expandSession(st *sessions.State, id string) (string, error) {
	if id == "" {
		return id, nil
	}
	var found []string
	for i := range st.Sessions {
		switch full := st.Sessions[i].ID; {
		case full == id:
			return id, nil
		case strings.HasPrefix(full, id):
			found = append(found, full)
		}
	}
	if len(found) > 1 {
		return "", fmt.Errorf("--session: %q begins %d sessions (%s): give more of it", id, len(found), strings.Join(found, ", "))
	}
	if len(found) == 1 {
		return found[0], nil
	}
	return id, nil
}

// hintUser, when --user named no login the store's sessions know, names
// those that contain it: logins are matched exactly (bob is not
// bob@example.com).
func (c *cli) hintUser(st *sessions.State, user string) {
	if user == "" || strings.HasPrefix(user, "#") {
		return
	}
	var like []string
	for _, login := range st.Users {
		if login == user {
			return
		}
		if strings.Contains(strings.ToLower(login), strings.ToLower(user)) {
			like = append(like, login)
		}
	}
	if len(like) > 0 {
		slices.Sort(like)
		fmt.Fprintf(c.stderr, "cdcaudit export: no user logs in as %q; --user takes a login exactly: %s\n", user, strings.Join(like, ", "))
	}
}

// selection holds the flags that pick one user, session or record.
type selection struct{ user, session, record string }

func parseExportOptions(dataDir, format, since, until string, tables, ops []string, sel selection, out string) (*exportOptions, error) {
	o := &exportOptions{dataDir: dataDir, format: format, out: out}
	switch format {
	case "jsonl", "csv":
	case "json", "ndjson":
		return nil, fmt.Errorf("--format: %q is not a format; use jsonl (one JSON event per line)", format)
	default:
		return nil, fmt.Errorf("--format: %q is not a format (want jsonl or csv)", format)
	}
	var err error
	if o.filter.Since, err = parseTime("--since", since); err != nil {
		return nil, err
	}
	if o.filter.Until, err = parseTime("--until", until); err != nil {
		return nil, err
	}
	if !o.filter.Since.IsZero() && !o.filter.Until.IsZero() && !o.filter.Since.Before(o.filter.Until) {
		return nil, fmt.Errorf("--since (%s) must be before --until (%s)", since, until)
	}
	for _, t := range tables {
		if _, err := path.Match(t, ""); err != nil {
			return nil, fmt.Errorf("--table: %q is not a valid glob", t)
		}
	}
	o.filter.Tables = tables
	for _, s := range ops {
		op, err := audit.ParseOp(strings.ToLower(s))
		if err != nil {
			return nil, fmt.Errorf("--op: %v", err)
		}
		o.filter.Ops = append(o.filter.Ops, op)
	}
	if err := parseSelection(&o.filter, sel); err != nil {
		return nil, err
	}
	if out != "" {
		if fi, err := os.Stat(out); err == nil && fi.IsDir() {
			return nil, fmt.Errorf("--out: %s is a directory", out)
		}
		if fi, err := os.Stat(filepath.Dir(out)); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("--out: directory %s does not exist", filepath.Dir(out))
		}
	}
	return o, nil
}

// parseSelection reads --user, --session and --record into f.
func parseSelection(f *sink.Query, sel selection) error {
	f.User, f.Session = sel.user, sel.session
	if id, ok := strings.CutPrefix(sel.user, "#"); ok {
		// The index names a user by id as audit.UserTerm writes it.
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("--user %q: #ID takes a user id, e.g. #7", sel.user)
		}
		f.User = "#" + strconv.FormatInt(n, 10)
	}
	if sel.record != "" {
		ref, err := audit.ParseRecordRef(sel.record)
		if err != nil {
			return fmt.Errorf("--record: %q: %v", sel.record, err)
		}
		f.Record = &ref
	}
	return nil
}

// unfiltered reports whether q selects every event (snapshot records
// aside): what no index narrows.
func unfiltered(q sink.Query) bool {
	return q.Since.IsZero() && q.Until.IsZero() && len(q.Tables) == 0 && len(q.Ops) == 0 &&
		q.User == "" && q.Session == "" && q.Record == nil
}

// parseTime parses an RFC 3339 time or a date (midnight UTC); "" is the
// zero time (no bound).
func parseTime(flagName, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if _, err := time.Parse("2006-01-02T15:04:05", s); err == nil {
		return time.Time{}, fmt.Errorf("%s: %q has no time zone (add Z for UTC, or an offset like +01:00)", flagName, s)
	}
	return time.Time{}, fmt.Errorf("%s: %q is not a time (want RFC 3339, e.g. 2026-11-23T13:00:00Z, or a date, e.g. 2026-11-23)", flagName, s)
}

// exportToFile writes the export to a temporary file next to opts.out and
// renames it into place once complete and synced.
func (c *cli) exportToFile(ctx context.Context, src export.Source, opts *exportOptions) (n uint64, size int64, err error) {
	dir, base := filepath.Split(opts.out)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	cw := &countingWriter{w: tmp}
	stopProgress := c.progress(func() string {
		s := "exporting… " + humanBytes(cw.n.Load())
		if opts.format == "jsonl" {
			s += ", " + thousands(cw.lines.Load()) + " events"
		}
		return s
	})
	n, err = export.Write(&ctxWriter{ctx: ctx, w: cw}, src, opts.filter, opts.format)
	stopProgress()
	if err != nil {
		return 0, 0, err
	}
	if err = tmp.Sync(); err != nil {
		return 0, 0, err
	}
	if err = tmp.Close(); err != nil {
		return 0, 0, err
	}
	if err = os.Rename(tmp.Name(), opts.out); err != nil {
		return 0, 0, err
	}
	if d, derr := os.Open(dir); derr == nil { // make the rename durable
		d.Sync()
		d.Close()
	}
	return n, cw.n.Load(), nil
}

// progress shows status() on stderr, refreshed every half second, when
// stderr is a terminal and the work takes more than a second. The returned
// func stops it and clears the line.
func (c *cli) progress(status func() string) (stop func()) {
	if !isTerminal(c.stderr) {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		shown := false
		first := time.NewTimer(time.Second)
		defer first.Stop()
		select {
		case <-done:
			return
		case <-first.C:
		}
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			fmt.Fprintf(c.stderr, "\r\x1b[K%s", status())
			shown = true
			select {
			case <-done:
				if shown {
					fmt.Fprint(c.stderr, "\r\x1b[K")
				}
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// countingWriter counts bytes and newlines written.
type countingWriter struct {
	w     io.Writer
	n     atomic.Int64
	lines atomic.Uint64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	c.lines.Add(uint64(bytes.Count(p[:n], []byte{'\n'})))
	return n, err
}

// ctxWriter fails writes once ctx is done, which aborts an export on Ctrl-C.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, errors.New("interrupted")
	}
	return c.w.Write(p)
}
