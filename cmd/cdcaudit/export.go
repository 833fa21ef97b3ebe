package main

import (
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
	"github.com/cdcaudit/cdcaudit/instancekey"
	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/manifest"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

const exportAbout = `
Write the events of the store in --data-dir, in commit order, as JSON Lines
(one event per line, exactly as stored, so each line still verifies against
its hash), CSV (one row per event; key, before, after and actor as JSON
text) or XLSX (the CSV's columns and values as text cells, never formulas;
a new sheet, header repeated, every 1,048,575 events; a value longer than
the 32,767 characters a cell holds is cut and marked, the JSONL and CSV
exports hold it whole). Events stream out one at a time: any size of store
can be exported (XLSX stages each sheet in a temporary file under $TMPDIR
and writes the workbook at the end).

Filters combine: an event is written when it matches --since/--until, one of
the --table globs, one of the --op operations, and --user, --session,
--record and --flag when given. The store's indexes find the events, so a narrow filter
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

--manifest FILE writes, beside the export (also when it goes to standard
output), its manifest: the filter, the format, the count of events, the
first and last event id and the chain values around them, the file's size
and SHA-256, when it was made, and the instance's public key with an
Ed25519 signature over all of it (the instance key in --data-dir, created
if missing). 'cdcaudit verify --export FILE --manifest M' then proves the
file complete, unaltered and from this instance, offline.

While 'cdcaudit run' holds the store, the daemon reads it for export (over
data-dir/cdcaudit.sock, which only the store's owner may use): the same
flags, the same output.`

const exportExamples = `  cdcaudit export --data-dir /var/lib/cdcaudit --format jsonl > events.jsonl
  cdcaudit export --data-dir /var/lib/cdcaudit --format csv --since 2026-11-01 --until 2026-12-01 \
      --table 'public.sale_*' --op update,delete --out november.csv
  cdcaudit export --data-dir /var/lib/cdcaudit --user alice@example.com --since 2026-11-16 --until 2026-11-23
  cdcaudit export --data-dir /var/lib/cdcaudit --record public.account_move:4711 --format csv
  cdcaudit export --data-dir /var/lib/cdcaudit --format xlsx --flag orm_bypass --out bypass.xlsx --manifest bypass.manifest.json`

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
	dataDir  string
	format   string
	filter   sink.Query
	out      string
	manifest string
}

func (c *cli) export(args []string) int {
	fs := c.flagSet("export", "--data-dir DIR [--format jsonl|csv|xlsx] [--since T] [--until T] [--table GLOB] [--op OPS] [--user LOGIN] [--session ID] [--record TABLE:KEY] [--flag NAME] [--out FILE] [--manifest FILE]", exportAbout, exportExamples)
	set := config.Bind(fs.FlagSet, config.KeyDataDir).Require(config.KeyDataDir)
	fs.Lookup("data-dir").Usage = "`directory` of the audit store [CDCAUDIT_DATA_DIR]"
	format := fs.String("format", "jsonl", "output `format`: jsonl (one JSON event per line), csv or xlsx")
	since := fs.String("since", "", "only events committed at or after `time`: RFC 3339 (2026-11-23T13:00:00Z, 2026-11-23T14:00:00+01:00) or a date (2026-11-23, midnight UTC)")
	until := fs.String("until", "", "only events committed before `time` (same forms as --since)")
	var tables, ops listFlag
	fs.Var(&tables, "table", "only events of tables matching a `glob`, on the table name or schema.table (sale_*, public.res_*); repeat the flag or separate globs with commas")
	fs.Var(&ops, "op", "only these operations: insert, update, delete, truncate, snapshot (a comma-separated `list`, or repeat the flag; snapshot records are written only when snapshot is listed)")
	var sel selection
	fs.StringVar(&sel.user, "user", "", "only events of the application user `login`, or of the user #ID (by id: also its events under the logins the session state knows for it)")
	fs.StringVar(&sel.session, "session", "", "only events of the session `id` (a pseudonym, as the events hold it)")
	fs.StringVar(&sel.record, "record", "", "only events of the record `TABLE:KEY` (e.g. public.sale_order:42, or public.t:{\"a\":1,\"b\":\"x\"} for a composite key)")
	fs.StringVar(&sel.flag, "flag", "", "only events carrying the flag `name` (e.g. orm_bypass)")
	out := fs.String("out", "", "write to `file` (atomically) instead of standard output")
	manifestFile := fs.String("manifest", "", "also write the export's signed manifest to `file` (see above; 'cdcaudit verify --export')")
	fs.order = []string{"data-dir", "format", "since", "until", "table", "op", "user", "session", "record", "flag", "out", "manifest", "config"}
	if code, done := c.parse(fs, args); done {
		return code
	}
	cfg, err := set.Load(c.env)
	if err != nil {
		return c.usageErr("export", err)
	}
	opts, err := parseExportOptions(cfg.DataDir, *format, *since, *until, tables, ops, sel, *out)
	if err == nil {
		opts.manifest, err = checkManifestPath(*manifestFile, opts.out)
	}
	if err != nil {
		return c.usageErr("export", err)
	}
	if opts.out == "" && opts.format == "xlsx" && isTerminal(c.stdout) {
		return c.usageErr("export", errors.New("--format xlsx: a workbook is binary: give --out FILE or redirect standard output"))
	}

	ctx, stop := signalContext()
	defer stop()

	store, err := openTrail(opts.dataDir)
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
	run := &exportRun{ctx: ctx, src: src, opts: opts}
	if opts.manifest != "" {
		if run.key, err = instancekey.LoadOrCreate(opts.dataDir); err != nil {
			return c.fail("export", err)
		}
	}

	start := time.Now()
	if opts.out == "" {
		n, err := run.write(&ctxWriter{ctx: ctx, w: c.stdout})
		if err == nil && opts.manifest != "" {
			err = writeFileAtomic(opts.manifest, func(f *os.File) error { _, err := f.Write(run.signed.Marshal()); return err })
		}
		if err != nil {
			return c.fail("export", err)
		}
		if isTerminal(c.stderr) && !isTerminal(c.stdout) {
			fmt.Fprintf(c.stderr, "cdcaudit export: %s events in %s%s\n", thousands(n), time.Since(start).Round(time.Millisecond), run.manifestNote())
		}
		return exitOK
	}
	n, size, err := c.exportToFile(run)
	if err != nil {
		return c.fail("export", err)
	}
	fmt.Fprintf(c.stderr, "cdcaudit export: %s events (%s) written to %s in %s%s\n",
		thousands(n), humanBytes(size), opts.out, time.Since(start).Round(time.Millisecond), run.manifestNote())
	return exitOK
}

// exportRun is one export, with its manifest when asked for one.
type exportRun struct {
	ctx    context.Context
	src    export.Source
	opts   *exportOptions
	key    *instancekey.Key // signs the manifest; nil without one
	events atomic.Uint64    // written so far, for the progress line
	signed manifest.Manifest
}

// write writes the export to w, and makes its manifest when asked.
func (r *exportRun) write(w io.Writer) (uint64, error) {
	src := export.Observe(r.src, func([]byte) error { r.events.Add(1); return nil })
	if r.key == nil {
		return export.WriteContext(r.ctx, w, src, r.opts.filter, r.opts.format)
	}
	var err error
	r.signed, err = manifest.Export(r.ctx, w, src, r.opts.filter, r.opts.format, r.key)
	return r.signed.Events, err
}

func (r *exportRun) manifestNote() string {
	if r.key == nil {
		return ""
	}
	return fmt.Sprintf("; manifest %s (SHA-256 %s…, signed by instance key %s)", r.opts.manifest, r.signed.SHA256[:16], instancekey.Fingerprint(r.signed.Key))
}

// checkManifestPath checks --manifest: in an existing directory, not the
// export itself.
func checkManifestPath(m, out string) (string, error) {
	if m == "" {
		return "", nil
	}
	if fi, err := os.Stat(m); err == nil && fi.IsDir() {
		return "", fmt.Errorf("--manifest: %s is a directory", m)
	}
	if fi, err := os.Stat(filepath.Dir(m)); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("--manifest: directory %s does not exist", filepath.Dir(m))
	}
	if out != "" && filepath.Clean(m) == filepath.Clean(out) {
		return "", fmt.Errorf("--manifest: %s is the export's own file (--out)", m)
	}
	return m, nil
}

// readSessions reads the sessions the store knows (none in a store
// without session state).
func readSessions(store trail) (*sessions.State, error) {
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

// selection holds the flags that pick one user, session, record or flag.
type selection struct{ user, session, record, flag string }

func parseExportOptions(dataDir, format, since, until string, tables, ops []string, sel selection, out string) (*exportOptions, error) {
	o := &exportOptions{dataDir: dataDir, format: format, out: out}
	switch format {
	case "jsonl", "csv", "xlsx":
	case "json", "ndjson":
		return nil, fmt.Errorf("--format: %q is not a format; use jsonl (one JSON event per line)", format)
	case "xls", "excel":
		return nil, fmt.Errorf("--format: %q is not a format; use xlsx (a workbook Excel and LibreOffice open)", format)
	default:
		return nil, fmt.Errorf("--format: %q is not a format (want jsonl, csv or xlsx)", format)
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
	f.User, f.Session, f.Flag = sel.user, sel.session, sel.flag
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
		q.User == "" && q.Session == "" && q.Record == nil && q.Flag == ""
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
// renames it into place once complete and synced; its manifest, when asked
// for, likewise, once the export is in place.
func (c *cli) exportToFile(run *exportRun) (n uint64, size int64, err error) {
	cw := &countingWriter{}
	err = writeFileAtomic(run.opts.out, func(f *os.File) error {
		cw.w = f
		stopProgress := c.progress(func() string {
			return "exporting… " + humanBytes(cw.n.Load()) + ", " + thousands(run.events.Load()) + " events"
		})
		defer stopProgress()
		n, err = run.write(&ctxWriter{ctx: run.ctx, w: cw})
		return err
	})
	if err == nil && run.key != nil {
		err = writeFileAtomic(run.opts.manifest, func(f *os.File) error { _, err := f.Write(run.signed.Marshal()); return err })
	}
	return n, cw.n.Load(), err
}

// writeFileAtomic makes the file name appear complete or not at all,
// readable by its owner only: write fills a temporary file in the same
// directory, which is synced and renamed into place.
func writeFileAtomic(name string, write func(f *os.File) error) (err error) {
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = write(tmp); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), name); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil { // make the rename durable
		d.Sync()
		d.Close()
	}
	return nil
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

// countingWriter counts bytes written.
type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
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
