// Package redact keeps secrets out of the audit store: it replaces the
// values of secret columns (password hashes, TOTP secrets, API keys, session
// identifiers …) in an event's key, before- and after-image, before the
// event reaches the store, an export, a log line or a metric.
//
// A redacted value becomes the JSON string "[redacted]", or, when the
// operator configures a key, "hmac-sha256:<64 hex digits>": the HMAC-SHA256
// of the value's encoded JSON bytes under that key, so equal values stay
// comparable ("did the password change?", "same API key?") without being
// revealed. SQL NULL stays null. The column names go to Event.Redacted;
// Event.Changed is left alone, so a redacted change is still visible as one.
//
// Rules are profile.ColumnRule: Table (over "schema.table") and Column are
// globs; a rule with Where applies to an event only when that column of the
// row (in any of its images) holds a value matching one of Values, compared
// case-insensitively (ir_config_parameter rows whose key is
// 'database.secret'). Classifiers add columns judged from the whole table
// (Odoo's naming of secret columns, on tables its ORM made).
//
// Which columns of a table are secret is decided once, when the stream
// describes the table (Relation, before its first change), whatever
// application profile is or is not in use at that moment; an event of a
// table without secrets then costs one map lookup. Without a Relation, a
// table's columns are learnt from its events.
package redact

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/profile"
)

// Placeholder is the value of a redacted column when no key is configured.
const Placeholder = "[redacted]"

// HMACPrefix starts the value of a redacted column when a key is configured.
const HMACPrefix = "hmac-sha256:"

// MinKeyLen is the shortest HMAC key accepted.
const MinKeyLen = 16

// maxConds bounds the distinct (where, values) conditions of a rule set:
// each takes one bit of a column's mask.
const maxConds = 63

var placeholderJSON = []byte(`"` + Placeholder + `"`)

// Redactor applies a set of rules. It is safe for concurrent use.
type Redactor struct {
	rules       []rule
	conds       []cond
	classifiers []Classifier
	key         []byte
	macs        sync.Pool // hash.Hash (HMAC-SHA256 under key)

	mu     sync.Mutex                         // serialises plan building
	tables atomic.Pointer[map[tableRef]*plan] // copy on write
}

// Classifier names the secret columns of a table from the whole of it (its
// columns and their types), e.g. by an application's naming conventions:
// profile.OdooSecretColumns.
type Classifier func(schema, table string, cols []profile.Column) []string

type tableRef struct{ schema, table string }

type rule struct {
	table, column string
	bit           uint // 0: unconditional; else the bit of its condition
}

type cond struct {
	where  string
	values []string // lower-cased globs
}

// plan is what applies to one table, worked out once from its columns. It
// is never changed once published: new knowledge makes a new plan.
type plan struct {
	cols   map[string]uint64 // column → bits of the rules naming it (bit 0: unconditional)
	conds  uint64            // bits of the conditions among them
	known  []profile.Column  // the columns it was worked out from
	whole  bool              // nothing to learn: from Relation, or no rule can name a column of the table
	secret bool              // some column has rules
}

// New compiles rules. hmacKey may be nil (values become "[redacted]");
// otherwise it must be at least MinKeyLen bytes. A malformed rule (bad
// glob, missing table or column) is an error naming the rule. classifiers
// add the columns they name, per table, to the rules'.
func New(rules []profile.ColumnRule, hmacKey []byte, classifiers ...Classifier) (*Redactor, error) {
	if hmacKey != nil {
		if err := checkKeyLen(len(hmacKey)); err != nil {
			return nil, fmt.Errorf("redact: HMAC key too short: %w (e.g. 32 random bytes)", err)
		}
	}
	r := &Redactor{classifiers: classifiers}
	if len(hmacKey) > 0 {
		r.key = slices.Clone(hmacKey)
		r.macs.New = func() any { return hmac.New(sha256.New, r.key) }
	}
	for i, cr := range rules {
		if err := cr.Validate(); err != nil {
			return nil, fmt.Errorf("redact: rule %d (%s): %w", i+1, cr.String(), err)
		}
		ru := rule{table: cr.Table, column: cr.Column}
		if cr.Where != "" {
			c := cond{where: cr.Where}
			for _, v := range cr.Values {
				c.values = append(c.values, strings.ToLower(v))
			}
			idx := slices.IndexFunc(r.conds, func(o cond) bool { return o.where == c.where && slices.Equal(o.values, c.values) })
			if idx < 0 {
				if len(r.conds) == maxConds {
					return nil, fmt.Errorf("redact: more than %d distinct where/values conditions", maxConds)
				}
				r.conds = append(r.conds, c)
				idx = len(r.conds) - 1
			}
			ru.bit = uint(idx + 1)
		}
		r.rules = append(r.rules, ru)
	}
	empty := map[tableRef]*plan{}
	r.tables.Store(&empty)
	return r, nil
}

// Empty reports whether the redactor has no rules (Apply does nothing).
func (r *Redactor) Empty() bool { return r == nil || len(r.rules) == 0 && len(r.classifiers) == 0 }

// Relation tells the redactor every column of a table, as the replication
// stream describes it before the table's first change (and again after its
// columns change). The table's secret columns are decided here, once, and
// returned (those of conditional rules included); until a table's Relation
// is known, Apply works them out from the columns its events carry.
func (r *Redactor) Relation(schema, table string, cols []profile.Column) []string {
	if r.Empty() {
		return nil
	}
	p := r.build(schema, table, cols, true)
	r.mu.Lock()
	r.publish(tableRef{schema, table}, p)
	r.mu.Unlock()
	var secret []string
	for _, c := range cols {
		if p.cols[c.Name] != 0 {
			secret = append(secret, c.Name)
		}
	}
	return secret
}

// Apply redacts the secret columns of e in place. Value slices are replaced,
// never written into, so bytes shared with other events stay intact.
func (r *Redactor) Apply(e *audit.Event) {
	if r.Empty() {
		return
	}
	p := (*r.tables.Load())[tableRef{e.Schema, e.Table}]
	if p == nil || !p.whole && !p.covers(e) {
		p = r.learn(e)
	}
	if !p.secret {
		return
	}
	active := uint64(1) // unconditional rules
	if p.conds != 0 {
		for i := range r.conds {
			bit := uint64(1) << uint(i+1)
			if p.conds&bit != 0 && r.conds[i].holds(e) {
				active |= bit
			}
		}
	}
	r.redactRow(p, e.Key, active, e)
	r.redactRow(p, e.Before, active, e)
	r.redactRow(p, e.After, active, e)
}

// Secret reports whether a rule or classifier names the column of e's
// table, conditionally or not: a value that must never be kept in the
// clear, not even as a lookup key.
func (r *Redactor) Secret(e *audit.Event, column string) bool {
	if r.Empty() {
		return false
	}
	p := (*r.tables.Load())[tableRef{e.Schema, e.Table}]
	if p == nil || !p.whole && !p.covers(e) {
		p = r.learn(e)
	}
	return p.cols[column] != 0
}

// Token returns the keyed token of an encoded value as redaction writes it
// with a key: the JSON string "hmac-sha256:<hex>" of HMAC-SHA256(key, v).
func Token(mac hash.Hash, v []byte) []byte {
	mac.Reset()
	mac.Write(v)
	var sum [sha256.Size]byte
	mac.Sum(sum[:0])
	out := make([]byte, 0, 2+len(HMACPrefix)+2*sha256.Size)
	out = append(out, '"')
	out = append(out, HMACPrefix...)
	out = hex.AppendEncode(out, sum[:])
	return append(out, '"')
}

// PlaceholderJSON returns the encoded value of a redacted column without a
// key ("[redacted]").
func PlaceholderJSON() []byte { return placeholderJSON[:len(placeholderJSON):len(placeholderJSON)] }

func (r *Redactor) redactRow(p *plan, row audit.Row, active uint64, e *audit.Event) {
	for i := range row {
		c := &row[i]
		if p.cols[c.Name]&active == 0 {
			continue
		}
		addName(e, c.Name)
		if audit.IsNull(c.Value) {
			continue
		}
		c.Value = r.replacement(c.Value)
	}
}

// replacement returns the stored form of a secret value.
func (r *Redactor) replacement(v []byte) []byte {
	if r.key == nil {
		return PlaceholderJSON()
	}
	m := r.macs.Get().(hash.Hash)
	out := Token(m, v)
	r.macs.Put(m)
	return out
}

// addName adds a column to e.Redacted, keeping it sorted and unique.
func addName(e *audit.Event, name string) {
	i, found := slices.BinarySearch(e.Redacted, name)
	if !found {
		e.Redacted = slices.Insert(e.Redacted, i, name)
	}
}

// holds reports whether the condition's column, in any image of the event,
// holds a value matching one of its globs. Every image counts: an update
// that renames ir_config_parameter 'database.secret' still hides the value
// in both images.
func (c *cond) holds(e *audit.Event) bool {
	for _, row := range [...]audit.Row{e.After, e.Before, e.Key} {
		v, ok := row.Get(c.where)
		if !ok || audit.IsNull(v) {
			continue
		}
		s := strings.ToLower(text(v))
		for _, g := range c.values {
			if profile.Match(g, s) {
				return true
			}
		}
	}
	return false
}

// text returns the text of an encoded value: a JSON string unquoted, any
// other value (a number) as written.
func text(v []byte) string {
	if len(v) < 2 || v[0] != '"' {
		return string(v)
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1])
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return string(v)
	}
	return s
}

// covers reports whether the plan knows every column of e. Events of a
// table carry its columns in the same order, mostly all of them: the
// comparison with the known columns in order is the cheap way.
func (p *plan) covers(e *audit.Event) bool {
rows:
	for _, row := range [...]audit.Row{e.Key, e.Before, e.After} {
		if len(row) <= len(p.known) {
			for i := range row {
				if row[i].Name != p.known[i].Name {
					goto lookup
				}
			}
			continue rows
		}
	lookup:
		for i := range row {
			if _, ok := p.cols[row[i].Name]; !ok {
				return false
			}
		}
	}
	return true
}

// learn makes the plan of e's table from the columns known so far and
// those e carries (of unknown types): the way without a Relation.
func (r *Redactor) learn(e *audit.Event) *plan {
	r.mu.Lock()
	defer r.mu.Unlock()
	ref := tableRef{e.Schema, e.Table}
	old := (*r.tables.Load())[ref]
	if old != nil && (old.whole || old.covers(e)) {
		return old
	}
	var cols []profile.Column
	if old != nil {
		cols = slices.Clone(old.known)
	}
	for _, row := range [...]audit.Row{e.Key, e.Before, e.After} {
		for i := range row {
			if !slices.ContainsFunc(cols, func(c profile.Column) bool { return c.Name == row[i].Name }) {
				cols = append(cols, profile.Column{Name: row[i].Name})
			}
		}
	}
	p := r.build(e.Schema, e.Table, cols, false)
	r.publish(ref, p)
	return p
}

// build works out a table's plan from its columns.
func (r *Redactor) build(schema, table string, cols []profile.Column, whole bool) *plan {
	name := schema + "." + table
	var rules []rule
	for _, ru := range r.rules {
		if profile.Match(ru.table, name) {
			rules = append(rules, ru)
		}
	}
	var named []string
	for _, classify := range r.classifiers {
		named = append(named, classify(schema, table, cols)...)
	}
	p := &plan{cols: make(map[string]uint64, len(cols)), known: cols, whole: whole || len(rules) == 0 && len(r.classifiers) == 0}
	for _, c := range cols {
		var m uint64
		if slices.Contains(named, c.Name) {
			m = 1
		}
		for _, ru := range rules {
			if ru.column == c.Name || profile.Match(ru.column, c.Name) {
				m |= 1 << ru.bit
			}
		}
		p.cols[c.Name] = m
		p.conds |= m &^ 1
		p.secret = p.secret || m != 0
	}
	if p.whole {
		// Nothing more to learn: keep only what Apply reads (an Odoo
		// database describes a thousand tables, most without secrets).
		p.known = nil
		if !p.secret {
			p.cols = nil
		}
	}
	return p
}

// publish replaces the plan of a table (r.mu held).
func (r *Redactor) publish(ref tableRef, p *plan) {
	old := *r.tables.Load()
	next := make(map[tableRef]*plan, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[ref] = p
	r.tables.Store(&next)
}
