package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cdcaudit/cdcaudit/audit"
)

// feed prints audit events as they become durable, one line each:
//
//	13:34:33 UPDATE   public.sale_order        id=42     state: draft → sale · amount_total: 120.00 → 130.00 · uid 3
type feed struct {
	mu    sync.Mutex
	w     io.Writer
	color bool
	width int
	loc   *time.Location
	// line renders an event; f.format unless set (the demo sets its own).
	line func(*audit.Event) string

	events uint64
	txs    uint64
	lastTx uint64 // commit LSN of the last transaction seen

	seen      map[uint32]struct{} // XIDs of recent transactions
	seenOrder []uint32
	seenCond  *sync.Cond
}

func newFeed(w io.Writer, color bool, width int) *feed {
	f := &feed{w: w, color: color, width: width, loc: time.Local, seen: map[uint32]struct{}{}}
	f.seenCond = sync.NewCond(&f.mu)
	return f
}

const seenXIDs = 4096

// print is the pipeline's Feed callback.
func (f *feed) print(e *audit.Event) {
	render := f.format
	if f.line != nil {
		render = f.line
	}
	line := render(e)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events++
	if e.CommitLSN != f.lastTx {
		f.txs++
		f.lastTx = e.CommitLSN
	}
	if _, ok := f.seen[e.XID]; !ok {
		f.seen[e.XID] = struct{}{}
		f.seenOrder = append(f.seenOrder, e.XID)
		if len(f.seenOrder) > seenXIDs {
			delete(f.seen, f.seenOrder[0])
			f.seenOrder = f.seenOrder[1:]
		}
		f.seenCond.Broadcast()
	}
	fmt.Fprintln(f.w, line)
}

// println prints a line of its own (status, banners) between events.
func (f *feed) println(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintln(f.w, s)
}

func (f *feed) counts() (events, txs uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.events, f.txs
}

// waitXID waits until an event of transaction xid was printed, or timeout.
func (f *feed) waitXID(xid uint32, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	t := time.AfterFunc(timeout, func() {
		f.mu.Lock()
		f.seenCond.Broadcast()
		f.mu.Unlock()
	})
	defer t.Stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		if _, ok := f.seen[xid]; ok {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		f.seenCond.Wait()
	}
}

const (
	colTime  = 8
	colOp    = 8
	colTable = 26
	colKey   = 9
)

// header returns the column titles.
func (f *feed) header() string {
	h := fmt.Sprintf("%-*s %-*s %-*s %-*s %s", colTime, "TIME", colOp, "OP", colTable, "TABLE", colKey, "KEY", "CHANGES")
	return paint(f.color, ansiBold, truncate(h, f.width))
}

// format renders one event as a line of at most f.width columns.
func (f *feed) format(e *audit.Event) string {
	ts := e.CommitTime.In(f.loc).Format("15:04:05")
	op := strings.ToUpper(e.Op.String())
	table := clean(e.Schema) + "." + clean(e.Table)
	key := rowText(e.Key, "=", " ")
	if e.Op == audit.OpTruncate {
		key = "—"
	}
	detail := details(e)

	// Fixed columns grow when a value is longer; the detail takes the rest.
	plain := fmt.Sprintf("%-*s %-*s %-*s %-*s ", colTime, ts, colOp, op, colTable, table, colKey, key)
	room := f.width - utf8.RuneCountInString(plain)
	if room < 10 {
		return truncate(plain+detail, f.width)
	}
	detail = truncate(detail, room)
	if !f.color {
		return plain + detail
	}
	style := map[audit.Op]string{audit.OpInsert: ansiGreen, audit.OpUpdate: ansiYellow, audit.OpDelete: ansiRed, audit.OpTruncate: ansiPurple + ansiBold}[e.Op]
	return paint(true, ansiDim, fmt.Sprintf("%-*s", colTime, ts)) + " " +
		paint(true, style, fmt.Sprintf("%-*s", colOp, op)) + " " +
		paint(true, ansiBold, fmt.Sprintf("%-*s", colTable, table)) + " " +
		paint(true, ansiCyan, fmt.Sprintf("%-*s", colKey, key)) + " " +
		strings.ReplaceAll(detail, " → ", paint(true, ansiDim, " → "))
}

// auditColumns are bookkeeping columns shown only as the "uid" suffix.
var auditColumns = map[string]bool{"create_uid": true, "create_date": true, "write_uid": true, "write_date": true}

func details(e *audit.Event) string {
	var parts []string
	keyCols := map[string]bool{}
	for _, c := range e.Key {
		keyCols[c.Name] = true
	}
	switch e.Op {
	case audit.OpInsert:
		for _, c := range e.After {
			if keyCols[c.Name] || auditColumns[c.Name] || string(c.Value) == "null" {
				continue
			}
			parts = append(parts, clean(c.Name)+"="+valueText(c.Value))
		}
	case audit.OpUpdate:
		if e.Changed == nil { // no complete before-image: show the new values
			for _, c := range e.After {
				if !keyCols[c.Name] && !auditColumns[c.Name] {
					parts = append(parts, clean(c.Name)+"="+valueText(c.Value))
				}
			}
			parts = append(parts, "(no before-image)")
			break
		}
		for _, name := range e.Changed {
			if name == "write_date" || name == "write_uid" {
				continue
			}
			old, _ := e.Before.Get(name)
			nw, ok := e.After.Get(name)
			if !ok {
				parts = append(parts, clean(name)+": (unchanged TOAST)")
				continue
			}
			parts = append(parts, clean(name)+": "+valueText(old)+" → "+valueText(nw))
		}
		if len(parts) == 0 && len(e.Changed) > 0 {
			parts = append(parts, "touched ("+strings.Join(e.Changed, ", ")+")")
		}
		if len(e.Changed) == 0 {
			parts = append(parts, "no column changed")
		}
	case audit.OpDelete:
		if e.Before == nil {
			parts = append(parts, "(key only: REPLICA IDENTITY DEFAULT)")
		}
		for _, c := range e.Before {
			if keyCols[c.Name] || auditColumns[c.Name] || string(c.Value) == "null" {
				continue
			}
			parts = append(parts, clean(c.Name)+"="+valueText(c.Value))
		}
	case audit.OpTruncate:
		parts = append(parts, "all rows removed")
	}
	s := strings.Join(parts, " · ")
	// Who, as far as the row itself tells (the deleter is never the
	// before-image's write_uid, so deletes show none).
	var uid []byte
	if e.Actor.UserID != nil {
		uid = []byte(strconv.FormatInt(*e.Actor.UserID, 10))
		if e.Actor.Login != "" {
			uid = append(uid, " "+clean(e.Actor.Login)...)
		}
	} else if e.Op == audit.OpInsert || e.Op == audit.OpUpdate && slices.Contains(e.Changed, "write_date") {
		// An update that left write_date alone did not come through the
		// application: its write_uid is the previous writer's.
		if v, ok := e.After.Get("write_uid"); ok && string(v) != "null" {
			uid = v
		}
	}
	if uid != nil {
		s += " · uid " + string(uid)
	}
	for _, fl := range e.Flags {
		s += " [" + clean(fl) + "]"
	}
	return s
}

// rowText renders a row as name=value pairs.
func rowText(r audit.Row, eq, sep string) string {
	var b strings.Builder
	for i, c := range r {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(clean(c.Name))
		b.WriteString(eq)
		b.WriteString(valueText(c.Value))
	}
	return b.String()
}

const maxValue = 32

// valueText renders an encoded JSON value for people: strings without
// quotes unless they need them, NULL, long values shortened.
func valueText(v []byte) string {
	if v == nil {
		return "?"
	}
	switch {
	case string(v) == "null":
		return "NULL"
	case len(v) > 0 && v[0] == '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return truncate(string(v), maxValue)
		}
		needQuote := s == "" || s == "NULL" || strings.ContainsAny(s, " \"·→=") ||
			strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }) >= 0
		s = truncate(s, maxValue)
		if needQuote {
			return strconv.Quote(s)
		}
		return s
	default:
		var b bytes.Buffer
		if json.Compact(&b, v) == nil {
			v = b.Bytes()
		}
		return truncate(string(v), maxValue)
	}
}

// truncate shortens s to n runes, ending with "…" when cut.
func truncate(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	cut := strings.TrimRight(string(r[:n-1]), " ·")
	if strings.HasSuffix(cut, "…") {
		return cut
	}
	return cut + "…"
}

// clean replaces control characters (a quoted identifier may hold any) so
// that nothing from the database can drive the terminal.
func clean(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}
