package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// HashLen is the length of a chain hash in bytes.
const HashLen = sha256.Size

// Hash is a link of the hash chain.
type Hash [HashLen]byte

// String returns the hash as 64 lower-case hex digits.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Genesis is the prev_hash of the first event in a store.
var Genesis Hash

// AppendBody appends the canonical encoding of the event up to, not
// including, its prev_hash member: `{"id":…,"flags":[…],`. Seal completes it.
func (e *Event) AppendBody(b []byte) []byte {
	b = append(b, `{"id":"`...)
	b = appendID(b, e.CommitLSN, e.Ordinal)
	b = append(b, `","lsn":"`...)
	b = AppendLSN(b, e.LSN)
	b = append(b, `","commit_lsn":"`...)
	b = AppendLSN(b, e.CommitLSN)
	b = append(b, `","xid":`...)
	b = strconv.AppendUint(b, uint64(e.XID), 10)
	b = append(b, `,"commit_time":"`...)
	b = AppendTime(b, e.CommitTime)
	b = append(b, `","database":`...)
	b = AppendString(b, e.Database)
	if e.Source != "" {
		// Only when set: every event encoded before the member existed
		// encodes as it did.
		b = append(b, `,"source":`...)
		b = AppendString(b, e.Source)
	}
	b = append(b, `,"schema":`...)
	b = AppendString(b, e.Schema)
	b = append(b, `,"table":`...)
	b = AppendString(b, e.Table)
	b = append(b, `,"model":`...)
	b = appendOptString(b, e.Model)
	b = append(b, `,"op":"`...)
	b = append(b, e.Op.String()...)
	b = append(b, `","key":`...)
	b = appendRow(b, e.Key)
	b = append(b, `,"before":`...)
	b = appendRow(b, e.Before)
	if e.BeforeSource != BeforeNone && (e.Op == OpUpdate || e.Op == OpDelete) {
		// Only on update and delete, and only when set: every event
		// encoded before the member existed encodes as it did.
		b = append(b, `,"before_source":"`...)
		b = append(b, e.BeforeSource.String()...)
		b = append(b, '"')
	}
	b = append(b, `,"after":`...)
	b = appendRow(b, e.After)
	b = append(b, `,"changed":`...)
	b = appendNames(b, e.Changed, true)
	b = append(b, `,"unchanged_toast":`...)
	b = appendNames(b, e.UnchangedToast, false)
	b = append(b, `,"redacted":`...)
	b = appendNames(b, e.Redacted, false)
	b = append(b, `,"actor":{"user_id":`...)
	if e.Actor.UserID != nil {
		b = strconv.AppendInt(b, *e.Actor.UserID, 10)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"login":`...)
	b = appendOptString(b, e.Actor.Login)
	b = append(b, `,"user_via":`...)
	b = AppendString(b, orNone(e.Actor.UserVia))
	b = append(b, `,"session_id":`...)
	b = appendOptString(b, e.Actor.SessionID)
	b = append(b, `,"session_via":`...)
	b = AppendString(b, orNone(e.Actor.SessionVia))
	if c := e.Actor.Candidates; !c.empty() {
		b = appendCandidates(b, c)
	}
	b = append(b, `},"flags":`...)
	b = appendNames(b, e.Flags, false)
	return append(b, ',')
}

// appendCandidates appends `,"candidates":{…}`: only its non-empty lists,
// so an event without candidates encodes as it always did; at most
// MaxCandidates of each.
func appendCandidates(b []byte, c *Candidates) []byte {
	users, sessions := c.Users[:min(len(c.Users), MaxCandidates)], c.Sessions[:min(len(c.Sessions), MaxCandidates)]
	b = append(b, `,"candidates":{`...)
	if len(users) > 0 {
		b = append(b, `"users":[`...)
		for i, u := range users {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = strconv.AppendInt(b, u.ID, 10)
			b = append(b, `,"login":`...)
			b = appendOptString(b, u.Login)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(sessions) > 0 {
		if len(users) > 0 {
			b = append(b, ',')
		}
		b = append(b, `"sessions":`...)
		b = appendNames(b, sessions, false)
	}
	return append(b, '}')
}

const (
	prevHashPrefix = `"prev_hash":"`
	hashPrefix     = `,"hash":"`
	// sealTail is what Seal appends after the body.
	sealTailLen = len(prevHashPrefix) + 2*HashLen + 1 + len(hashPrefix) + 2*HashLen + 2
)

// SealedLen returns the length of the record Seal makes from a body.
func SealedLen(bodyLen int) int { return bodyLen + sealTailLen }

// SealTailLen is the length of the members Seal appends after a body.
const SealTailLen = sealTailLen

// AppendSealTail appends what Seal appends after a body that hashed to h
// after prev: record = body + AppendSealTail(prev, h). A store may keep a
// record as its body and the two hashes, and rebuild it byte for byte.
func AppendSealTail(dst []byte, prev, h Hash) []byte {
	dst = append(dst, prevHashPrefix...)
	dst = hex.AppendEncode(dst, prev[:])
	dst = append(dst, '"')
	dst = append(dst, hashPrefix...)
	dst = hex.AppendEncode(dst, h[:])
	return append(dst, `"}`...)
}

// SplitSealed splits a record into its body and the hashes of its seal
// tail; ok only when the tail is exactly what AppendSealTail writes for
// them (so that body + AppendSealTail(prev, h) is the record again).
func SplitSealed(record []byte) (body []byte, prev, h Hash, ok bool) {
	if prev, h, ok = Links(record); !ok || len(record) == sealTailLen {
		return nil, prev, h, false
	}
	body = record[:len(record)-sealTailLen]
	var tail [sealTailLen]byte
	if string(AppendSealTail(tail[:0], prev, h)) != string(record[len(body):]) {
		return nil, prev, h, false // upper-case hex: Links reads it, AppendSealTail would not write it
	}
	return body, prev, h, true
}

// Seal completes a body made by AppendBody into the stored record. The hash
// is SHA-256 over the canonical event: the record without its hash member,
// i.e. `{…,"prev_hash":"<prev>"}`.
func Seal(dst, body []byte, prev Hash) (record []byte, h Hash) {
	start := len(dst)
	return sealTail(append(dst, body...), start, prev)
}

// sealTail appends the prev_hash and hash members to the body in dst[start:].
func sealTail(dst []byte, start int, prev Hash) ([]byte, Hash) {
	dst = append(dst, prevHashPrefix...)
	dst = hex.AppendEncode(dst, prev[:])
	dst = append(dst, '"')
	canonicalEnd := len(dst)
	dst = append(dst, '}')
	h := sha256.Sum256(dst[start:])
	dst = append(dst[:canonicalEnd], hashPrefix...)
	dst = hex.AppendEncode(dst, h[:])
	dst = append(dst, `"}`...)
	return dst, h
}

// SealInPlace is Seal into body's own spare capacity: the record is body
// with the tail appended, no copy when cap(body) ≥ SealedLen(len(body)).
// body must own its spare capacity (no other slice may live there).
func SealInPlace(body []byte, prev Hash) (record []byte, h Hash) {
	return sealTail(body, 0, prev)
}

// ErrMalformed is returned by Check for a record that is not a sealed event.
var ErrMalformed = errors.New("malformed event record")

// Check recomputes the hash of a stored record and returns its id, its
// prev_hash and its hash. It fails when the stored hash does not match the
// content. It does not parse the JSON: the hash covers every byte.
func Check(record []byte) (id string, prev, h Hash, err error) {
	const idPrefix = `{"id":"`
	n := len(record)
	if n < len(idPrefix)+23+sealTailLen || !bytes.HasPrefix(record, []byte(idPrefix)) ||
		!bytes.HasSuffix(record, []byte(`"}`)) {
		return "", prev, h, ErrMalformed
	}
	idEnd := bytes.IndexByte(record[len(idPrefix):], '"')
	if idEnd < 23 {
		return "", prev, h, ErrMalformed
	}
	id = string(record[len(idPrefix) : len(idPrefix)+idEnd])
	prev, h, ok := Links(record)
	if !ok {
		return id, prev, h, ErrMalformed
	}
	canonicalEnd := n - 2 - 2*HashLen - len(hashPrefix)
	d := sha256.New()
	d.Write(record[:canonicalEnd])
	d.Write([]byte{'}'})
	var got Hash
	d.Sum(got[:0])
	if got != h {
		return id, prev, h, fmt.Errorf("event %s: content does not match its hash", id)
	}
	return id, prev, h, nil
}

// timeLayout is how AppendTime writes a time.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// AppendTime appends t in UTC as RFC 3339 with exactly six fractional
// digits: t.UTC().AppendFormat(b, timeLayout), digit by digit (every event
// has a time; the layout need not be parsed for each).
func AppendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, timeLayout)
	}
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/1000, 6)
	return append(b, 'Z')
}

// appendDigits appends the last width (at most 8) decimal digits of v ≥ 0,
// zero-padded.
func appendDigits(b []byte, v, width int) []byte {
	var d [8]byte
	for i := width - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, d[:width]...)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func appendOptString(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return AppendString(b, s)
}

func appendRow(b []byte, r Row) []byte {
	if r == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	for i := range r {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, r[i].Name)
		b = append(b, ':')
		if r[i].Value == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, r[i].Value...)
		}
	}
	return append(b, '}')
}

func appendNames(b []byte, names []string, nilIsNull bool) []byte {
	if names == nil && nilIsNull {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, n)
	}
	return append(b, ']')
}

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD;
// control characters, U+2028 and U+2029 are escaped.
func AppendString[T string | []byte](b []byte, s T) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Eight plain ASCII bytes at a time: most text needs no escape.
		if i+8 <= len(s) && plain8(load8(s, i)) {
			i += 8
			continue
		}
		c := s[i]
		if plainByte[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := decodeRune(s, i)
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// plainByte tells the bytes that stand for themselves in a JSON string:
// ASCII from 0x20, neither '"' nor '\\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// StringLen returns len(AppendString(nil, s)) without building it: one
// pass over s, to size the buffer of a huge value exactly.
func StringLen[T string | []byte](s T) int {
	n := 2
	for i := 0; i < len(s); {
		if i+8 <= len(s) && plain8(load8(s, i)) {
			n += 8
			i += 8
			continue
		}
		if c := s[i]; c < utf8.RuneSelf {
			switch {
			case c >= 0x20 && c != '"' && c != '\\':
				n++
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			default:
				n += 6 // \u00XX
			}
			i++
			continue
		}
		r, size := decodeRune(s, i)
		if (r == utf8.RuneError && size == 1) || r == '\u2028' || r == '\u2029' {
			n += 6 // \ufffd, \u2028, \u2029
		} else {
			n += size
		}
		i += size
	}
	return n
}

// load8 reads s[i:i+8] as a little-endian word.
func load8[T string | []byte](s T, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// plain8 reports whether each of the 8 bytes of x stands for itself in a
// JSON string: ASCII from 0x20, neither '"' nor '\\'. (The bit tricks
// are exact about whether any byte matches, which is all this asks.)
func plain8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	control := (x - 0x20*ones) &^ x & highs // some byte < 0x20
	q := x ^ ('"' * ones)
	quote := (q - ones) &^ q & highs // some byte == '"'
	bs := x ^ ('\\' * ones)
	backslash := (bs - ones) &^ bs & highs // some byte == '\\'
	return (control | quote | backslash | x&highs) == 0
}

// decodeRune decodes the UTF-8 sequence at s[i] like utf8.DecodeRune, for
// both strings and byte slices without converting (and allocating).
func decodeRune[T string | []byte](s T, i int) (rune, int) {
	n := len(s) - i
	c0 := s[i]
	cont := func(k int) bool { return k < n && s[i+k]&0xC0 == 0x80 }
	switch {
	case c0 < 0xC2 || c0 > 0xF4:
		return utf8.RuneError, 1
	case c0 < 0xE0:
		if !cont(1) {
			return utf8.RuneError, 1
		}
		return rune(c0&0x1F)<<6 | rune(s[i+1]&0x3F), 2
	case c0 < 0xF0:
		if !cont(1) || !cont(2) || (c0 == 0xE0 && s[i+1] < 0xA0) || (c0 == 0xED && s[i+1] >= 0xA0) {
			return utf8.RuneError, 1
		}
		return rune(c0&0x0F)<<12 | rune(s[i+1]&0x3F)<<6 | rune(s[i+2]&0x3F), 3
	default:
		if !cont(1) || !cont(2) || !cont(3) || (c0 == 0xF0 && s[i+1] < 0x90) || (c0 == 0xF4 && s[i+1] >= 0x90) {
			return utf8.RuneError, 1
		}
		return rune(c0&0x07)<<18 | rune(s[i+1]&0x3F)<<12 | rune(s[i+2]&0x3F)<<6 | rune(s[i+3]&0x3F), 4
	}
}

// Record is a stored event read back, with the structured members kept as
// raw JSON. It is what exports and the API hand on.
type Record struct {
	ID             string          `json:"id"`
	LSN            string          `json:"lsn"`
	CommitLSN      string          `json:"commit_lsn"`
	XID            uint32          `json:"xid"`
	CommitTime     time.Time       `json:"commit_time"`
	Database       string          `json:"database"`
	Source         string          `json:"source,omitempty"` // "" on events stored before sources
	Schema         string          `json:"schema"`
	Table          string          `json:"table"`
	Model          *string         `json:"model"`
	Op             string          `json:"op"`
	Key            json.RawMessage `json:"key"`
	Before         json.RawMessage `json:"before"`
	BeforeSource   string          `json:"before_source,omitempty"` // "" on events without one
	After          json.RawMessage `json:"after"`
	Changed        json.RawMessage `json:"changed"`
	UnchangedToast json.RawMessage `json:"unchanged_toast"`
	Redacted       json.RawMessage `json:"redacted"`
	Actor          json.RawMessage `json:"actor"`
	Flags          json.RawMessage `json:"flags"`
	PrevHash       string          `json:"prev_hash"`
	Hash           string          `json:"hash"`
}

// ParseRecord decodes a stored record.
func ParseRecord(record []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(record, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return &r, nil
}

// IsSnapshotRecord reports whether a stored record (or AppendBody output)
// is a snapshot record, without parsing it: its first `,"op":"` member is
// the op (every string before it is escaped, so no quote there is bare).
func IsSnapshotRecord(record []byte) bool {
	const member = `,"op":"`
	i := bytes.Index(record, []byte(member))
	return i >= 0 && bytes.HasPrefix(record[i+len(member):], []byte(`snapshot"`))
}
