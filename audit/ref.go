package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// DefaultSchema is the schema of a TABLE given without one.
const DefaultSchema = "public"

// RecordRef names one record: its table and the values of its key.
type RecordRef struct {
	Schema, Table string
	Key           RecordKey
}

// RecordKey is a record's key: its columns' values as text (KeyValue), sorted by
// column. A key given as a single value has one KeyValue with no Column:
// it matches a one-column key of any name.
type RecordKey []KeyValue

// KeyValue is one key column's value as text: a JSON number by its digits
// as the event encodes them, a string by its content, true/false as such.
// So 42 matches both an integer key 42 and a text key "42": one column has
// one type, and the event's encoding decides nothing a user must know.
type KeyValue struct {
	Column string
	Text   string
}

// String formats r, schema-qualified, so that ParseRecordRef reads it back.
func (r RecordRef) String() string {
	var b strings.Builder
	b.WriteString(quoteName(r.Schema))
	b.WriteByte('.')
	b.WriteString(quoteName(r.Table))
	b.WriteByte(':')
	b.WriteString(r.Key.String())
	return b.String()
}

// String formats k as it is given after TABLE: a single value as it is, a
// named key as a JSON object of strings.
func (k RecordKey) String() string {
	if len(k) == 1 && k[0].Column == "" {
		return k[0].Text
	}
	m := make(map[string]string, len(k))
	for _, v := range k {
		m[v.Column] = v.Text
	}
	b, _ := json.Marshal(m) // sorted by name, like k
	return string(b)
}

// ParseRecordRef parses TABLE:KEY. TABLE is schema.table or table (schema
// public), names exactly as the events spell them; a name holding '.', ':'
// or '"' is written in double quotes, with '"' doubled ("my.schema"."t").
// KEY is everything after the first ':' that follows TABLE: a JSON object
// ({"a":1,"b":"x"}: the key's columns by name, for composite keys) when it
// begins with '{', else one value taken as written (42, abc, a:b).
func ParseRecordRef(s string) (RecordRef, error) {
	var r RecordRef
	first, rest, err := parseName(s)
	if err != nil {
		return r, err
	}
	r.Schema, r.Table = DefaultSchema, first
	if strings.HasPrefix(rest, ".") {
		r.Schema = first
		if r.Table, rest, err = parseName(rest[1:]); err != nil {
			return r, err
		}
		if strings.HasPrefix(rest, ".") {
			return r, errors.New(`more than schema.table before ':' (write a name that holds a dot in double quotes: "a.b")`)
		}
	}
	key, ok := strings.CutPrefix(rest, ":")
	if !ok {
		return r, errors.New(`want TABLE:KEY, e.g. public.sale_order:42, res_partner:abc or public.t:{"a":1,"b":"x"}`)
	}
	if r.Key, err = ParseRecordKey(key); err != nil {
		return r, err
	}
	return r, nil
}

// parseName reads one name at the start of s, quoted or not, and returns
// what follows it.
func parseName(s string) (name, rest string, err error) {
	if !strings.HasPrefix(s, `"`) {
		end := strings.IndexAny(s, `.:"`)
		if end < 0 {
			end = len(s)
		}
		if end == 0 {
			return "", s, errors.New(`want TABLE:KEY, e.g. public.sale_order:42 (a table name is missing)`)
		}
		if s[end:] != "" && s[end] == '"' {
			return "", s, errors.New(`a '"' inside a name: quote the whole name and double the quote ("a""b")`)
		}
		return s[:end], s[end:], nil
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '"' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '"' {
			b.WriteByte('"')
			i++
			continue
		}
		if b.Len() == 0 {
			return "", s, errors.New(`an empty quoted name ""`)
		}
		return b.String(), s[i+1:], nil
	}
	return "", s, errors.New("a quoted name without its closing '\"'")
}

// ParseRecordKey parses the KEY of TABLE:KEY (see ParseRecordRef).
func ParseRecordKey(s string) (RecordKey, error) {
	if s == "" {
		return nil, errors.New("the key after ':' is empty")
	}
	if !strings.HasPrefix(s, "{") {
		return RecordKey{{Text: s}}, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	bad := func(why string) (RecordKey, error) {
		return nil, fmt.Errorf(`the key %s is not a JSON object of the key's columns (%s), e.g. {"a":1,"b":"x"}`, s, why)
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return bad("no object")
	}
	var k RecordKey
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return bad(err.Error())
		}
		name, ok := t.(string)
		if !ok || name == "" {
			return bad("a column name is empty")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return bad(err.Error())
		}
		text, ok := KeyText(raw)
		if !ok {
			return bad(fmt.Sprintf("%s of %q is not a string, a number, true or false", raw, name))
		}
		if slices.ContainsFunc(k, func(v KeyValue) bool { return v.Column == name }) {
			return bad(fmt.Sprintf("%q is given twice", name))
		}
		k = append(k, KeyValue{Column: name, Text: text})
	}
	if _, err := dec.Token(); err != nil {
		return bad(err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("something follows the object")
	}
	if len(k) == 0 {
		return bad("no column")
	}
	k.Sort()
	return k, nil
}

// KeyText is the text of a key value as encoded in an event (see
// KeyValue); ok is false for null, arrays and objects.
func KeyText(raw []byte) (string, bool) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0:
		return "", false
	case raw[0] == '"':
		return jsonString(raw)
	case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9', string(raw) == "true", string(raw) == "false":
		return string(raw), true
	}
	return "", false
}

// Sort sorts k by column name, as a RecordKey is kept.
func (k RecordKey) Sort() {
	slices.SortFunc(k, func(a, b KeyValue) int { return strings.Compare(a.Column, b.Column) })
}

// Matches reports whether k (an event's key, every column named) is the key
// want names: the same columns with the same values, or, for a single
// value without a column, a one-column key with that value.
func (want RecordKey) Matches(k RecordKey) bool {
	if len(want) == 1 && want[0].Column == "" {
		return len(k) == 1 && k[0].Text == want[0].Text
	}
	return slices.Equal(want, k)
}

func needsQuotes(name string) bool { return name == "" || strings.ContainsAny(name, `.:"`) }

func quoteName(name string) string {
	if !needsQuotes(name) {
		return name
	}
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}
