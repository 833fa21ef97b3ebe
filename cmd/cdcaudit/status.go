package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/backup"
	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/sink"
)

const statusAbout = `
Show the state of the 'cdcaudit run' holding the store in --data-dir: the
checkpoint (the end of the last transaction durable in the store), the
replication slot (confirmed position, WAL status, WAL it holds back) and
the tables' snapshot (rows stored, tables done of all, the tables being
copied and pending, the remaining rows estimated from pg_class.reltuples,
and the time left at the rate so far).

status asks the daemon over the socket data-dir/cdcaudit.sock, which only
the store's owner (and root) may use. For a daemon that watches several
databases (databases in the configuration), --data-dir is its data_dir:
each source's store, <data_dir>/<source>, is asked in turn and shown under
its name (JSON: {"sources": {NAME: answer, …}}).

Exit status: 0 success, 1 no daemon runs on --data-dir or it failed to
answer, 2 bad usage.`

const statusExamples = `  cdcaudit status --data-dir /var/lib/cdcaudit
  cdcaudit status --data-dir /var/lib/cdcaudit --format json`

// daemonStatus mirrors the daemon's answer (internal/pipeline).
type daemonStatus struct {
	Checkpoint string `json:"checkpoint"`
	Slot       struct {
		Name           string `json:"name"`
		Error          string `json:"error"`
		Exists         bool   `json:"exists"`
		Active         bool   `json:"active"`
		ConfirmedFlush string `json:"confirmed_flush_lsn"`
		WALStatus      string `json:"wal_status"`
		RetainedBytes  int64  `json:"retained_wal_bytes"`
	} `json:"slot"`
	Snapshot struct {
		Tables     int      `json:"tables"`
		Done       int      `json:"done"`
		Copying    []string `json:"copying"`
		Pending    []string `json:"pending"`
		Rows       int64    `json:"rows"`
		Remaining  int64    `json:"remaining_rows"`
		ETASeconds float64  `json:"eta_seconds"`
		RowsPerSec float64  `json:"rows_per_second"`
	} `json:"snapshot"`
}

func (c *cli) status(args []string) int {
	fs := c.flagSet("status", "--data-dir DIR [--format text|json]", statusAbout, statusExamples)
	set := config.Bind(fs.FlagSet, config.KeyDataDir).Require(config.KeyDataDir)
	fs.Lookup("data-dir").Usage = "`directory` of the audit store of a running 'cdcaudit run' [CDCAUDIT_DATA_DIR]"
	format := fs.String("format", "text", "output `format`: text, or json (the daemon's answer as it is)")
	fs.order = []string{"data-dir", "format", "config"}
	if code, done := c.parse(fs, args); done {
		return code
	}
	cfg, err := set.Load(c.env)
	if err != nil {
		return c.usageErr("status", err)
	}
	if *format != "text" && *format != "json" {
		return c.usageErr("status", fmt.Errorf("--format: %q is not a format (want text or json)", *format))
	}
	if stores := sourceStores(cfg.DataDir); stores != nil {
		return c.statusOfSources(stores, *format)
	}
	reply, err := backup.Ask(cfg.DataDir, "status", "")
	if err != nil {
		return c.fail("status", daemonError(cfg.DataDir, err))
	}
	if *format == "json" {
		fmt.Fprintf(c.stdout, "%s\n", reply)
		return exitOK
	}
	if err := writeStatus(c.stdout, reply); err != nil {
		return c.fail("status", err)
	}
	return exitOK
}

// sourceStores returns the stores of a daemon that watches several
// databases (config databases), by source: the subdirectories of dir
// holding a store, when dir holds none itself; nil otherwise.
func sourceStores(dir string) map[string]string {
	if _, err := os.Stat(filepath.Join(dir, sink.FileName)); err == nil {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out map[string]string
	for _, e := range entries {
		sub := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(sub, sink.FileName)); e.IsDir() && err == nil {
			if out == nil {
				out = map[string]string{}
			}
			out[e.Name()] = sub
		}
	}
	return out
}

// statusOfSources asks the daemon for the status of each source's store
// (one socket each): in text, a section per source; in JSON, an object of
// the daemon's answers by source. A store no daemon holds is reported and
// makes the exit status 1.
func (c *cli) statusOfSources(stores map[string]string, format string) int {
	names := slices.Sorted(maps.Keys(stores))
	code := exitOK
	answers := map[string]json.RawMessage{}
	for i, name := range names {
		reply, err := backup.Ask(stores[name], "status", "")
		if err != nil {
			fmt.Fprintf(c.stderr, "cdcaudit status: source %s: %v\n", name, daemonError(stores[name], err))
			code = exitFail
			continue
		}
		if format == "json" {
			answers[name] = reply
			continue
		}
		if i > 0 {
			fmt.Fprintln(c.stdout)
		}
		fmt.Fprintf(c.stdout, "source:      %s (%s)\n", name, stores[name])
		if err := writeStatus(c.stdout, reply); err != nil {
			fmt.Fprintf(c.stderr, "cdcaudit status: source %s: %v\n", name, err)
			code = exitFail
		}
	}
	if format == "json" {
		b, _ := json.Marshal(map[string]any{"sources": answers})
		fmt.Fprintf(c.stdout, "%s\n", b)
	}
	return code
}

// writeStatus writes the daemon's status answer as text.
func writeStatus(w io.Writer, reply []byte) error {
	var st daemonStatus
	if err := json.Unmarshal(reply, &st); err != nil {
		return fmt.Errorf("the daemon's answer is not understood: %w", err)
	}
	fmt.Fprintf(w, "checkpoint:  %s\n", st.Checkpoint)
	switch sl := st.Slot; {
	case sl.Error != "":
		fmt.Fprintf(w, "slot:        %s (cannot read it: %s)\n", sl.Name, sl.Error)
	case !sl.Exists:
		fmt.Fprintf(w, "slot:        %s MISSING\n", sl.Name)
	default:
		active := "inactive"
		if sl.Active {
			active = "active"
		}
		fmt.Fprintf(w, "slot:        %s, %s, confirmed to %s, wal_status %s, holds %s of WAL\n",
			sl.Name, active, sl.ConfirmedFlush, orDash(sl.WALStatus), humanBytes(sl.RetainedBytes))
	}
	sn := st.Snapshot
	switch {
	case sn.Tables == 0:
		fmt.Fprintf(w, "snapshot:    none\n")
	case sn.Done == sn.Tables:
		fmt.Fprintf(w, "snapshot:    complete: %s rows, %d tables\n", thousands(uint64(sn.Rows)), sn.Tables)
	default:
		eta := "unknown"
		if sn.ETASeconds > 0 {
			eta = (time.Duration(sn.ETASeconds) * time.Second).String()
		}
		fmt.Fprintf(w, "snapshot:    %s rows, %d of %d tables done, about %s rows to go, ETA %s\n",
			thousands(uint64(sn.Rows)), sn.Done, sn.Tables, thousands(uint64(sn.Remaining)), eta)
		if len(sn.Copying) > 0 {
			fmt.Fprintf(w, "  copying:   %s\n", strings.Join(sn.Copying, ", "))
		}
		if len(sn.Pending) > 0 {
			fmt.Fprintf(w, "  pending:   %s\n", listSome(sn.Pending, 10))
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// listSome joins the first n names and says how many more there are.
func listSome(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// daemonError says what a failed request to the daemon means.
func daemonError(dataDir string, err error) error {
	if errors.Is(err, backup.ErrNoDaemon) {
		return fmt.Errorf("no 'cdcaudit run' is running on %s (nobody listens on %s)", dataDir, path.Join(dataDir, backup.SocketName))
	}
	return err
}

const snapshotAbout = `
Make the 'cdcaudit run' holding the store in --data-dir snapshot the
published tables matching --table again: each is copied, chunk by chunk in
key order, as op "snapshot" records placed in the stream by a marker
(pg_logical_emit_message), so every row read is reconciled exactly with the
changes streamed around it. Use it for a table added to the publication
later, or to take a fresh picture of a table.

A table whose snapshot is still running is left to finish. Progress shows
in the daemon's log, its metrics and 'cdcaudit status'.

The request goes over the socket data-dir/cdcaudit.sock, which only the
store's owner (and root) may use.

Exit status: 0 the snapshot was started (or no table matched: said so), 1
no daemon runs on --data-dir or it refused, 2 bad usage.`

const snapshotExamples = `  cdcaudit snapshot --data-dir /var/lib/cdcaudit --table public.res_partner
  cdcaudit snapshot --data-dir /var/lib/cdcaudit --table 'sale_*' --table public.account_move`

func (c *cli) snapshot(args []string) int {
	fs := c.flagSet("snapshot", "--data-dir DIR --table GLOB", snapshotAbout, snapshotExamples)
	set := config.Bind(fs.FlagSet, config.KeyDataDir).Require(config.KeyDataDir)
	fs.Lookup("data-dir").Usage = "`directory` of the audit store of a running 'cdcaudit run' [CDCAUDIT_DATA_DIR]"
	var tables listFlag
	fs.Var(&tables, "table", "published tables to snapshot: a `glob` on schema.table or the table name (public.res_*, sale_order); repeat the flag or separate globs with commas")
	fs.order = []string{"data-dir", "table", "config"}
	if code, done := c.parse(fs, args); done {
		return code
	}
	cfg, err := set.Load(c.env)
	if err != nil {
		return c.usageErr("snapshot", err)
	}
	if len(tables) == 0 {
		return c.usageErr("snapshot", errors.New("--table is required: the tables to snapshot"))
	}
	for _, g := range tables {
		if _, err := path.Match(g, ""); err != nil || strings.ContainsAny(g, " \n") {
			return c.usageErr("snapshot", fmt.Errorf("--table: %q is not a valid glob", g))
		}
	}
	reply, err := backup.Ask(cfg.DataDir, "snapshot", strings.Join(tables, ","))
	if err != nil {
		return c.fail("snapshot", daemonError(cfg.DataDir, err))
	}
	var res struct {
		Tables []string `json:"tables"`
	}
	if err := json.Unmarshal(reply, &res); err != nil {
		return c.fail("snapshot", fmt.Errorf("the daemon's answer is not understood: %w", err))
	}
	if len(res.Tables) == 0 {
		fmt.Fprintf(c.stdout, "no published table matches %s that is not being snapshotted already\n", strings.Join(tables, ", "))
		return exitOK
	}
	fmt.Fprintf(c.stdout, "snapshot started: %s\n", strings.Join(res.Tables, ", "))
	return exitOK
}
