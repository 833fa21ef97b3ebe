package main

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cdcaudit/cdcaudit/audit"
)

func row(kv ...string) audit.Row {
	var r audit.Row
	for i := 0; i+1 < len(kv); i += 2 {
		r = append(r, audit.Column{Name: kv[i], Value: []byte(kv[i+1])})
	}
	return r
}

// TestLineFormatValues: each kind of change shows its values (bookkeeping
// columns and keys left out), unattributed changes say none, psql edits are
// flagged, and nothing from the database can drive the terminal.
func TestLineFormatValues(t *testing.T) {
	ct := time.Date(2026, 11, 23, 13, 34, 33, 0, time.UTC)
	base := audit.Event{CommitLSN: 0x16B3800, Ordinal: 1, XID: 741, CommitTime: ct, Schema: "public"}
	cases := []struct {
		name string
		e    func(e *audit.Event)
		want string
	}{
		{"insert", func(e *audit.Event) {
			e.Table, e.Op = "res_partner", audit.OpInsert
			e.Key = row("id", "7")
			e.After = row("id", "7", "name", `"Azure Interior"`, "email", "null", "city", `"Lyon"`, "is_company", "true",
				"credit_limit", `"5000.00"`, "create_uid", "3", "write_uid", "3", "write_date", `"2026-11-23 13:34:33.1"`)
		}, `13:34:33 INSERT   res_partner      id=7     none                                             name="Azure Interior" · city=Lyon · is_company=true · credit_limit=5000.00`},
		{"update", func(e *audit.Event) {
			e.Table, e.Op = "sale_order", audit.OpUpdate
			e.Key = row("id", "42")
			e.Before = row("id", "42", "state", `"draft"`, "amount_total", `"120.00"`, "write_uid", "2", "write_date", `"a"`)
			e.After = row("id", "42", "state", `"sale"`, "amount_total", `"130.00"`, "write_uid", "6", "write_date", `"b"`)
			e.Changed = []string{"state", "amount_total", "write_uid", "write_date"}
		}, `13:34:33 UPDATE   sale_order       id=42    none                                             state: draft → sale · amount_total: 120.00 → 130.00`},
		{"update by raw SQL", func(e *audit.Event) {
			e.Table, e.Op = "sale_order", audit.OpUpdate
			e.Key = row("id", "42")
			e.Before = row("id", "42", "note", `null`, "write_uid", "2")
			e.After = row("id", "42", "note", `"adjusted by hand"`, "write_uid", "2")
			e.Changed = []string{"note"}
			e.Flags = []string{"orm_bypass"}
		}, `13:34:33 UPDATE   sale_order       id=42    none                                             ⚠ ORM BYPASS note: NULL → "adjusted by hand"`},
		{"delete", func(e *audit.Event) {
			e.Table, e.Op = "sale_order_line", audit.OpDelete
			e.Key = row("id", "9")
			e.Before = row("id", "9", "product", `"Office Chair"`, "quantity", `"2.00"`, "write_uid", "4")
		}, `13:34:33 DELETE   sale_order_line  id=9     none                                             product="Office Chair" · quantity=2.00`},
		{"delete without before-image", func(e *audit.Event) {
			e.Table, e.Op = "t", audit.OpDelete
			e.Key = row("id", "9")
		}, `13:34:33 DELETE   t                id=9     none                                             (key only: REPLICA IDENTITY DEFAULT)`},
		{"truncate", func(e *audit.Event) {
			e.Schema, e.Table, e.Op = "scratch", "demo_scratch", audit.OpTruncate
		}, `13:34:33 TRUNCATE scratch.demo_scratch —        none                                             all rows removed`},
		{"control characters", func(e *audit.Event) {
			e.Table, e.Op = "evil\x1b[2J", audit.OpInsert
			e.Key = row("id", "1")
			e.After = row("id", "1", "x\x07", `"\u001b[31mred\nline"`)
		}, `13:34:33 INSERT   evil?[2J         id=1     none                                             x?="\x1b[31mred\nline"`},
	}
	for _, tc := range cases {
		e := base
		tc.e(&e)
		f := newLineFormat(false, 180)
		f.loc = time.UTC
		if got := f.format(&e); got != tc.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestLineFormatWidthAndColor(t *testing.T) {
	e := &audit.Event{CommitLSN: 1, Ordinal: 1, CommitTime: time.Now(), Schema: "public", Table: "res_partner", Op: audit.OpInsert,
		Key: row("id", "1"), After: row("id", "1", "name", `"`+strings.Repeat("x", 100)+`"`, "city", `"`+strings.Repeat("é", 100)+`"`)}
	for _, w := range []int{40, 80, 120} {
		f := newLineFormat(false, w)
		if got := f.format(e); utf8.RuneCountInString(got) > w || !strings.HasSuffix(got, "…") {
			t.Errorf("width %d: %d runes: %q", w, utf8.RuneCountInString(got), got)
		}
	}
	f := newLineFormat(true, 130)
	got := f.format(e)
	if !strings.Contains(got, ansiGreen+"INSERT") {
		t.Errorf("no colour: %q", got)
	}
	// Colour codes do not count against the width.
	plain := got
	for _, code := range []string{ansiReset, ansiBold, ansiDim, ansiGreen, ansiCyan} {
		plain = strings.ReplaceAll(plain, code, "")
	}
	if utf8.RuneCountInString(plain) > 130 {
		t.Errorf("coloured line is %d columns wide", utf8.RuneCountInString(plain))
	}
}

func TestValueText(t *testing.T) {
	for in, want := range map[string]string{
		`null`:                              "NULL",
		`"NULL"`:                            `"NULL"`,
		`""`:                                `""`,
		`"plain"`:                           "plain",
		`"two words"`:                       `"two words"`,
		`42`:                                "42",
		`{"a": [1, 2]}`:                     `{"a":[1,2]}`,
		`"` + strings.Repeat("a", 40) + `"`: strings.Repeat("a", 31) + "…",
	} {
		if got := valueText([]byte(in)); got != want {
			t.Errorf("valueText(%s) = %q, want %q", in, got, want)
		}
	}
}

// TestLineFormatWho: the line says who, in which session, how
// cdcaudit knows, and flags psql edits.
func TestLineFormatWho(t *testing.T) {
	ct := time.Date(2026, 11, 23, 13, 34, 33, 0, time.UTC)
	uid := int64(6)
	cases := []struct {
		name  string
		width int
		e     audit.Event
		want  string
	}{
		{"attributed", 120, audit.Event{Table: "sale_order", Model: "sale.order", Op: audit.OpUpdate, Key: row("id", "4"),
			Before:  row("id", "4", "state", `"draft"`, "write_uid", "2", "write_date", `"a"`),
			After:   row("id", "4", "state", `"sale"`, "write_uid", "6", "write_date", `"b"`),
			Changed: []string{"state", "write_uid", "write_date"},
			Actor:   audit.Actor{UserID: &uid, Login: "alice@example.com", UserVia: "row_user", SessionID: "s1a6ca8bcb54cd696e1e397e9", SessionVia: "only_active"}},
			`13:34:33 UPDATE   sale.order       id=4     alice #s1a6ca8 row_user/only_active  state: draft → sale`},
		{"wide terminal: the whole login", 160, audit.Event{Table: "sale_order", Model: "sale.order", Op: audit.OpUpdate, Key: row("id", "4"),
			Before:  row("id", "4", "state", `"draft"`),
			After:   row("id", "4", "state", `"sale"`),
			Changed: []string{"state"},
			Actor:   audit.Actor{UserID: &uid, Login: "alice@example.com", UserVia: "session_row", SessionID: "s1a6ca8bcb54cd696e1e397e9", SessionVia: "same_tx"}},
			`13:34:33 UPDATE   sale.order       id=4     alice@example.com #s1a6ca8 session_row/same_tx   state: draft → sale`},
		{"psql edit", 130, audit.Event{Table: "sale_order", Op: audit.OpUpdate, Key: row("id", "2"),
			Before:  row("id", "2", "amount_total", `"2843.50"`, "write_uid", "6"),
			After:   row("id", "2", "amount_total", `"1.00"`, "write_uid", "6"),
			Changed: []string{"amount_total"}, Flags: []string{"orm_bypass"},
			Actor: audit.Actor{UserVia: "none", SessionVia: "none"}},
			`13:34:33 UPDATE   sale_order       id=2     none                                 ⚠ ORM BYPASS amount_total: 2843.50 → 1.00`},
		{"device row, secrets last", 130, audit.Event{Table: "res_device_log", Model: "res.device.log", Op: audit.OpInsert, Key: row("id", "1"),
			After:    row("id", "1", "session_identifier", `"[redacted]"`, "platform", `"linux"`),
			Redacted: []string{"session_identifier"},
			Actor:    audit.Actor{UserID: &uid, Login: "alice@example.com", UserVia: "session_row", SessionID: "s1a6ca8bcb54cd696e1e397e9", SessionVia: "same_tx"}},
			`13:34:33 INSERT   res.device.log   id=1     alice #s1a6ca8 session_row/same_tx   platform=linux · session_identifier=[redacted]`},
	}
	for _, tc := range cases {
		e := tc.e
		e.CommitTime, e.Schema, e.CommitLSN, e.Ordinal = ct, "public", 1, 1
		f := newLineFormat(false, tc.width)
		f.loc = time.UTC
		if got := f.format(&e); got != tc.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.name, got, tc.want)
		}
	}
}
