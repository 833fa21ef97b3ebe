package main

import (
	"bytes"
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

func TestFeedFormat(t *testing.T) {
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
		}, `13:34:33 INSERT   public.res_partner         id=7      name="Azure Interior" · city=Lyon · is_company=true · credit_limit=5000.00 · uid 3`},
		{"update", func(e *audit.Event) {
			e.Table, e.Op = "sale_order", audit.OpUpdate
			e.Key = row("id", "42")
			e.Before = row("id", "42", "state", `"draft"`, "amount_total", `"120.00"`, "write_uid", "2", "write_date", `"a"`)
			e.After = row("id", "42", "state", `"sale"`, "amount_total", `"130.00"`, "write_uid", "6", "write_date", `"b"`)
			e.Changed = []string{"state", "amount_total", "write_uid", "write_date"}
		}, `13:34:33 UPDATE   public.sale_order          id=42     state: draft → sale · amount_total: 120.00 → 130.00 · uid 6`},
		{"update by raw SQL", func(e *audit.Event) {
			e.Table, e.Op = "sale_order", audit.OpUpdate
			e.Key = row("id", "42")
			e.Before = row("id", "42", "note", `null`, "write_uid", "2")
			e.After = row("id", "42", "note", `"adjusted by hand"`, "write_uid", "2")
			e.Changed = []string{"note"}
			e.Flags = []string{"orm_bypass"}
		}, `13:34:33 UPDATE   public.sale_order          id=42     note: NULL → "adjusted by hand" [orm_bypass]`},
		{"delete", func(e *audit.Event) {
			e.Table, e.Op = "sale_order_line", audit.OpDelete
			e.Key = row("id", "9")
			e.Before = row("id", "9", "product", `"Office Chair"`, "quantity", `"2.00"`, "write_uid", "4")
		}, `13:34:33 DELETE   public.sale_order_line     id=9      product="Office Chair" · quantity=2.00`},
		{"delete without before-image", func(e *audit.Event) {
			e.Table, e.Op = "t", audit.OpDelete
			e.Key = row("id", "9")
		}, `13:34:33 DELETE   public.t                   id=9      (key only: REPLICA IDENTITY DEFAULT)`},
		{"truncate", func(e *audit.Event) {
			e.Table, e.Op = "demo_scratch", audit.OpTruncate
		}, `13:34:33 TRUNCATE public.demo_scratch        —         all rows removed`},
		{"control characters", func(e *audit.Event) {
			e.Table, e.Op = "evil\x1b[2J", audit.OpInsert
			e.Key = row("id", "1")
			e.After = row("id", "1", "x\x07", `"\u001b[31mred\nline"`)
		}, `13:34:33 INSERT   public.evil?[2J            id=1      x?="\x1b[31mred\nline"`},
	}
	for _, tc := range cases {
		e := base
		tc.e(&e)
		f := newFeed(nil, false, 200)
		f.loc = time.UTC
		if got := f.format(&e); got != tc.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestFeedWidthAndColor(t *testing.T) {
	e := &audit.Event{CommitLSN: 1, Ordinal: 1, CommitTime: time.Now(), Schema: "public", Table: "res_partner", Op: audit.OpInsert,
		Key: row("id", "1"), After: row("id", "1", "name", `"`+strings.Repeat("x", 100)+`"`, "city", `"`+strings.Repeat("é", 100)+`"`)}
	for _, w := range []int{40, 80, 120} {
		f := newFeed(nil, false, w)
		if got := f.format(e); utf8.RuneCountInString(got) > w || !strings.HasSuffix(got, "…") {
			t.Errorf("width %d: %d runes: %q", w, utf8.RuneCountInString(got), got)
		}
	}
	f := newFeed(nil, true, 80)
	got := f.format(e)
	if !strings.Contains(got, ansiGreen+"INSERT") {
		t.Errorf("no colour: %q", got)
	}
	// Colour codes do not count against the width.
	plain := got
	for _, code := range []string{ansiReset, ansiBold, ansiDim, ansiGreen, ansiCyan} {
		plain = strings.ReplaceAll(plain, code, "")
	}
	if utf8.RuneCountInString(plain) > 80 {
		t.Errorf("coloured line is %d columns wide", utf8.RuneCountInString(plain))
	}
}

func TestFeedPrintCountsAndWaits(t *testing.T) {
	var b bytes.Buffer
	f := newFeed(&b, false, 120)
	go func() {
		time.Sleep(50 * time.Millisecond)
		for i, xid := range []uint32{10, 10, 11} {
			f.print(&audit.Event{CommitLSN: uint64(xid) * 100, Ordinal: uint32(i + 1), XID: xid, CommitTime: time.Now(),
				Schema: "public", Table: "t", Op: audit.OpTruncate})
		}
	}()
	if !f.waitXID(11, 5*time.Second) {
		t.Fatal("waitXID(11) timed out")
	}
	if f.waitXID(12, 100*time.Millisecond) {
		t.Fatal("waitXID(12) returned true")
	}
	if ev, tx := f.counts(); ev != 3 || tx != 2 {
		t.Errorf("counts: %d events, %d transactions", ev, tx)
	}
	if n := strings.Count(b.String(), "\n"); n != 3 {
		t.Errorf("%d lines printed", n)
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
