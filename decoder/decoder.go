// Package decoder turns pgoutput (protocol version 1) messages into audit
// events: it frames transactions (Begin…Commit), caches relations, decodes
// row tuples into JSON-encoded values, fills unchanged TOASTed values from
// the before-image, and reports TRUNCATE and logical decoding messages.
//
// It knows nothing of users, sessions or storage: see the Handler.
package decoder

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
)

// KeyResolver returns the primary-key column names of a relation, in key
// order; nil if it has none. Implemented elsewhere with a catalog query;
// defined here because the decoder consumes it.
//
// The decoder asks it only for tables with REPLICA IDENTITY FULL or NOTHING
// (for DEFAULT and USING INDEX, pgoutput flags the key columns itself), once
// per Relation message, at the first row change that needs it. An error is
// returned from Decode and the question is asked again at the next change.
type KeyResolver interface {
	PrimaryKey(ctx context.Context, relOID uint32) ([]string, error)
}

// Tx is a transaction being decoded. The decoder makes a new one at every
// Begin and never touches it after Commit, so a handler may keep it.
type Tx struct {
	XID        uint32
	CommitLSN  uint64 // Begin's final LSN: the LSN of the commit record
	EndLSN     uint64 // set at Commit: the position to confirm once durable
	CommitTime time.Time
	Messages   []Message // transactional logical messages seen so far
	// SchemaChanged names ("schema.table") the relations whose shape
	// (name, columns, types) this transaction changed, as far as seen so
	// far: the server describes a relation again, inside the transaction,
	// before its first change after DDL. A relation described for the
	// first time since the stream (re)started is no change; nor is one
	// altered by a transaction that did not write it (the server describes
	// it again in the next transaction that does: that one is named).
	SchemaChanged []string
}

// Message is a logical decoding message (pg_logical_emit_message).
type Message struct {
	LSN           uint64
	Prefix        string
	Content       []byte // copied: the handler may keep it
	Transactional bool
}

// Handler receives what the decoder decodes. An error it returns is returned
// from Decode unchanged.
type Handler interface {
	Begin(tx *Tx) error
	// Event is called once per row change (once per table of a TRUNCATE).
	// The handler owns e afterwards: the decoder does not reuse it until
	// the handler calls Recycle. The values of e's rows share one buffer;
	// Key values alias Before/After ones. Events, rows and small values are
	// carved from chunks shared with other events (a kept event keeps its
	// chunks); rows and Changed are capped, so appending to them never
	// reaches a neighbour. An event with big values is made of memory of
	// its own.
	Event(tx *Tx, e *audit.Event) error
	// Message: tx is nil for a non-transactional message.
	Message(tx *Tx, m Message) error
	// Commit: tx.EndLSN is set; the transaction is complete.
	Commit(tx *Tx) error
}

// Decoder decodes one replication stream. It is not safe for concurrent use.
type Decoder struct {
	database string
	source   string // the trail's name, given to every event (SetSource)
	keys     KeyResolver
	rels     map[uint32]*relation
	types    map[uint32]string

	tx      *Tx // nil outside Begin…Commit
	ordinal uint32
	cur     *relation // of the row change being handed to Handler.Event

	// Scratch reused between messages.
	oldT, newT []field
	oldS, newS []span
	keyS       []span
	changed    []int
	oids       []uint32

	slab slab // what events are carved from
}

// New returns a decoder for the stream of the named database. keys may be
// nil: tables with REPLICA IDENTITY FULL or NOTHING then get no key.
func New(database string, keys KeyResolver) *Decoder {
	return &Decoder{
		database: database,
		keys:     keys,
		rels:     make(map[uint32]*relation),
		types:    make(map[uint32]string),
	}
}

// SetSource names the trail every event of the stream carries
// (audit.Event.Source; "" for none).
func (d *Decoder) SetSource(source string) { d.source = source }

// Reset drops the transaction in progress and the relation and type caches:
// call it after a reconnect (the server sends Relation messages again).
func (d *Decoder) Reset() {
	d.tx, d.ordinal = nil, 0
	clear(d.rels)
	clear(d.types)
}

// Recycle tells the decoder that nothing keeps any event it has handed to
// Handler.Event so far, nor any part of one (rows, values, Changed): their
// memory is reused for the next events. A handler that keeps events (or
// may: a callback of someone else's) never calls it.
func (d *Decoder) Recycle() { d.slab.recycle() }

// InTransaction reports whether a Begin was decoded without its Commit.
func (d *Decoder) InTransaction() bool { return d.tx != nil }

// TypeName returns "schema.name" of a type the server described in a Type
// message (it sends one before the first use of a user type's OID).
func (d *Decoder) TypeName(oid uint32) (string, bool) {
	n, ok := d.types[oid]
	return n, ok
}

// Decode decodes one pgoutput message that started at WAL position
// walStart (the XLogData's WALStart) and calls h. data is only read during
// the call.
//
// An error wrapping ErrUnknownMessage is skippable: the decoder's state is
// unchanged. An error wrapping ErrMalformed means the stream cannot be
// trusted; the decoder's state is unchanged too, but a caller normally
// reconnects from its checkpoint and calls Reset. Errors from h and from the
// KeyResolver are returned as they are (the latter wrapped).
func (d *Decoder) Decode(ctx context.Context, walStart uint64, data []byte, h Handler) error {
	if len(data) == 0 {
		return malformed("empty message")
	}
	r := &reader{b: data[1:]}
	switch t := data[0]; t {
	case 'B':
		return d.begin(r, h)
	case 'C':
		return d.commit(r, h)
	case 'I', 'U', 'D':
		return d.change(ctx, t, walStart, r, h)
	case 'R':
		rel, err := parseRelation(r)
		if err != nil {
			return err
		}
		if old := d.rels[rel.oid]; old != nil && d.tx != nil && !rel.sameShape(old) {
			name := rel.schema + "." + rel.table
			if !slices.Contains(d.tx.SchemaChanged, name) {
				d.tx.SchemaChanged = append(d.tx.SchemaChanged, name)
			}
		}
		d.rels[rel.oid] = rel // replaces the old one, e.g. after ALTER TABLE
		return nil
	case 'Y':
		oid, name, err := parseType(r)
		if err == nil {
			d.types[oid] = name
		}
		return err
	case 'O':
		return parseOrigin(r)
	case 'T':
		return d.truncate(walStart, r, h)
	case 'M':
		return d.message(r, h)
	default:
		return fmt.Errorf("%w: %q (0x%02x)", ErrUnknownMessage, t, t)
	}
}

func (d *Decoder) begin(r *reader, h Handler) error {
	m, err := parseBegin(r)
	if err != nil {
		return err
	}
	if d.tx != nil {
		return malformed("begin of xid %d inside transaction %d", m.xid, d.tx.XID)
	}
	d.tx = &Tx{XID: m.xid, CommitLSN: m.finalLSN, CommitTime: m.commitTime}
	d.ordinal = 0
	return h.Begin(d.tx)
}

func (d *Decoder) commit(r *reader, h Handler) error {
	m, err := parseCommit(r)
	if err != nil {
		return err
	}
	tx := d.tx
	if tx == nil {
		return malformed("commit outside a transaction")
	}
	if m.commitLSN != tx.CommitLSN {
		// The events already carry Begin's final LSN in their ids.
		return malformed("commit LSN %s of xid %d differs from its begin's %s",
			audit.FormatLSN(m.commitLSN), tx.XID, audit.FormatLSN(tx.CommitLSN))
	}
	tx.EndLSN = m.endLSN
	d.tx = nil
	return h.Commit(tx)
}

func (d *Decoder) message(r *reader, h Handler) error {
	m, err := parseMessage(r)
	if err != nil {
		return err
	}
	msg := Message{LSN: m.lsn, Prefix: string(m.prefix), Content: bytes.Clone(m.content), Transactional: m.transactional}
	if !msg.Transactional {
		return h.Message(nil, msg)
	}
	if d.tx == nil {
		return malformed("transactional message %q outside a transaction", msg.Prefix)
	}
	d.tx.Messages = append(d.tx.Messages, msg)
	return h.Message(d.tx, msg)
}

func (d *Decoder) truncate(walStart uint64, r *reader, h Handler) error {
	oids, options, err := parseTruncate(r, d.oids)
	d.oids = oids
	if err != nil {
		return err
	}
	if d.tx == nil {
		return malformed("truncate outside a transaction")
	}
	for _, oid := range oids { // all known, or no event at all
		if d.rels[oid] == nil {
			return malformed("truncate of unknown relation %d", oid)
		}
	}
	for _, oid := range oids {
		rel := d.rels[oid]
		var flags []string
		if options&truncateCascade != 0 {
			flags = append(flags, "truncate_cascade")
		}
		if options&truncateRestartIdentity != 0 {
			flags = append(flags, "truncate_restart_identity")
		}
		e := d.newEvent(audit.OpTruncate, walStart, rel, false)
		e.Changed, e.Flags = []string{}, flags
		if err := h.Event(d.tx, e); err != nil {
			return err
		}
	}
	return nil
}

// newEvent returns an event with the next ordinal of the transaction: of
// its own (own), or from the slab.
func (d *Decoder) newEvent(op audit.Op, walStart uint64, rel *relation, own bool) *audit.Event {
	d.ordinal++
	var e *audit.Event
	if own {
		e = new(audit.Event)
	} else {
		e = d.slab.event()
	}
	*e = audit.Event{
		LSN:        walStart,
		CommitLSN:  d.tx.CommitLSN,
		Ordinal:    d.ordinal,
		XID:        d.tx.XID,
		CommitTime: d.tx.CommitTime,
		Database:   d.database,
		Source:     d.source,
		Schema:     rel.schema,
		Table:      rel.table,
		Op:         op,
	}
	return e
}

func (d *Decoder) change(ctx context.Context, t byte, walStart uint64, r *reader, h Handler) error {
	oid := r.u32()
	var op audit.Op
	var oldKind byte // 0: no old tuple, 'K': key columns only, 'O': whole row
	var old, nw []field
	switch t {
	case 'I':
		op = audit.OpInsert
		if k := r.u8(); k != 'N' {
			return badMarker(r, op, k)
		}
		d.newT = parseTuple(r, d.newT)
		nw = d.newT
	case 'U':
		op = audit.OpUpdate
		k := r.u8()
		if k == 'K' || k == 'O' {
			oldKind = k
			d.oldT = parseTuple(r, d.oldT)
			old = d.oldT
			k = r.u8()
		}
		if k != 'N' {
			return badMarker(r, op, k)
		}
		d.newT = parseTuple(r, d.newT)
		nw = d.newT
	case 'D':
		op = audit.OpDelete
		oldKind = r.u8()
		if oldKind != 'K' && oldKind != 'O' {
			return badMarker(r, op, oldKind)
		}
		d.oldT = parseTuple(r, d.oldT)
		old = d.oldT
	}
	if err := r.done(op.String()); err != nil {
		return err
	}
	if d.tx == nil {
		return malformed("%s outside a transaction", op)
	}
	rel := d.rels[oid]
	if rel == nil {
		return malformed("%s of unknown relation %d", op, oid)
	}
	if (oldKind != 0 && len(old) != len(rel.cols)) || (op != audit.OpDelete && len(nw) != len(rel.cols)) {
		return malformed("%s of %s.%s: tuple has %d/%d columns, relation %d",
			op, rel.schema, rel.table, len(old), len(nw), len(rel.cols))
	}
	if !rel.keyDone {
		if err := d.resolveKey(ctx, rel); err != nil {
			return err
		}
	}
	e := d.rowEvent(op, walStart, rel, oldKind, old, nw)
	// The scratch tuples point into the message: let it go (a huge value's
	// message would otherwise live as long as the decoder's next change).
	clear(d.oldT)
	clear(d.newT)
	d.cur = rel
	err := h.Event(d.tx, e)
	d.cur = nil
	return err
}

// Columns returns the column names of the relation whose row change is
// being handed to Handler.Event, in the table's order (nil outside that
// call). The slice is shared: read it, do not keep or change it.
func (d *Decoder) Columns() []string {
	rel := d.cur
	if rel == nil {
		return nil
	}
	if rel.names == nil {
		rel.names = make([]string, len(rel.cols))
		for i, c := range rel.cols {
			rel.names[i] = c.name
		}
	}
	return rel.names
}

// NewNull reports whether column i (of Columns) of the new row of the
// insert or update being handed to Handler.Event is SQL NULL: a json value
// null encodes the same, and only the wire tells them apart.
func (d *Decoder) NewNull(i int) bool {
	return d.cur != nil && i < len(d.newS) && d.newS[i].null
}

// badMarker is the error for an unexpected 'N', 'K' or 'O' byte.
func badMarker(r *reader, op audit.Op, k byte) error {
	if r.bad {
		return r.done(op.String())
	}
	return malformed("%s message: unexpected tuple marker %q", op, k)
}

// resolveKey asks the KeyResolver for the primary key of a FULL or NOTHING
// relation. A key column the relation does not have (e.g. left out of the
// publication's column list) makes the key unusable: no key.
func (d *Decoder) resolveKey(ctx context.Context, rel *relation) error {
	var key []int
	if d.keys != nil {
		names, err := d.keys.PrimaryKey(ctx, rel.oid)
		if err != nil {
			return fmt.Errorf("decoder: primary key of %s.%s: %w", rel.schema, rel.table, err)
		}
		for _, name := range names {
			i := 0
			for i < len(rel.cols) && rel.cols[i].name != name {
				i++
			}
			if i == len(rel.cols) {
				key = nil
				break
			}
			key = append(key, i)
		}
	}
	rel.key, rel.keyDone = key, true
	return nil
}

// span locates an encoded value in an event's arena; lo < 0: absent.
// span locates an encoded value in the event's arena. null marks SQL NULL:
// a json/jsonb value that is JSON null encodes the same, and Changed must
// still tell them apart.
type span struct {
	lo, hi int
	null   bool
}

var absent = span{lo: -1, hi: -1}

func (s span) ok() bool { return s.lo >= 0 }

// rowEvent builds the event of a row change. All encoded values go into one
// arena; the three rows share one slice; all of them, the Event and Changed
// come from the decoder's slab.
func (d *Decoder) rowEvent(op audit.Op, walStart uint64, rel *relation, oldKind byte, old, nw []field) *audit.Event {
	size := 0
	for i := range old {
		size += valueRoom(rel.cols[i].typ, old[i].kind, old[i].data)
	}
	for i := range nw {
		size += valueRoom(rel.cols[i].typ, nw[i].kind, nw[i].data)
	}
	// An event with big values is made of memory of its own, not of the
	// slab's chunks: they would keep its values alive after the handler
	// dropped it (see pipeline's hugeEvent).
	own := size >= ownArena
	e := d.newEvent(op, walStart, rel, own)
	arena := d.slab.arena(size) // grows only for escapes in small values

	// The before-image: the whole row ('O') or only the key columns ('K':
	// the other positions are placeholders, not nulls). complete: every
	// column's old value is known, so Changed can be computed.
	d.oldS = resize(d.oldS, len(old))
	complete := oldKind == 'O'
	nBefore := 0
	for i, f := range old {
		if f.kind == 'u' || (oldKind == 'K' && !rel.cols[i].key) {
			complete = complete && f.kind != 'u'
			d.oldS[i] = absent
			continue
		}
		lo := len(arena)
		arena = appendValue(arena, rel.cols[i].typ, f.kind, f.data)
		d.oldS[i] = span{lo, len(arena), f.kind == 'n'}
		nBefore++
	}

	// The after-image: an unchanged TOASTed value is taken from the
	// before-image, else left out and listed in UnchangedToast.
	d.newS = resize(d.newS, len(nw))
	nAfter, nToast := 0, 0
	for i, f := range nw {
		switch {
		case f.kind != 'u':
			lo := len(arena)
			arena = appendValue(arena, rel.cols[i].typ, f.kind, f.data)
			d.newS[i] = span{lo, len(arena), f.kind == 'n'}
			nAfter++
		case i < len(d.oldS) && d.oldS[i].ok():
			d.newS[i] = d.oldS[i]
			nAfter++
		default:
			d.newS[i] = absent
			nToast++
		}
	}

	// The key: from the new image (the old one for a delete), else from the
	// other one, else left out.
	primary, other := d.newS, d.oldS
	if op == audit.OpDelete {
		primary, other = d.oldS, nil
	}
	d.keyS = d.keyS[:0]
	for _, k := range rel.key {
		switch {
		case primary[k].ok():
			d.keyS = append(d.keyS, primary[k])
		case k < len(other) && other[k].ok():
			d.keyS = append(d.keyS, other[k])
		}
	}

	// Column values are capped slices of the arena, so appending to one
	// cannot overwrite its neighbour.
	d.slab.used(arena)
	var rows audit.Row
	if n := len(d.keyS) + nBefore + nAfter; own {
		rows = make(audit.Row, n)
	} else {
		rows = d.slab.row(n)
	}
	val := func(s span) []byte { return arena[s.lo:s.hi:s.hi] }
	n := 0
	if rel.key != nil {
		for j, s := range d.keyS {
			rows[n] = audit.Column{Name: rel.cols[rel.key[j]].name, Value: val(s)}
			n++
		}
		e.Key = rows[:n:n]
	}
	// image appends the present columns of one tuple to rows.
	image := func(spans []span) audit.Row {
		start := n
		for i, s := range spans {
			if s.ok() {
				rows[n] = audit.Column{Name: rel.cols[i].name, Value: val(s)}
				n++
			}
		}
		return rows[start:n:n]
	}
	if oldKind != 0 {
		e.Before = image(d.oldS)
	}
	switch {
	case op == audit.OpInsert:
	case oldKind == 'O':
		e.BeforeSource = audit.BeforeWAL
	default:
		// Key only, or nothing: whoever keeps the records' last images
		// may reconstruct it.
		e.BeforeSource = audit.BeforeUnknown
	}
	if op != audit.OpDelete {
		e.After = image(d.newS)
	}
	if nToast > 0 {
		e.UnchangedToast = make([]string, 0, nToast)
		for i, s := range d.newS {
			if !s.ok() {
				e.UnchangedToast = append(e.UnchangedToast, rel.cols[i].name)
			}
		}
	}

	switch {
	case op == audit.OpInsert:
		e.Changed = d.slab.strings(len(e.After))
		for i := range e.After {
			e.Changed = append(e.Changed, e.After[i].Name)
		}
	case op == audit.OpDelete:
		e.Changed = []string{}
	case complete:
		// Compare encodings; a TOAST-filled value is the same span.
		d.changed = d.changed[:0]
		for i := range d.newS {
			if differs(arena, d.oldS[i], d.newS[i]) {
				d.changed = append(d.changed, i)
			}
		}
		e.Changed = d.slab.strings(len(d.changed))
		for _, i := range d.changed {
			e.Changed = append(e.Changed, rel.cols[i].name)
		}
	default:
		// An update without a complete before-image: unknowable, nil.
	}
	return e
}

func differs(arena []byte, a, b span) bool {
	if a.ok() != b.ok() || a.null != b.null {
		return true
	}
	return a.ok() && !bytes.Equal(arena[a.lo:a.hi], arena[b.lo:b.hi])
}

func resize(s []span, n int) []span {
	if cap(s) < n {
		return make([]span, n)
	}
	return s[:n]
}
