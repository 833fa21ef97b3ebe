package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/history"
	"github.com/cdcaudit/cdcaudit/internal/config"
)

const eventsAbout = `
Show one record of the store in --data-dir: every event it went through,
oldest first (inserts, updates, deletes, snapshot records, and a truncate
of its table while it existed), or with --at, the record as it was at that
moment: the row written by its last insert, update or snapshot committed at
or before it, and which event that was.

--record is TABLE:KEY. TABLE is schema.table, or a table of schema public;
names are spelt as in the events (a name holding '.', ':' or '"' goes in
double quotes). KEY is the value of a one-column key as written (42, abc),
or a JSON object of the key's columns ({"a":1,"b":"x"}). A value matches
the key as the event holds it: 42 finds the integer 42 and the text '42',
but not 42.0.

The record is followed through key changes: an update that changes its key
moves it to the new key. After a delete or a truncate it is gone, and the
next row that takes KEY continues the history.

With --at, an unchanged large value that an update did not carry is taken
from the record's row before it; one that no earlier event holds is listed
as missing. A record is unknown before its first event: the store holds
nothing of it (it was not changed since cdcaudit began recording its table
and no snapshot read it, or it did not exist yet).

While 'cdcaudit run' holds the store, the daemon reads it for events (over
data-dir/cdcaudit.sock, which only the store's owner may use): the same
flags, the same output.

Exit status: 0 found (the history has events; with --at, the record
existed), 1 failure (an unreadable store, or one another command holds), 2 bad usage, 4 not
found (no event of the record; with --at, it did not exist or is unknown
at that moment).`

const eventsExamples = `  cdcaudit events --data-dir /var/lib/cdcaudit --record public.sale_order:42
  cdcaudit events --data-dir /var/lib/cdcaudit --record res_partner:7 --at 2026-11-23T13:00:00Z --format json
  cdcaudit events --data-dir /var/lib/cdcaudit --record 'public.sale_order_tag_rel:{"order_id":42,"tag_id":3}'`

// exitNotFound: the record has no event, or did not exist (or is unknown)
// at --at.
const exitNotFound = 4

// eventsOptions are events' parsed flags.
type eventsOptions struct {
	ref    history.Ref
	at     time.Time // zero: the history
	format string
}

func (c *cli) events(args []string) int {
	fs := c.flagSet("events", "--data-dir DIR --record TABLE:KEY [--at TIME] [--format table|json|jsonl]", eventsAbout, eventsExamples)
	set := config.Bind(fs.FlagSet, config.KeyDataDir).Require(config.KeyDataDir)
	fs.Lookup("data-dir").Usage = "`directory` of the audit store [CDCAUDIT_DATA_DIR]"
	record := fs.String("record", "", "the record: `TABLE:KEY`, e.g. public.sale_order:42, res_partner:abc, or public.t:{\"a\":1,\"b\":\"x\"} for a composite key")
	at := fs.String("at", "", "show the record as it was at `time`: RFC 3339 (2026-11-23T13:00:00Z, 2026-11-23T14:00:00+01:00) or a date (2026-11-23, midnight UTC)")
	format := fs.String("format", "table", "output `format`: table; json (the history: an array of events as stored; with --at: one object); jsonl (the events one per line, as stored, or the object on one line)")
	fs.order = []string{"data-dir", "record", "at", "format", "config"}
	if code, done := c.parse(fs, args); done {
		return code
	}
	cfg, err := set.Load(c.env)
	if err != nil {
		return c.usageErr("events", err)
	}
	opts, err := parseEventsOptions(*record, *at, *format)
	if err != nil {
		return c.usageErr("events", err)
	}

	store, err := openTrail(cfg.DataDir)
	if err != nil {
		return c.fail("events", err)
	}
	defer store.Close()
	c.warnUnindexed("events", store)
	if opts.at.IsZero() {
		return c.recordHistory(store, opts)
	}
	return c.recordAt(store, opts)
}

func parseEventsOptions(record, at, format string) (*eventsOptions, error) {
	o := &eventsOptions{format: format}
	switch format {
	case "table", "json", "jsonl":
	default:
		return nil, fmt.Errorf("--format: %q is not a format (want table, json or jsonl)", format)
	}
	if record == "" {
		return nil, errors.New("--record is required: the record to show, as TABLE:KEY (e.g. public.sale_order:42)")
	}
	ref, err := history.ParseRef(record)
	if err != nil {
		return nil, fmt.Errorf("--record: %q: %v", record, err)
	}
	o.ref = ref
	if o.at, err = parseTime("--at", at); err != nil {
		return nil, err
	}
	return o, nil
}

// warnUnindexed says on stderr when the store's indexes are not complete
// (a store written before them, whose build has not finished): queries
// then read every event, which takes long on a large store.
func (c *cli) warnUnindexed(command string, store trail) {
	if complete, err := store.IndexComplete(); err == nil && !complete {
		fmt.Fprintf(c.stderr, "cdcaudit %s: the store's indexes are not complete (written before them, or their build has not finished): every event is read; 'cdcaudit reindex --data-dir %s' builds them\n",
			command, store.Dir())
	}
}

// queryErr reports a failed query: a key that does not fit the table is a
// bad --record, anything else a failure.
func (c *cli) queryErr(err error) int {
	if errors.Is(err, history.ErrKeyColumns) {
		return c.usageErr("events", fmt.Errorf("--record: %v", err))
	}
	return c.fail("events", err)
}

func (c *cli) recordHistory(store trail, o *eventsOptions) int {
	bw := bufio.NewWriter(c.stdout)
	var tw *tabwriter.Writer
	who := &lineFormat{fullLogin: true}
	n := 0
	write := func(e *history.Event) error {
		n++
		switch o.format {
		case "jsonl":
			bw.Write(e.Record)
			return bw.WriteByte('\n')
		case "json":
			if n == 1 {
				bw.WriteString("[\n")
			} else {
				bw.WriteString(",\n")
			}
			_, err := bw.Write(e.Record)
			return err
		}
		if tw == nil {
			tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "COMMIT TIME (UTC)\tEVENT\tOP\tWHO\tCHANGE")
		}
		ev, err := storedEvent(e)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.CommitTime.UTC().Format("2006-01-02 15:04:05.000000"),
			e.ID, e.Op, cell(who.who(ev.Actor)), cell(changeText(e, ev)))
		return err
	}
	seen, err := history.Record(store, o.ref, write)
	if tw != nil {
		tw.Flush()
	}
	switch {
	case err != nil:
		// What was written stays (whole events); nothing pretends it is complete.
	case o.format == "json" && n > 0:
		bw.WriteString("\n]\n")
	case o.format == "json":
		bw.WriteString("[]\n")
	case o.format == "table" && n > 0:
		fmt.Fprintf(bw, "\n%s: %s.\n", o.ref, plural(n, "event", "events"))
	}
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return c.queryErr(err)
	}
	if n == 0 {
		fmt.Fprintf(c.stderr, "cdcaudit events: no event of %s in the store%s\n", o.ref, tableHint(o.ref, seen))
		return exitNotFound
	}
	return exitOK
}

// tableHint points at a misspelt table: one the store holds no event of.
func tableHint(ref history.Ref, seen history.Summary) string {
	if seen.TableEvents > 0 {
		return ""
	}
	return fmt.Sprintf(" (nor of any record of table %s.%s: names are spelt as in the events, case and schema included)", ref.Schema, ref.Table)
}

// atJSON is the answer of --at in json and jsonl.
type atJSON struct {
	Record string          `json:"record"`
	At     string          `json:"at"`
	State  string          `json:"state"` // exists, gone, unknown
	Reason string          `json:"reason"`
	Row    json.RawMessage `json:"row"` // null unless it exists
	// Missing: columns of row whose value is not known (unchanged large
	// values the server did not send, held by no earlier event).
	Missing []string  `json:"missing,omitempty"`
	Event   *eventRef `json:"event"` // the event the state comes from
	Next    *eventRef `json:"next"`  // the record's next event, if any
}

// eventRef names an event of the record.
type eventRef struct {
	ID           string          `json:"id"`
	Op           string          `json:"op"`
	CommitTime   string          `json:"commit_time"`
	BeforeSource string          `json:"before_source,omitempty"`
	Key          json.RawMessage `json:"key"`
	PrevKey      json.RawMessage `json:"prev_key,omitempty"` // a key change: the key before it
}

func newEventRef(e *history.Event) *eventRef {
	if e == nil {
		return nil
	}
	return &eventRef{ID: e.ID, Op: e.Op.String(), CommitTime: string(audit.AppendTime(nil, e.CommitTime)),
		BeforeSource: e.BeforeSource, Key: e.Key, PrevKey: e.PrevKey}
}

func (c *cli) recordAt(store trail, o *eventsOptions) int {
	im, err := history.At(store, o.ref, o.at)
	if err != nil {
		return c.queryErr(err)
	}
	code := exitOK
	if im.State != history.Exists {
		code = exitNotFound
	}
	if im.State == history.Unknown && im.Next == nil {
		fmt.Fprintf(c.stderr, "cdcaudit events: no event of %s in the store%s\n", o.ref, tableHint(o.ref, im.Seen))
	}
	if o.format == "table" {
		if err := writeImage(c.stdout, im); err != nil {
			return c.fail("events", err)
		}
		return code
	}
	out := atJSON{Record: o.ref.String(), At: string(audit.AppendTime(nil, o.at)), State: im.State.String(),
		Reason: im.Reason(), Row: im.Row, Missing: im.Missing, Event: newEventRef(im.Event), Next: newEventRef(im.Next)}
	if out.Row == nil {
		out.Row = json.RawMessage("null")
	}
	enc := json.NewEncoder(c.stdout)
	enc.SetEscapeHTML(false) // values as stored: '<' stays '<'
	if o.format == "json" {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(&out); err != nil {
		return c.fail("events", err)
	}
	return code
}

// writeImage writes the answer of --at for people: the state, where it
// comes from, and the row one column a line.
func writeImage(w io.Writer, im *history.Image) error {
	bw := bufio.NewWriter(w)
	state := map[history.State]string{history.Exists: "existed", history.Gone: "did not exist", history.Unknown: "unknown"}[im.State]
	fmt.Fprintf(bw, "%s at %s: %s\n", cell(im.Ref.String()), audit.AppendTime(nil, im.At), state)
	fmt.Fprintf(bw, "  %s", cell(im.Reason()))
	if e := im.Event; e != nil && e.BeforeSource != "" {
		fmt.Fprintf(bw, " (before_source %s)", cell(e.BeforeSource))
	}
	bw.WriteString("\n")
	if e := im.Next; e != nil && im.State != history.Unknown {
		fmt.Fprintf(bw, "  until %s %s at %s\n", e.Op, e.ID, audit.AppendTime(nil, e.CommitTime))
	}
	if im.State == history.Exists {
		bw.WriteString("\n")
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		members, err := history.Columns(im.Row)
		if err != nil {
			return err
		}
		for _, m := range members {
			fmt.Fprintf(tw, "  %s\t%s\n", cell(m.Name), cell(string(m.Value)))
		}
		for _, name := range im.Missing {
			fmt.Fprintf(tw, "  %s\t? (not known: a large value that did not change, which the server did not send and no earlier event holds)\n", cell(name))
		}
		tw.Flush()
	}
	return bw.Flush()
}

// storedEvent decodes what the history table shows of a stored event.
func storedEvent(e *history.Event) (*audit.Event, error) {
	ev, err := history.EventOf(e.Record)
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", e.ID, err)
	}
	return ev, nil
}

// changeText sums an event up for the history table: a key change, then
// what changed as the live feed shows it, then its flags.
func changeText(e *history.Event, ev *audit.Event) string {
	var parts []string
	if e.PrevKey != nil {
		parts = append(parts, "key "+string(e.PrevKey)+" → "+string(e.Key))
	}
	switch e.Op {
	case audit.OpSnapshot:
		parts = append(parts, "read: "+rowText(ev.After, "=", " "))
	case audit.OpDelete:
		parts = append(parts, "deleted")
		if d := changes(ev); d != "" {
			parts = append(parts, d)
		}
	default:
		parts = append(parts, changes(ev))
	}
	for _, f := range ev.Flags {
		parts = append(parts, "["+clean(f)+"]")
	}
	return truncate(strings.Join(parts, " · "), maxChange)
}

// maxChange bounds the CHANGE cell of the history table.
const maxChange = 120
