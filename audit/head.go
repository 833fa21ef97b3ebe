package audit

import (
	"bytes"
	"encoding/hex"
	"time"
)

// Head is what the head of a stored row event says: when it was committed,
// and in which table. Schema and Table are the JSON strings as stored,
// quotes included: a caller that keys something by table needs not decode
// them (Names does).
type Head struct {
	CommitTime    time.Time
	Schema, Table []byte
	// Source is the source member as stored (quotes included), nil on an
	// event stored before sources existed.
	Source []byte
}

// Names decodes Schema and Table.
func (h Head) Names() (schema, table string) {
	schema, _ = jsonString(h.Schema)
	table, _ = jsonString(h.Table)
	return schema, table
}

// SourceName decodes Source ("" when none).
func (h Head) SourceName() string {
	s, _ := jsonString(h.Source)
	return s
}

// RecordHead reads the commit_time, schema and table members of a stored
// record as encoding/json reads them: ok is false when the record is no
// JSON object or one of them is missing or not a string (a chain record
// has none). AppendBody's form is read from its first members without
// allocating, and no further: the hash check is what says the rest is
// sound (and holds no second member of those names, which encoding/json
// would take instead). Members in any other order are read by scanning the
// whole record.
func RecordHead(record []byte) (h Head, ok bool) {
	if h, ok = canonicalHead(record); ok {
		return h, true
	}
	return scannedHead(record)
}

// canonicalHead reads the members AppendBody writes first:
// {"id":"…","lsn":"…","commit_lsn":"…","xid":…,"commit_time":"…","database":"…",["source":"…",]"schema":"…","table":"…",
// Every member after the table holds a row's values, never a head member.
func canonicalHead(record []byte) (h Head, ok bool) {
	sc := jsonScanner{b: record}
	for _, m := range []string{`{"id":`, `,"lsn":`, `,"commit_lsn":`} {
		if !bytes.HasPrefix(sc.b[sc.i:], []byte(m)) {
			return h, false
		}
		sc.i += len(m)
		if sc.str() == nil {
			return h, false
		}
	}
	if !bytes.HasPrefix(sc.b[sc.i:], []byte(`,"xid":`)) {
		return h, false
	}
	sc.i += len(`,"xid":`)
	if !sc.number() || !bytes.HasPrefix(sc.b[sc.i:], []byte(`,"commit_time":`)) {
		return h, false
	}
	sc.i += len(`,"commit_time":`)
	at := sc.str()
	if at == nil {
		return h, false
	}
	if h.CommitTime, ok = parseTime(at); !ok {
		return h, false
	}
	for _, m := range []struct {
		name     string
		dst      *[]byte
		optional bool
	}{{`,"database":`, nil, false}, {`,"source":`, &h.Source, true}, {`,"schema":`, &h.Schema, false}, {`,"table":`, &h.Table, false}} {
		if !bytes.HasPrefix(sc.b[sc.i:], []byte(m.name)) {
			if m.optional {
				continue
			}
			return h, false
		}
		sc.i += len(m.name)
		s := sc.str()
		if s == nil {
			return h, false
		}
		if m.dst != nil {
			*m.dst = s
		}
	}
	return h, sc.i < len(sc.b) && sc.b[sc.i] == ','
}

// scannedHead is RecordHead for members in any order: the whole record is
// scanned.
func scannedHead(record []byte) (h Head, ok bool) {
	var at []byte
	sc := jsonScanner{b: record}
	err := sc.object(func(name, raw []byte) error {
		switch string(name) {
		case "commit_time":
			at = raw
		case "schema":
			h.Schema = raw
		case "table":
			h.Table = raw
		case "source":
			h.Source = raw
		}
		return nil
	})
	if h.Source != nil && !isString(h.Source) {
		h.Source = nil
	}
	if err != nil || !isString(at) || !isString(h.Schema) || !isString(h.Table) {
		return Head{}, false
	}
	if h.CommitTime, ok = parseTime(at); !ok {
		return Head{}, false
	}
	return h, true
}

func isString(raw []byte) bool { return len(raw) > 0 && raw[0] == '"' }

// parseTime reads a JSON string holding an RFC 3339 time, as encoding/json
// reads it into a time.Time; AppendTime's form,
// "2026-11-23T13:34:33.559831Z", without allocating.
func parseTime(raw []byte) (time.Time, bool) {
	if b := raw[1 : len(raw)-1]; len(b) == 27 && b[4] == '-' && b[7] == '-' && b[10] == 'T' && b[13] == ':' && b[16] == ':' && b[19] == '.' && b[26] == 'Z' {
		num := func(from, to int) (int, bool) {
			n := 0
			for _, c := range b[from:to] {
				if c < '0' || c > '9' {
					return 0, false
				}
				n = n*10 + int(c-'0')
			}
			return n, true
		}
		y, ok1 := num(0, 4)
		mo, ok2 := num(5, 7)
		d, ok3 := num(8, 10)
		h, ok4 := num(11, 13)
		mi, ok5 := num(14, 16)
		sec, ok6 := num(17, 19)
		us, ok7 := num(20, 26)
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h < 24 && mi < 60 && sec < 60 {
			t := time.Date(y, time.Month(mo), d, h, mi, sec, us*1000, time.UTC)
			if t.Day() == d { // not 31 February
				return t, true
			}
		}
	}
	var t time.Time
	return t, t.UnmarshalJSON(raw) == nil
}

// Links reads the prev_hash and hash members that Seal ends a record with,
// as stored: `"prev_hash":"<64 hex>","hash":"<64 hex>"}`. ok is false when
// the record does not end so. It checks nothing against the content (Check
// does).
func Links(record []byte) (prev, h Hash, ok bool) {
	n := len(record)
	if n < sealTailLen {
		return prev, h, false
	}
	tail := record[n-sealTailLen:]
	hashStart := len(prevHashPrefix) + 2*HashLen + 1 + len(hashPrefix)
	if string(tail[:len(prevHashPrefix)]) != prevHashPrefix || tail[hashStart-len(hashPrefix)-1] != '"' ||
		string(tail[hashStart-len(hashPrefix):hashStart]) != hashPrefix || string(tail[len(tail)-2:]) != `"}` {
		return prev, h, false
	}
	if _, err := hex.Decode(prev[:], tail[len(prevHashPrefix):hashStart-len(hashPrefix)-1]); err != nil {
		return prev, h, false
	}
	if _, err := hex.Decode(h[:], tail[hashStart:len(tail)-2]); err != nil {
		return prev, h, false
	}
	return prev, h, true
}
