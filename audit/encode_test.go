package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func sampleEvent() *Event {
	uid := int64(6)
	return &Event{
		LSN: 0x16B37A0, CommitLSN: 0x16B3800, Ordinal: 3, XID: 741,
		CommitTime: time.Date(2026, 11, 23, 13, 34, 33, 559831000, time.UTC),
		Database:   "odoo", Schema: "public", Table: "sale_order", Model: "sale.order",
		Op:      OpUpdate,
		Key:     Row{{"id", []byte("42")}},
		Before:  Row{{"id", []byte("42")}, {"state", []byte(`"draft"`)}},
		After:   Row{{"id", []byte("42")}, {"state", []byte(`"sale"`)}},
		Changed: []string{"state"},
		Actor:   Actor{UserID: &uid, Login: "alice@example.com", UserVia: "row_user", SessionVia: "none"},
	}
}

func TestIDAndLSN(t *testing.T) {
	if got := FormatID(0x16B3800, 3); got != "00000000016B3800-000003" {
		t.Fatalf("FormatID = %s", got)
	}
	lsn, ord, err := ParseID("00000000016B3800-000003")
	if err != nil || lsn != 0x16B3800 || ord != 3 {
		t.Fatalf("ParseID = %x %d %v", lsn, ord, err)
	}
	if got := FormatLSN(0x16_B374D848); got != "16/B374D848" {
		t.Fatalf("FormatLSN = %s", got)
	}
	if got := string(AppendLSN([]byte("ab"), 0xAB)); got != "ab0/AB" {
		t.Fatalf("AppendLSN must not touch the prefix: %s", got)
	}
	if v, err := ParseLSN("16/B374D848"); err != nil || v != 0x16_B374D848 {
		t.Fatalf("ParseLSN = %x %v", v, err)
	}
	for _, bad := range []string{"", "16", "x/1", "1/", "100000000/0"} {
		if _, err := ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) accepted", bad)
		}
	}
}

func TestSealAndCheck(t *testing.T) {
	e := sampleEvent()
	body := e.AppendBody(nil)
	rec, h := Seal(nil, body, Genesis)
	if len(rec) != SealedLen(len(body)) {
		t.Fatalf("SealedLen %d != %d", SealedLen(len(body)), len(rec))
	}
	var r Record
	if err := json.Unmarshal(rec, &r); err != nil {
		t.Fatalf("record is not JSON: %v\n%s", err, rec)
	}
	if r.ID != "00000000016B3800-000003" || r.LSN != "0/16B37A0" || r.Op != "update" || *r.Model != "sale.order" || r.Hash != h.String() {
		t.Fatalf("unexpected record %+v", r)
	}
	if r.PrevHash != strings.Repeat("0", 64) {
		t.Fatalf("prev_hash %s", r.PrevHash)
	}
	if !strings.Contains(string(rec), `"commit_time":"2026-11-23T13:34:33.559831Z"`) {
		t.Fatalf("commit_time format: %s", rec)
	}
	id, prev, h2, err := Check(rec)
	if err != nil || id != r.ID || prev != Genesis || h2 != h {
		t.Fatalf("Check: %s %v %v", id, err, h2 == h)
	}
	rec2, h3 := Seal(nil, body, h)
	if h3 == h {
		t.Fatal("prev hash does not feed the hash")
	}
	if _, prev, _, err := Check(rec2); err != nil || prev != h {
		t.Fatalf("Check chained: %v", err)
	}
	// Any single changed byte is detected (or makes the record malformed).
	for i := range rec {
		bad := append([]byte(nil), rec...)
		bad[i] ^= 0x01
		if _, _, _, err := Check(bad); err == nil {
			// flipping a hex digit's case is the only harmless change: a-f vs A-F decode equally
			if strings.EqualFold(string(bad), string(rec)) {
				continue
			}
			t.Fatalf("byte %d altered (%q) and Check passed", i, bad[i])
		}
	}
}

func TestNullsAndEmpty(t *testing.T) {
	e := &Event{CommitLSN: 1, Ordinal: 1, Op: OpTruncate, Schema: "s", Table: "t", CommitTime: time.Unix(0, 0)}
	rec, _ := Seal(nil, e.AppendBody(nil), Genesis)
	var m map[string]any
	if err := json.Unmarshal(rec, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"key", "before", "after", "model", "changed"} {
		if m[k] != nil {
			t.Errorf("%s = %v, want null", k, m[k])
		}
	}
	for _, k := range []string{"unchanged_toast", "redacted", "flags"} {
		if a, ok := m[k].([]any); !ok || len(a) != 0 {
			t.Errorf("%s = %v, want []", k, m[k])
		}
	}
	actor := m["actor"].(map[string]any)
	if actor["user_via"] != "none" || actor["session_via"] != "none" || actor["user_id"] != nil {
		t.Errorf("actor = %v", actor)
	}
}

func TestAppendStringMatchesJSON(t *testing.T) {
	cases := []string{"", "plain", `q"uote\back`, "new\nline\ttab\r", "\x00\x1f", "ünïcødé ✓ 𝄞",
		"\u2028\u2029", "bad\xffutf8\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80", "<&>"}
	for _, c := range cases {
		got := AppendString(nil, c)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q -> %s: %v", c, got, err)
		}
		want := strings.ToValidUTF8(c, "\ufffd")
		if utf8.ValidString(c) && back != c {
			t.Errorf("%q round-tripped to %q", c, back)
		}
		if !utf8.ValidString(c) && !utf8.ValidString(back) {
			t.Errorf("%q gave invalid UTF-8 %q (want like %q)", c, back, want)
		}
		if gotB := AppendString(nil, []byte(c)); string(gotB) != string(got) {
			t.Errorf("[]byte and string differ for %q", c)
		}
		if n := StringLen(c); n != len(got) {
			t.Errorf("StringLen(%q) = %d, AppendString made %d bytes", c, n, len(got))
		}
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("hello\n\"x\"\xff")
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, out, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("%q round-tripped to %q", s, back)
		}
		if n := StringLen([]byte(s)); n != len(out) {
			t.Fatalf("StringLen(%q) = %d, AppendString made %d bytes", s, n, len(out))
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	e := sampleEvent()
	var prev Hash
	buf := make([]byte, 0, 4096)
	body := make([]byte, 0, 4096)
	for b.Loop() {
		body = e.AppendBody(body[:0])
		buf, prev = Seal(buf[:0], body, prev)
	}
}

func TestIDOrderWithHugeTransactions(t *testing.T) {
	ords := []uint32{1, 2, 999_999, 1_000_000, 1_000_001, 4_294_967_295}
	prev := ""
	for _, o := range ords {
		id := FormatID(0x10, o)
		if prev != "" && !(prev < id) {
			t.Fatalf("id %s does not sort after %s", id, prev)
		}
		lsn, back, err := ParseID(id)
		if err != nil || back != o || lsn != 0x10 {
			t.Fatalf("ParseID(%s) = %d %v", id, back, err)
		}
		e := &Event{CommitLSN: 0x10, Ordinal: o, Op: OpInsert, CommitTime: time.Unix(0, 0)}
		rec, _ := Seal(nil, e.AppendBody(nil), Genesis)
		if gotID, _, _, err := Check(rec); err != nil || gotID != id {
			t.Fatalf("Check id %s %v", gotID, err)
		}
		prev = id
	}
	if _, _, err := ParseID("0000000000000010-0999999"); err == nil {
		t.Fatal("a 7-digit ordinal without the marker must be rejected")
	}
}

func TestSealIntoNonEmptyBuffer(t *testing.T) {
	body := sampleEvent().AppendBody(nil)
	_, want := Seal(nil, body, Genesis)
	rec, got := Seal([]byte("prefix-bytes"), body, Genesis)
	if got != want {
		t.Fatal("Seal hashed bytes it did not append")
	}
	if _, _, h, err := Check(rec[len("prefix-bytes"):]); err != nil || h != want {
		t.Fatalf("Check: %v", err)
	}
}

func TestSealInPlace(t *testing.T) {
	body := sampleEvent().AppendBody(nil)
	want, wantH := Seal(nil, body, Genesis)
	owned := make([]byte, len(body), SealedLen(len(body)))
	copy(owned, body)
	got, h := SealInPlace(owned, Genesis)
	if string(got) != string(want) || h != wantH {
		t.Fatalf("SealInPlace differs from Seal:\n%s\n%s", got, want)
	}
	if &got[0] != &owned[0] {
		t.Fatal("SealInPlace copied although the body had room")
	}
}

// actor.candidates appears only when there is something to list, bounded,
// and stays covered by the hash; an event without candidates encodes as
// before the member existed.
func TestCandidates(t *testing.T) {
	e := &Event{CommitLSN: 1, Ordinal: 1, Op: OpDelete, Schema: "s", Table: "t", CommitTime: time.Unix(0, 0)}
	plain := string(e.AppendBody(nil))
	if !strings.Contains(plain, `"session_via":"none"},"flags"`) {
		t.Fatalf("no candidates changed the actor: %s", plain)
	}
	e.Actor.Candidates = &Candidates{}
	if got := string(e.AppendBody(nil)); got != plain {
		t.Fatalf("empty candidates changed the encoding:\n%s\n%s", got, plain)
	}
	e.Actor.Candidates = &Candidates{Users: []CandidateUser{{ID: 6, Login: "alice"}, {ID: 9}}}
	rec, _ := Seal(nil, e.AppendBody(nil), Genesis)
	if _, _, _, err := Check(rec); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rec), `"session_via":"none","candidates":{"users":[{"id":6,"login":"alice"},{"id":9,"login":null}]}},"flags"`) {
		t.Fatalf("users: %s", rec)
	}
	var many []string
	for i := range 40 {
		many = append(many, fmt.Sprintf("s%02d", i))
	}
	e.Actor.Candidates = &Candidates{Sessions: many}
	rec, _ = Seal(nil, e.AppendBody(nil), Genesis)
	var m struct {
		Actor struct {
			Candidates struct {
				Users    []any    `json:"users"`
				Sessions []string `json:"sessions"`
			} `json:"candidates"`
		} `json:"actor"`
	}
	if err := json.Unmarshal(rec, &m); err != nil {
		t.Fatal(err)
	}
	if s := m.Actor.Candidates.Sessions; len(s) != MaxCandidates || s[0] != "s00" || m.Actor.Candidates.Users != nil {
		t.Fatalf("sessions: %s", rec)
	}
}

func TestVisibilitySees(t *testing.T) {
	v := &Visibility{Xmin: 100, Xmax: 110, Xip: []uint64{103, 107}}
	for xid, want := range map[uint32]bool{0: true, 5: true, 99: true, 100: true, 103: false, 105: true, 107: false, 109: true, 110: false, 200: false} {
		if got := v.Sees(xid); got != want {
			t.Errorf("Sees(%d) = %v, want %v", xid, got, want)
		}
	}
	// Across an epoch: Xmax just past 2^32.
	w := &Visibility{Xmin: 1<<32 - 5, Xmax: 1<<32 + 3, Xip: []uint64{1<<32 + 1}}
	for xid, want := range map[uint32]bool{0xFFFFFFFD: true, 0xFFFFFFFF: true, 2: true, 1: false, 3: false, 4: false} {
		if got := w.Sees(xid); got != want {
			t.Errorf("epoch: Sees(%#x) = %v, want %v", xid, got, want)
		}
	}
}

// before_source follows before on update and delete events only, is read
// back by ParseRecord, and an event without it encodes as it always did.
func TestBeforeSource(t *testing.T) {
	e := sampleEvent()
	plain := string(e.AppendBody(nil))
	if strings.Contains(plain, "before_source") {
		t.Fatalf("unset before_source encoded: %s", plain)
	}
	for src, want := range map[BeforeSource]string{BeforeWAL: "wal", BeforeReconstructed: "reconstructed", BeforeUnknown: "unknown"} {
		e.BeforeSource = src
		rec, _ := Seal(nil, e.AppendBody(nil), Genesis)
		if _, _, _, err := Check(rec); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(rec), `"before":{"id":42,"state":"draft"},"before_source":"`+want+`","after":`) {
			t.Fatalf("%s: %s", want, rec)
		}
		r, err := ParseRecord(rec)
		if err != nil || r.BeforeSource != want {
			t.Fatalf("read back %q, %v", r.BeforeSource, err)
		}
		if got := strings.Replace(string(e.AppendBody(nil)), `,"before_source":"`+want+`"`, "", 1); got != plain {
			t.Fatalf("before_source changed more than its member:\n%s\n%s", got, plain)
		}
	}
	for _, op := range []Op{OpInsert, OpTruncate, OpSnapshot} {
		e.Op = op
		if b := string(e.AppendBody(nil)); strings.Contains(b, "before_source") {
			t.Fatalf("%s carries before_source: %s", op, b)
		}
	}
	if r, _ := ParseRecord([]byte(plain[:len(plain)-1] + "}")); r == nil || r.BeforeSource != "" {
		t.Fatalf("old record: %+v", r)
	}
}

// BenchmarkAppendBody encodes a FULL update of a 15-column ERP row (the
// bench's), without sealing it.
func BenchmarkAppendBody(b *testing.B) {
	e := sampleEvent()
	names := []string{"id", "order_id", "product_id", "name", "product_uom_qty", "price_unit", "discount", "price_subtotal",
		"state", "sequence", "is_downpayment", "create_uid", "create_date", "write_uid", "write_date"}
	before := []string{"4242", "424", "254", `"Product 4242 — \"Widget\", size L"`, `"42.500"`, `"54.34"`, `"0.00"`, `"2309.45"`,
		`"draft"`, "2", "false", "2", `"2026-12-03 11:30:00.123456"`, "2", `"2026-12-03 11:30:00.123456"`}
	e.Before, e.After = nil, nil
	for i, n := range names {
		e.Before = append(e.Before, Column{n, []byte(before[i])})
		v := before[i]
		switch n {
		case "state":
			v = `"sale"`
		case "discount":
			v = `"5.00"`
		case "write_uid":
			v = "6"
		}
		e.After = append(e.After, Column{n, []byte(v)})
	}
	e.Changed = []string{"discount", "state", "write_date", "write_uid"}
	body := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		body = e.AppendBody(body[:0])
	}
	b.SetBytes(int64(len(body)))
}

// appendStringRef is AppendString's rule, rune by rune: the reference the
// eight-bytes-at-a-time path must match byte for byte.
func appendStringRef(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r == '\t':
			b = append(b, `\t`...)
		case r < 0x20:
			b = append(b, fmt.Sprintf(`\u%04x`, r)...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, fmt.Sprintf(`\u%04x`, r)...)
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// Every byte that needs care, at every offset of a word and across word
// boundaries, in strings of plain text.
func TestAppendStringMatchesTheReference(t *testing.T) {
	specials := []string{"\"", "\\", "\n", "\x00", "\x1f", "\x7f", " ", "~", "é", "\xff", "\xe2\x80\xa8", "€", "\xf0\x9f\x98\x80", "\xe2\x80"}
	for n := 0; n <= 24; n++ {
		for at := 0; at <= n; at++ {
			for _, sp := range specials {
				s := strings.Repeat("a", at) + sp + strings.Repeat("Z", n-at)
				want := string(appendStringRef(nil, s))
				if got := string(AppendString(nil, s)); got != want {
					t.Fatalf("AppendString(%q) = %s, want %s", s, got, want)
				}
				if got := string(AppendString(nil, []byte(s))); got != want {
					t.Fatalf("AppendString([]byte(%q)) = %s, want %s", s, got, want)
				}
				if n := StringLen(s); n != len(want) {
					t.Fatalf("StringLen(%q) = %d, want %d", s, n, len(want))
				}
			}
		}
	}
	for x := range 256 { // each byte value in every lane of a word
		for lane := range 8 {
			w := []byte("abcdefghijklmnop")
			w[lane] = byte(x)
			if got, want := string(AppendString(nil, w)), string(appendStringRef(nil, string(w))); got != want {
				t.Fatalf("byte %#x in lane %d: %s, want %s", x, lane, got, want)
			}
		}
	}
}

func FuzzAppendStringMatchesTheReference(f *testing.F) {
	f.Add("Product 4242 — \"Widget\", size L")
	f.Add("0123456789abcdef\x00\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		want := appendStringRef(nil, s)
		if got := AppendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("AppendString(%q) = %s, want %s", s, got, want)
		}
		if n := StringLen(s); n != len(want) {
			t.Fatalf("StringLen(%q) = %d, want %d", s, n, len(want))
		}
	})
}

// AppendTime and AppendLSN write what the standard library's formatting
// writes: time.AppendFormat with the layout, strconv's hex upper-cased.
func FuzzTimeAndLSNMatchTheReference(f *testing.F) {
	f.Add(int64(0), int64(0), uint64(0))
	f.Add(int64(1796304600), int64(123456789), uint64(0x16_B374D848))
	f.Add(int64(-62135596800), int64(999999999), uint64(1<<64-1))      // year 1
	f.Add(int64(-62135596801), int64(0), uint64(0xFFFFFFFF))           // year 0
	f.Add(int64(253402300799), int64(999999999), uint64(0x1_00000000)) // 9999-12-31
	f.Add(int64(253402300800), int64(0), uint64(0x10))                 // year 10000
	f.Add(int64(-1<<62), int64(5), uint64(0xABCDEF))
	f.Fuzz(func(t *testing.T, sec, nsec int64, lsn uint64) {
		tm := time.Unix(sec, nsec%1e9)
		for _, at := range []time.Time{tm, tm.In(time.FixedZone("x", 5*3600+30*60))} {
			want := at.UTC().AppendFormat([]byte("p"), "2006-01-02T15:04:05.000000Z")
			if got := AppendTime([]byte("p"), at); !bytes.Equal(got, want) {
				t.Fatalf("AppendTime(%v) = %s, want %s", at, got, want)
			}
		}
		want := strings.ToUpper(strconv.FormatUint(lsn>>32, 16) + "/" + strconv.FormatUint(lsn&0xFFFFFFFF, 16))
		if got := string(AppendLSN([]byte("p"), lsn)); got != "p"+want {
			t.Fatalf("AppendLSN(%x) = %s, want %s", lsn, got, want)
		}
	})
}

// A sealed record splits into its body and hashes and is rebuilt from them
// byte for byte; a tail Seal would not write does not split.
func TestSplitSealed(t *testing.T) {
	body := []byte(`{"id":"0000000000000100-000001","op":"insert",`)
	prev := Hash{1, 2, 3}
	rec, h := Seal(nil, body, prev)
	b, p, gotH, ok := SplitSealed(rec)
	if !ok || string(b) != string(body) || p != prev || gotH != h {
		t.Fatalf("SplitSealed = %q %x %x %v", b, p, gotH, ok)
	}
	if again := AppendSealTail(bytes.Clone(b), p, gotH); !bytes.Equal(again, rec) {
		t.Fatalf("rebuilt %s\nwant    %s", again, rec)
	}
	upper := bytes.Clone(rec)
	copy(upper[len(upper)-66:], bytes.ToUpper(upper[len(upper)-66:len(upper)-2]))
	for _, r := range [][]byte{upper, rec[SealTailLen-1:][:SealTailLen], rec[len(body):], body} {
		if _, _, _, ok := SplitSealed(r); ok {
			t.Errorf("SplitSealed(%q) ok", r)
		}
	}
}
