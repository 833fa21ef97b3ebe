package audit

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// Terms are what the store indexes an event by: the answers to "what
// happened to this record", "what did this user do", "what was done in this
// session", "what happened to this table" and "what happened then". They
// come from the event as the pipeline built it (Event.Terms) or from its
// stored record (ParseTerms, for a store indexed after the fact); both
// give the same Terms for the same event.
type Terms struct {
	Schema, Table string
	Op            Op
	// User is the actor's login, or "#<user_id>" when only the id is
	// known; "" when the change is not attributed to a user.
	User string
	// Session is the actor's session pseudonym; "" when none.
	Session string
	// Records are the record terms (RecordTerm) the event belongs to: its
	// key's, and also the before-image key's when an update changed the
	// key. None for truncate.
	Records [][]byte
	Flags   []string
	// CommitTime is the transaction's commit time.
	CommitTime time.Time
}

// UserTerm is the user term of an actor: its login, or "#<id>" when only
// the id is known, "" when neither is.
func UserTerm(login string, id *int64) string {
	switch {
	case login != "":
		return login
	case id != nil:
		return "#" + strconv.FormatInt(*id, 10)
	}
	return ""
}

// Terms returns what the event is indexed by. They equal ParseTerms of the
// event's stored record.
func (e *Event) Terms() Terms {
	var t Terms
	e.AppendTerms(&t, nil, nil)
	return t
}

// AppendTerms sets *t to e.Terms() with memory of the caller's: the record
// terms go at the end of recs and their bytes at the end of buf, when there
// is room (both are returned), so that many events' terms can be carved
// from the same buffers. t.Records is capped.
func (e *Event) AppendTerms(t *Terms, recs [][]byte, buf []byte) ([][]byte, []byte) {
	// Strings as the record will hold them: invalid UTF-8 is replaced there.
	*t = Terms{
		Schema: validText(e.Schema), Table: validText(e.Table), Op: e.Op,
		User:    UserTerm(validText(e.Actor.Login), e.Actor.UserID),
		Session: validText(e.Actor.SessionID),
		// The record holds the time to the microsecond, in UTC.
		CommitTime: e.CommitTime.UTC().Truncate(time.Microsecond),
	}
	if len(e.Flags) > 0 {
		t.Flags = e.Flags
		for i, f := range e.Flags {
			if v := validText(f); v != f {
				if &t.Flags[0] == &e.Flags[0] {
					t.Flags = append([]string(nil), e.Flags...)
				}
				t.Flags[i] = v
			}
		}
	}
	if len(e.Key) == 0 {
		return recs, buf
	}
	start := len(recs)
	if len(e.Key) == 1 {
		recs, buf = appendOneColumnTerms(recs, buf, e, t.Schema, t.Table)
	} else {
		recs = append(recs, e.keyTerms(t.Schema, t.Table)...)
	}
	t.Records = recs[start:len(recs):len(recs)]
	return recs, buf
}

// keyTerms are the record terms of an event with a key of several columns.
func (e *Event) keyTerms(schema, table string) [][]byte {
	key := make(RecordKey, len(e.Key))
	for i, c := range e.Key {
		text, _ := KeyText(c.Value) // a null or structured value never matches a key given as text
		key[i] = KeyValue{Column: validText(c.Name), Text: text}
	}
	var prev RecordKey
	if e.Op == OpUpdate && e.Before != nil {
		prev = make(RecordKey, 0, len(e.Key))
		for _, c := range e.Key {
			v, ok := beforeValue(e.Before, c.Name)
			if !ok {
				prev = nil // a before-image without the key: the key did not change
				break
			}
			text, _ := KeyText(v)
			prev = append(prev, KeyValue{Column: validText(c.Name), Text: text})
		}
	}
	return recordTerms(schema, table, key, prev)
}

// appendOneColumnTerms appends the record terms of an event with a
// one-column key (most are) to recs, their bytes to buf (a buffer of their
// own when it has no room): built from the encoded values without the
// detour through RecordKey.
func appendOneColumnTerms(recs [][]byte, buf []byte, e *Event, schema, table string) ([][]byte, []byte) {
	c := &e.Key[0]
	text := keyTextBytes(c.Value)
	var prev []byte
	changed := false
	if e.Op == OpUpdate && e.Before != nil {
		if v, ok := beforeValue(e.Before, c.Name); ok {
			prev = keyTextBytes(v)
			changed = !bytes.Equal(prev, text)
		}
	}
	n := 3*binary.MaxVarintLen32 + len(schema) + len(table)
	if need := 2*n + len(text) + len(prev); cap(buf)-len(buf) < need {
		buf = make([]byte, 0, need)
	}
	start := len(buf)
	b := appendField(buf, schema)
	b = appendField(b, table)
	b = binary.AppendUvarint(b, 1)
	head := len(b)
	b = binary.AppendUvarint(b, uint64(len(text)))
	b = append(b, text...)
	mid := len(b)
	recs = append(recs, b[start:mid:mid])
	if !changed {
		return recs, b
	}
	b = append(b, b[start:head]...)
	b = binary.AppendUvarint(b, uint64(len(prev)))
	b = append(b, prev...)
	return append(recs, b[mid:len(b):len(b)]), b
}

// beforeValue finds a key column in a before-image as a reader of the
// record does: the first column whose name is the same once encoded
// (invalid UTF-8 replaced).
func beforeValue(r Row, name string) ([]byte, bool) {
	valid := utf8.ValidString(name)
	norm := validText(name)
	for i := range r {
		n := r[i].Name
		if n == name || (!valid || !utf8.ValidString(n)) && validText(n) == norm {
			return r[i].Value, true
		}
	}
	return nil, false
}

// keyTextBytes is KeyText(raw) ("" when not ok), without a copy where the
// text is raw's own bytes.
func keyTextBytes(raw []byte) []byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	switch c := raw[0]; {
	case c == '"':
		if len(raw) >= 2 && raw[len(raw)-1] == '"' && plainString(raw[1:len(raw)-1]) {
			return raw[1 : len(raw)-1]
		}
		s, _ := jsonString(raw)
		return []byte(s)
	case c == '-' || c >= '0' && c <= '9', string(raw) == "true", string(raw) == "false":
		return raw
	}
	return nil
}

// plainString reports whether a JSON string's content needs no decoding.
func plainString(in []byte) bool {
	for _, c := range in {
		if c < 0x20 || c == '\\' || c == '"' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// validText is s as AppendString encodes it and JSON decodes it back:
// each byte of invalid UTF-8 becomes U+FFFD.
func validText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			b = append(b, s[i])
			i++
			continue
		}
		r, n := decodeRune(s, i)
		if r == utf8.RuneError && n == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(b)
}

// recordTerms are the record terms of an event whose key is key and whose
// before-image holds prev (nil when it holds no key): both when they
// differ. key and prev are sorted here.
func recordTerms(schema, table string, key, prev RecordKey) [][]byte {
	key.Sort()
	term := RecordTerm(schema, table, key...)
	if prev == nil {
		return [][]byte{term}
	}
	prev.Sort()
	if p := RecordTerm(schema, table, prev...); !bytes.Equal(p, term) {
		return [][]byte{term, p}
	}
	return [][]byte{term}
}

// RecordTerm is the canonical term of a record: the bytes that identify it
// under the matching rule of RecordKey.Matches. The key's values as text,
// by column name (key must be sorted by column, as ParseRecordKey and
// Event.Terms keep it); a one-column key by its value alone, so the term of
// sale_order:42 is the term of the record whose key is {"id":42}.
//
// Layout (opaque to users, stable because stores keep hashes of it):
// uvarint-length-prefixed schema and table, the number of columns as a
// uvarint, then the one value, or each column's name and value.
func RecordTerm(schema, table string, key ...KeyValue) []byte {
	n := 3*binary.MaxVarintLen32 + len(schema) + len(table)
	for _, kv := range key {
		n += 2*binary.MaxVarintLen32 + len(kv.Column) + len(kv.Text)
	}
	b := make([]byte, 0, n)
	b = appendField(b, schema)
	b = appendField(b, table)
	b = binary.AppendUvarint(b, uint64(len(key)))
	if len(key) == 1 {
		return appendField(b, key[0].Text)
	}
	for _, kv := range key {
		b = appendField(b, kv.Column)
		b = appendField(b, kv.Text)
	}
	return b
}

// RecordTermKey returns the part of a record term that holds the key
// (what follows its schema and table); nil when term is not a record term.
func RecordTermKey(term []byte) []byte {
	rest := term
	for range 2 {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return nil
		}
		rest = rest[w+int(n):]
	}
	return rest
}

func appendField(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Term returns the record term of r: the record term of every event whose
// key r matches (RecordKey.Matches), except that a one-column key given
// with its column's name also needs that name to match (RecordRef.Matches
// tells).
func (r RecordRef) Term() []byte {
	k := r.Key
	if !isSorted(k) {
		k = append(RecordKey(nil), k...)
		k.Sort()
	}
	return RecordTerm(r.Schema, r.Table, k...)
}

// Matches reports whether a stored event belongs to the record r names:
// its table is r's, and its key (or, for an update that changed the key,
// its before-image's key) matches r.Key.
func (r RecordRef) Matches(record []byte) (bool, error) {
	p, err := parseRecord(record)
	if err != nil {
		return false, err
	}
	if p.terms.Schema != r.Schema || p.terms.Table != r.Table || p.key == nil {
		return false, nil
	}
	return r.Key.Matches(p.key) || p.prev != nil && r.Key.Matches(p.prev), nil
}

func isSorted(k RecordKey) bool {
	for i := 1; i < len(k); i++ {
		if k[i-1].Column > k[i].Column {
			return false
		}
	}
	return true
}

// ErrNotRowEvent is returned by ParseTerms for a record that is not a row
// event (a chain record).
var ErrNotRowEvent = errors.New("not a row event")

// ParseTerms returns the terms of a stored record (the JSON of a sealed
// event): the same as the Terms of the event it was made from.
func ParseTerms(record []byte) (Terms, error) {
	p, err := parseRecord(record)
	return p.terms, err
}

type parsed struct {
	terms     Terms
	key, prev RecordKey // sorted; prev only when an update changed the key
}

// parseRecord reads the members of a record the terms come from, and skips
// the rest (the images) without decoding them. The canonical encoding is
// not relied upon beyond being JSON: members may come in any order.
func parseRecord(record []byte) (parsed, error) {
	var (
		p                  parsed
		sc                 = jsonScanner{b: record}
		keyRaw, beforeRaw  []byte
		login, userID      []byte
		haveOp, haveTime   bool
		userIDSet, isEvent bool
	)
	fail := func(what string, err error) (parsed, error) {
		if err == nil {
			err = sc.err
		}
		if err == nil {
			err = errors.New("unexpected input")
		}
		return parsed{}, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	err := sc.object(func(name []byte, raw []byte) error {
		var err error
		switch string(name) {
		case "commit_time":
			var t time.Time
			if isNull(raw) {
				t = time.Time{}
			} else if err = t.UnmarshalJSON(raw); err != nil {
				return fmt.Errorf("commit_time: %v", err)
			}
			p.terms.CommitTime, haveTime = t, true
		case "schema":
			p.terms.Schema, err = stringValue(raw)
		case "table":
			p.terms.Table, err = stringValue(raw)
		case "op":
			var s string
			if s, err = stringValue(raw); err == nil {
				op, perr := ParseOp(s)
				isEvent, haveOp, p.terms.Op = perr == nil, true, op
			}
		case "key":
			keyRaw = raw
		case "before":
			beforeRaw = raw
		case "actor":
			if isNull(raw) {
				login, userID, userIDSet, p.terms.Session = nil, nil, false, ""
				return nil
			}
			login, userID, userIDSet, p.terms.Session = nil, nil, false, ""
			return (&jsonScanner{b: raw}).object(func(name []byte, raw []byte) error {
				var err error
				switch string(name) {
				case "login":
					login = raw
				case "user_id":
					userID, userIDSet = raw, true
				case "session_id":
					p.terms.Session, err = stringValue(raw)
				}
				return err
			})
		case "flags":
			p.terms.Flags, err = stringsValue(raw)
		}
		if err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		return nil
	})
	if err != nil {
		return fail("record", err)
	}
	if !haveOp || !haveTime {
		return fail("record", errors.New("no op or no commit_time"))
	}
	if !isEvent || p.terms.Op == 0 {
		return parsed{}, ErrNotRowEvent
	}
	l, err := stringValue(login)
	if err != nil {
		return fail("actor.login", err)
	}
	var id *int64
	if userIDSet && !isNull(userID) {
		v, err := strconv.ParseInt(string(userID), 10, 64)
		if err != nil {
			var f json.Number // a JSON number that is no int64 fails as encoding/json would
			return fail("actor.user_id", errors.Join(err, json.Unmarshal(userID, &f)))
		}
		id = &v
	}
	p.terms.User = UserTerm(l, id)
	if len(p.terms.Flags) == 0 {
		p.terms.Flags = nil
	}
	key, names, err := rowKey(keyRaw)
	if err != nil {
		return fail("key", err)
	}
	if len(key) == 0 {
		return p, nil
	}
	var prev RecordKey
	if p.terms.Op == OpUpdate && !isNull(beforeRaw) {
		if prev, err = beforeKey(beforeRaw, names); err != nil {
			return fail("before", err)
		}
	}
	p.terms.Records = recordTerms(p.terms.Schema, p.terms.Table, key, prev)
	p.key = key
	if len(p.terms.Records) > 1 {
		p.prev = prev
	}
	return p, nil
}

// rowKey reads a key object into its values as text (in the object's
// order) and its column names; nil for null.
func rowKey(raw []byte) (RecordKey, []string, error) {
	if isNull(raw) {
		return nil, nil, nil
	}
	var (
		key   RecordKey
		names []string
	)
	err := (&jsonScanner{b: raw}).object(func(name, raw []byte) error {
		n := string(name)
		text, _ := KeyText(raw)
		key = append(key, KeyValue{Column: n, Text: text})
		names = append(names, n)
		return nil
	})
	return key, names, err
}

// beforeKey is the key held in a before-image: nil when it lacks a key
// column. The first member of a name counts, as Row.Get finds it.
func beforeKey(raw []byte, names []string) (RecordKey, error) {
	found := make([][]byte, len(names))
	err := (&jsonScanner{b: raw}).object(func(name, raw []byte) error {
		for i, want := range names {
			if found[i] == nil && want == string(name) {
				found[i] = raw
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	k := make(RecordKey, len(names))
	for i, n := range names {
		if found[i] == nil {
			return nil, nil
		}
		text, _ := KeyText(found[i])
		k[i] = KeyValue{Column: n, Text: text}
	}
	return k, nil
}

func isNull(raw []byte) bool { return raw == nil || string(raw) == "null" }

// stringValue decodes a JSON string or null ("").
func stringValue(raw []byte) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	if s, ok := jsonString(raw); ok {
		return s, nil
	}
	return "", fmt.Errorf("not a string: %.40s", raw)
}

// stringsValue decodes a JSON array of strings, or null.
func stringsValue(raw []byte) ([]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var out []string
	sc := jsonScanner{b: raw}
	sc.ws()
	if !sc.eat('[') {
		return nil, fmt.Errorf("not an array: %.40s", raw)
	}
	sc.ws()
	if sc.eat(']') {
		return out, sc.end()
	}
	for {
		v := sc.value()
		if v == nil {
			return nil, sc.error()
		}
		s, err := stringValue(v)
		if err != nil {
			return nil, fmt.Errorf("not an array of strings: %.40s", raw)
		}
		out = append(out, s)
		sc.ws()
		if sc.eat(']') {
			return out, sc.end()
		}
		if !sc.eat(',') {
			return nil, sc.error()
		}
	}
}

// jsonString decodes a JSON string token; ok is false when raw is not one.
// Plain strings (most) are taken as they are; the others go through
// encoding/json, whose decoding (escapes, invalid UTF-8 → U+FFFD) is the
// rule.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	if in := raw[1 : len(raw)-1]; plainString(in) {
		return string(in), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// jsonScanner walks JSON text without building values: enough to find the
// members of a record and hand their raw bytes on.
type jsonScanner struct {
	b   []byte
	i   int
	err error
}

func (s *jsonScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jsonScanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *jsonScanner) error() error {
	if s.err == nil {
		if s.i >= len(s.b) {
			s.err = errors.New("unexpected end of JSON input")
		} else {
			s.err = fmt.Errorf("invalid character %q at offset %d", s.b[s.i], s.i)
		}
	}
	return s.err
}

// end checks that nothing but white space follows.
func (s *jsonScanner) end() error {
	s.ws()
	if s.i != len(s.b) {
		return s.error()
	}
	return nil
}

// object calls fn with each member's name (decoded) and raw value, then checks that nothing follows the object. fn's error stops it.
func (s *jsonScanner) object(fn func(name, raw []byte) error) error {
	s.ws()
	if !s.eat('{') {
		return s.error()
	}
	s.ws()
	if s.eat('}') {
		return s.end()
	}
	for {
		s.ws()
		name := s.str()
		if name == nil {
			return s.error()
		}
		s.ws()
		if !s.eat(':') {
			return s.error()
		}
		raw := s.value()
		if raw == nil {
			return s.error()
		}
		// Names with escapes are rare and never those of a record's members.
		n := name[1 : len(name)-1]
		if bytes.IndexByte(n, '\\') >= 0 {
			dn, ok := jsonString(name)
			if !ok {
				return s.error()
			}
			n = []byte(dn)
		}
		if err := fn(n, raw); err != nil {
			return err
		}
		s.ws()
		if s.eat('}') {
			return s.end()
		}
		if !s.eat(',') {
			return s.error()
		}
	}
}

// value skips one value after optional white space and returns its bytes
// (nil on a syntax error).
func (s *jsonScanner) value() []byte {
	s.ws()
	if s.i >= len(s.b) {
		return nil
	}
	start := s.i
	switch c := s.b[s.i]; {
	case c == '"':
		return s.str()
	case c == '{' || c == '[':
		if !s.nested() {
			return nil
		}
	case c == '-' || c >= '0' && c <= '9':
		if !s.number() {
			return nil
		}
	default:
		rest := s.b[s.i:]
		switch {
		case bytes.HasPrefix(rest, []byte("true")), bytes.HasPrefix(rest, []byte("null")):
			s.i += 4
		case bytes.HasPrefix(rest, []byte("false")):
			s.i += 5
		default:
			return nil
		}
	}
	return s.b[start:s.i]
}

// nested skips an object or an array, checking its syntax.
func (s *jsonScanner) nested() bool {
	open := s.b[s.i]
	closeBy := byte('}')
	if open == '[' {
		closeBy = ']'
	}
	s.i++
	s.ws()
	if s.eat(closeBy) {
		return true
	}
	for {
		if open == '{' {
			s.ws()
			if s.str() == nil {
				return false
			}
			s.ws()
			if !s.eat(':') {
				return false
			}
		}
		if s.value() == nil {
			return false
		}
		s.ws()
		if s.eat(closeBy) {
			return true
		}
		if !s.eat(',') {
			return false
		}
	}
}

// str scans a string token (quotes included), checking its escapes and
// that it holds no control character; invalid UTF-8 is left to decoding.
func (s *jsonScanner) str() []byte {
	if !s.eat('"') {
		return nil
	}
	start := s.i - 1
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start:s.i]
		case c < 0x20:
			return nil
		case c == '\\':
			if s.i+1 >= len(s.b) {
				return nil
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					return nil
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return nil
					}
				}
				s.i += 6
			default:
				return nil
			}
		default:
			s.i++
		}
	}
	return nil
}

// number scans a JSON number.
func (s *jsonScanner) number() bool {
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	s.eat('-')
	if s.eat('0') {
		// no more integer digits after a leading zero
	} else if digits() == 0 {
		return false
	}
	if s.eat('.') && digits() == 0 {
		return false
	}
	if s.eat('e') || s.eat('E') {
		if !s.eat('+') {
			s.eat('-')
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}
