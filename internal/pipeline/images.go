package pipeline

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash"
	"slices"
	"sync/atomic"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/instancekey"
	"github.com/cdcaudit/cdcaudit/redact"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

// imageCache keeps each audited record's last image, so that an update or
// delete on a table whose before-image the server sends key-only (REPLICA
// IDENTITY DEFAULT or USING INDEX) gets the whole before-image, an exact
// Changed and its unchanged TOASTed values, as if the table were FULL.
//
// The images live in the store (written with the events that made them)
// and, until those are durable, in an overlay here: a lookup that misses
// the overlay reads the store, whose read transactions never wait for the
// writer. It runs on the consumer goroutine, in stream order.
//
// A secret column is never kept in the clear: its image holds a keyed
// token (the redaction's own HMAC when a redaction key is configured, else
// an HMAC under a key derived from the instance key), so Changed stays
// exact and a reconstructed before-image shows what redaction shows.
type imageCache struct {
	store *sink.Store
	shape shapeSource
	// secret reports whether a column of e's table is ever redacted (nil:
	// none is): such key values are tokens in image keys too.
	secret func(e *audit.Event, column string) bool
	// tombstones reports whether a snapshot of the table is in progress:
	// its deleted records are kept as tombstones until it completes, so a
	// snapshot row read before the delete is recognised as older. Nil: no
	// snapshot ever runs. (Set by the snapshot side.)
	tombstones func(schema, table string) bool
	// coveredSince returns the LSN after which the table's updates and
	// deletes have been captured without a break (nil: always; the table
	// as replication.QualifiedName names it): an image written before it
	// may have missed one, and rebuilds nothing.
	coveredSince func(table string) uint64
	// sweepStored: a snapshot was under way when the store was last
	// closed, so tombstones this process did not write may be stored.
	sweepStored bool

	mac   hash.Hash // HMAC-SHA256 under the token key
	keyed bool      // the token key is the redaction key: a token is what redaction shows

	// Events whose store key is at or before replayHead are stored
	// already, with their images: a replay after a crash or reconnect
	// leaves the images alone.
	replayHead []byte

	tables   map[tableRef]*tableOverlay
	seq      uint64        // batches with image writes handed to the store
	durable  atomic.Uint64 // of which the store has this many (writer goroutine)
	inflight []inflightBatch
	writes   []sink.ImageWrite // of the batch being built
	touched  []touch           // of the batch being built

	// reader is the store's read transaction for lookups, open from the
	// first lookup until release (before anything waits for the writer)
	// or until overlay entries are evicted (then it may be older than
	// what left the overlay).
	reader *sink.ImageReader

	// Of the event between apply and record.
	cur     current
	scratch sink.Image
	keyBuf  []byte
}

// shapeSource describes the row being handled: the decoder for the
// stream's changes, the chunk for a snapshot row.
type shapeSource interface {
	Columns() []string
	NewNull(i int) bool
	// FullIdentity: the change's table is REPLICA IDENTITY FULL (as the
	// stream's Relation says now), so the server sends its whole old row.
	FullIdentity() bool
}

type tableRef struct{ schema, table string }

type tableOverlay struct {
	name    string // "schema.table"
	covered string // its name in coverage records (replication.QualifiedName)
	entries map[string]overlayEntry
	dropped uint64 // batch seq of a TRUNCATE not yet durable: the store's images are gone
	// truncXID is the transaction of the table's last TRUNCATE while its
	// snapshot was under way (0: none): a snapshot row whose read did not
	// see it is older than the empty table. Memory is enough: a restart
	// drops the chunks in flight, and chunks read after it see the truncate.
	truncXID uint32
	// tombstoned: this process stored a tombstone of the table since its
	// last sweep, so the sweep has stored ones to remove.
	tombstoned bool
	// unkept: the table's images are dropped and its changes not recorded
	// (FULL identity, no snapshot of it in progress). False at first: the
	// store may hold images of it, so the first change not recorded drops
	// them; and after any change recorded, as images then exist again.
	unkept bool
	full   bool // its last change seen was of REPLICA IDENTITY FULL
	// shapes known to be stored (or written with the batch being built)
	shapes    map[uint64][]string
	lastNames []string // the decoder's names slice of lastShape
	lastShape uint64
}

// overlayEntry is an image write not yet durable: val nil = no image.
type overlayEntry struct {
	val []byte
	seq uint64
}

type touch struct {
	t    *tableOverlay
	key  string
	drop bool
}

type inflightBatch struct {
	seq     uint64
	touched []touch
}

// current is what apply learnt of an event for record.
type current struct {
	active bool
	t      *tableOverlay
	oldKey []byte // the record's key before the change (update, delete)
	newKey []byte
	cols   []sink.ImageColumn // the row to keep, values as received (not redacted)
	names  []string           // its column names: the decoder's (nil: from cols)
	fixes  []fix
}

// fix is a value of a reconstructed row that came from a token: redaction
// must leave it as redaction would have shown the original.
type fix struct {
	before bool
	i      int
	token  []byte
}

// imageTokenPurpose names the key derived from the instance key for tokens.
const imageTokenPurpose = "cdcaudit record image tokens v1"

// newImageCache returns the cache of store. redactKey, when set, keys the
// tokens of secret values; else a key derived from dir's instance key does.
func newImageCache(store *sink.Store, shape shapeSource, redactKey []byte, dir string) (*imageCache, error) {
	key, keyed := redactKey, len(redactKey) > 0
	if !keyed {
		ik, err := instancekey.LoadOrCreate(dir)
		if err != nil {
			return nil, fmt.Errorf("record images: %w", err)
		}
		key = ik.Derive(imageTokenPurpose)
	}
	im := &imageCache{store: store, shape: shape, mac: hmac.New(sha256.New, key), keyed: keyed,
		tables: make(map[tableRef]*tableOverlay)}
	im.replayHead, _, _ = store.Head()
	return im, nil
}

// released is the writer's Release hook: a batch with image writes is
// stored (or the writer failed, and everything stops).
func (im *imageCache) released(b sink.Batch) {
	if len(b.Images) > 0 {
		im.durable.Add(1)
	}
}

// take returns the image writes of the batch being handed to the store,
// and ends the lookups' read transaction: the batch is about to wait for
// the writer.
func (im *imageCache) take() []sink.ImageWrite {
	im.release()
	if len(im.writes) == 0 {
		return nil
	}
	w := im.writes
	im.seq++
	im.inflight = append(im.inflight, inflightBatch{seq: im.seq, touched: im.touched})
	im.writes, im.touched = nil, nil
	return w
}

// reset forgets the overlay after a reconnect: everything handed to the
// store is durable (the writer was flushed), the rest is received again.
func (im *imageCache) reset() {
	im.release()
	clear(im.tables)
	im.inflight, im.writes, im.touched = nil, nil, nil
	im.durable.Store(im.seq)
	im.replayHead, _, _ = im.store.Head()
	im.cur = current{}
}

// evict drops the overlay entries whose batch is durable. The store is
// read only after the count is loaded, so what leaves the overlay is in
// what the store shows.
func (im *imageCache) evict() {
	if len(im.inflight) == 0 || im.inflight[0].seq > im.durable.Load() {
		return
	}
	d := im.durable.Load()
	n := 0
	for _, b := range im.inflight {
		if b.seq > d {
			break
		}
		for _, tc := range b.touched {
			switch {
			case tc.drop:
				if tc.t.dropped == b.seq {
					tc.t.dropped = 0
				}
			default:
				if e, ok := tc.t.entries[tc.key]; ok && e.seq == b.seq {
					delete(tc.t.entries, tc.key)
				}
			}
		}
		n++
	}
	clear(im.inflight[:n])
	im.inflight = im.inflight[n:]
	im.release()
}

// release ends the read transaction of lookups. The consumer calls it
// before anything that may wait for the writer (a Submit, a Flush): the
// writer may have to wait for every read transaction to grow the file's
// mapping.
func (im *imageCache) release() {
	if im.reader != nil {
		im.reader.Close()
		im.reader = nil
	}
}

// read returns the read transaction of lookups, opening it when needed.
func (im *imageCache) read() (*sink.ImageReader, error) {
	if im.reader == nil {
		r, err := im.store.ReadImages()
		if err != nil {
			return nil, err
		}
		im.reader = r
	}
	return im.reader, nil
}

func (im *imageCache) table(schema, name string) *tableOverlay {
	t := im.tables[tableRef{schema, name}]
	if t == nil {
		t = &tableOverlay{name: schema + "." + name, covered: replication.QualifiedName(schema, name), entries: make(map[string]overlayEntry), shapes: make(map[uint64][]string)}
		im.tables[tableRef{schema, name}] = t
	}
	return t
}

// lookup returns the image of key (nil: none), from the overlay or else
// the store, parsed into im.scratch with its column names.
func (im *imageCache) lookup(t *tableOverlay, key []byte) (*sink.Image, error) {
	var v []byte
	if e, ok := t.entries[string(key)]; ok {
		v = e.val
	} else if t.dropped == 0 {
		r, err := im.read()
		if err != nil {
			return nil, err
		}
		if v, err = r.Get(t.name, key); err != nil {
			return nil, err
		}
		v = bytes.Clone(v)
	}
	if v == nil {
		return nil, nil
	}
	img := &im.scratch
	if err := sink.ParseImage(v, img); err != nil {
		return nil, fmt.Errorf("image of %s: %w", t.name, err)
	}
	if img.Deleted {
		return img, nil
	}
	names := t.shapes[img.Shape]
	if names == nil && t.dropped == 0 {
		r, err := im.read()
		if err != nil {
			return nil, err
		}
		if names, err = r.Shape(t.name, img.Shape); err != nil {
			return nil, fmt.Errorf("image of %s: %w", t.name, err)
		}
		if names != nil {
			t.shapes[img.Shape] = names
		}
	}
	if len(names) != len(img.Cols) {
		return nil, nil // its shape is gone: as good as no image
	}
	for i := range img.Cols {
		img.Cols[i].Name = names[i]
	}
	return img, nil
}

// shapeID returns the shape id of names, writing the shape with the batch
// being built when the store may not have it.
func (im *imageCache) shapeID(t *tableOverlay, names []string) (uint64, error) {
	if len(names) > 0 && len(names) == len(t.lastNames) && &names[0] == &t.lastNames[0] {
		return t.lastShape, nil
	}
	id := sink.ShapeID(names)
	if _, ok := t.shapes[id]; !ok {
		var stored []string
		if t.dropped == 0 {
			r, err := im.read()
			if err != nil {
				return 0, err
			}
			if stored, err = r.Shape(t.name, id); err != nil {
				return 0, err
			}
		}
		if stored == nil {
			im.writes = append(im.writes, sink.ImageWrite{Op: sink.ImagePut, Table: t.name, Key: sink.ShapeKey(id), Value: sink.AppendShape(nil, names)})
		}
		t.shapes[id] = slices.Clone(names)
	}
	t.lastNames, t.lastShape = names, id
	return id, nil
}

// apply runs for every event in stream order, before attribution and
// redaction. It fills the before-image of an update or delete whose server
// sent it key-only, and decides what record will keep. keep is false for
// a snapshot row that the stream has already overtaken: it must be
// dropped.
func (im *imageCache) apply(e *audit.Event) (keep bool, err error) {
	im.cur = current{cols: im.cur.cols[:0], fixes: im.cur.fixes[:0]}
	if k := e.StoreKey(); bytes.Compare(k[:], im.replayHead) <= 0 {
		return true, nil // stored already: so are its images
	}
	im.evict()
	if e.Op != audit.OpTruncate && e.Key == nil {
		// No key, no image. A row change that goes unrecorded makes what
		// is kept of its table stale (e.g. a FULL table whose key was
		// dropped, and given back later): it goes too.
		if e.Op != audit.OpSnapshot {
			im.unkeep(im.table(e.Schema, e.Table))
		}
		return true, nil
	}
	t := im.table(e.Schema, e.Table)
	if e.Op != audit.OpTruncate && e.Op != audit.OpSnapshot {
		t.full = im.shape.FullIdentity()
		if t.full && !im.copying(e) {
			// The server sends the whole before-image: nothing to keep.
			// Images are kept for it only while its snapshot runs (see
			// record); what was kept before goes, as it would be stale
			// once a change goes unrecorded.
			im.unkeep(t)
			return true, nil
		}
	}
	t.unkept = false
	im.cur.active = true
	im.cur.t = t
	if e.Op == audit.OpTruncate {
		return true, nil
	}
	im.cur.newKey = im.imageKey(e, e.Key, nil)
	switch e.Op {
	case audit.OpSnapshot:
		if e.ReadAt != nil {
			img, err := im.lookup(im.cur.t, im.cur.newKey)
			if err != nil {
				return true, err
			}
			if (img != nil && !e.ReadAt.Sees(img.XID)) || (im.cur.t.truncXID != 0 && !e.ReadAt.Sees(im.cur.t.truncXID)) {
				im.cur.active = false
				return false, nil // the stream holds a newer state of the record
			}
		}
		im.collect(e)
	case audit.OpInsert:
		im.collect(e)
	case audit.OpUpdate, audit.OpDelete:
		im.cur.oldKey = im.cur.newKey
		if e.Before != nil && keyMoved(e) {
			im.cur.oldKey = im.imageKey(e, e.Key, e.Before)
		}
		var img *sink.Image
		if e.BeforeSource == audit.BeforeUnknown {
			var err error
			if img, err = im.lookup(im.cur.t, im.cur.oldKey); err != nil {
				return true, err
			}
			if img != nil && (img.Deleted || (im.coveredSince != nil && img.LSN <= im.coveredSince(im.cur.t.covered)) ||
				!imageHasKey(img, e.Key, im.cur.oldKey)) {
				img = nil
			}
		}
		rebuilt := noImage
		if img != nil {
			rebuilt = im.reconstruct(e, img)
		}
		switch {
		case rebuilt == wholeImage:
			e.BeforeSource = audit.BeforeReconstructed
		case rebuilt == partImage:
			// The image lacks values (a TOASTed one never sent, a column
			// added since): the before-image stays as the server sent it.
		case e.Op == audit.OpUpdate:
			im.collect(e)
		}
	}
	return true, nil
}

// imageHasKey reports whether img's values of the key's columns are the
// key it was looked up by. Images are keyed by the key's values alone: once
// other columns form the key (REPLICA IDENTITY USING INDEX on another
// index), the same values can find another row's image.
func imageHasKey(img *sink.Image, key audit.Row, want []byte) bool {
	var b []byte
	for _, c := range key {
		i := slices.IndexFunc(img.Cols, func(ic sink.ImageColumn) bool { return ic.Name == c.Name })
		if i < 0 || img.Cols[i].Kind == sink.ColUnknown {
			return false
		}
		b = sink.AppendImageKeyValue(b, img.Cols[i].Value)
	}
	return bytes.Equal(b, want)
}

// keyMoved reports whether the before-image holds other key values than
// the key (an update of the primary key; a delete's key is its old one).
func keyMoved(e *audit.Event) bool {
	for _, c := range e.Key {
		if v, ok := e.Before.Get(c.Name); ok && !bytes.Equal(v, c.Value) {
			return true
		}
	}
	return false
}

// imageKey encodes the key of e's record from the key's columns in row
// (e.Key when row is nil): secret values as tokens.
func (im *imageCache) imageKey(e *audit.Event, key, row audit.Row) []byte {
	b := im.keyBuf[:0]
	for _, c := range key {
		v := c.Value
		if row != nil {
			if v, _ = row.Get(c.Name); v == nil {
				v = c.Value // not in the old tuple: the key did not change
			}
		}
		if im.secret != nil && !audit.IsNull(v) && im.secret(e, c.Name) {
			v = redact.Token(im.mac, v)
		}
		b = sink.AppendImageKeyValue(b, v)
	}
	im.keyBuf = b
	return bytes.Clone(b)
}

// reconstruct fills e's before-image from img, TOAST-unchanged values of
// its after-image, and Changed exactly as the decoder does for a FULL
// table. It reports false (e untouched) when img was written for other
// columns than the table has now (DDL since): an unknown before-image is
// honest, a guessed one is not.
// What reconstruct made of an image.
type rebuild uint8

const (
	noImage    rebuild = iota // none, or one of other columns: unusable
	wholeImage                // before complete, changed exact
	partImage                 // some values unknown: only after's known unchanged values filled
)

func (im *imageCache) reconstruct(e *audit.Event, img *sink.Image) rebuild {
	cols := im.shape.Columns()
	im.cur.names = cols
	if len(img.Cols) != len(cols) {
		return noImage
	}
	partial := false
	for i := range cols {
		if img.Cols[i].Name != cols[i] {
			return noImage
		}
		partial = partial || img.Cols[i].Kind == sink.ColUnknown
	}
	if partial && e.Op == audit.OpDelete {
		return partImage // the image is removed all the same
	}
	before := make(audit.Row, 0, len(cols))
	for i := range img.Cols {
		c := &img.Cols[i]
		switch c.Kind {
		case sink.ColUnknown:
			continue
		case sink.ColToken:
			im.cur.fixes = append(im.cur.fixes, fix{before: true, i: len(before), token: c.Value})
		}
		before = append(before, audit.Column{Name: c.Name, Value: imageValue(c)})
	}
	if e.Op == audit.OpDelete {
		e.Before = before
		return wholeImage
	}
	after := make(audit.Row, 0, len(cols))
	var changed, toast []string
	known := true
	nChanged := 0
	j := 0
	for i, name := range cols {
		c := &img.Cols[i]
		if j < len(e.After) && e.After[j].Name == name {
			v := e.After[j].Value
			j++
			after = append(after, audit.Column{Name: name, Value: v})
			kind, kv := newKind(im.shape, i, v)
			im.cur.cols = append(im.cur.cols, sink.ImageColumn{Name: name, Kind: kind, Value: kv})
			null := kind == sink.ColNull
			var differs bool
			switch c.Kind {
			case sink.ColUnknown:
				known = false
			case sink.ColNull:
				differs = !null
			case sink.ColValue:
				differs = null || !bytes.Equal(c.Value, v)
			case sink.ColToken:
				differs = null || !bytes.Equal(c.Value, redact.Token(im.mac, v))
			}
			if differs {
				changed = append(changed, name)
				nChanged++
			}
			continue
		}
		// Not sent: an unchanged TOASTed value, kept as the image has it.
		im.cur.cols = append(im.cur.cols, *c)
		if c.Kind == sink.ColUnknown {
			toast = append(toast, name)
			continue
		}
		if c.Kind == sink.ColToken {
			im.cur.fixes = append(im.cur.fixes, fix{i: len(after), token: c.Value})
		}
		after = append(after, audit.Column{Name: name, Value: imageValue(c)})
	}
	e.After, e.UnchangedToast = after, toast
	if partial || !known {
		im.cur.fixes = slices.DeleteFunc(im.cur.fixes, func(f fix) bool { return f.before })
		return partImage
	}
	e.Before = before
	e.Changed = make([]string, nChanged)
	copy(e.Changed, changed)
	return wholeImage
}

// imageValue is the encoded value an image column stands for (a token
// for a secret: redaction then shows it as it shows the value).
func imageValue(c *sink.ImageColumn) []byte {
	if c.Kind == sink.ColNull {
		return []byte("null")
	}
	return c.Value
}

// collect notes the row e leaves (its after-image, values as received),
// in the table's column order; columns not in it are unknown (an
// unchanged TOASTed value without an image).
func (im *imageCache) collect(e *audit.Event) {
	cols := im.shape.Columns()
	im.cur.names = cols
	j := 0
	for i, name := range cols {
		c := sink.ImageColumn{Name: name, Kind: sink.ColUnknown}
		if j < len(e.After) && e.After[j].Name == name {
			c.Kind, c.Value = newKind(im.shape, i, e.After[j].Value)
			j++
		}
		im.cur.cols = append(im.cur.cols, c)
	}
}

// newKind is how the image keeps a value of the new row: column i.
func newKind(shape shapeSource, i int, v []byte) (sink.ColumnKind, []byte) {
	if shape.NewNull(i) {
		return sink.ColNull, nil
	}
	return sink.ColValue, v
}

// record runs after redaction: it restores the before- and after-image
// values that came from tokens to what redaction shows for the original
// value, and writes the record's new image (secret values as tokens).
func (im *imageCache) record(e *audit.Event) error {
	if !im.cur.active {
		return nil
	}
	t := im.cur.t
	for _, f := range im.cur.fixes {
		row := e.After
		if f.before {
			row = e.Before
		}
		if f.i < len(row) && slices.Contains(e.Redacted, row[f.i].Name) {
			if im.keyed {
				row[f.i].Value = f.token // exactly redaction's HMAC of the value
			} else {
				row[f.i].Value = redact.PlaceholderJSON()
			}
		}
	}
	switch e.Op {
	case audit.OpTruncate:
		im.drop(t)
		t.truncXID = 0
		if im.copying(e) {
			t.truncXID = e.XID
		}
	case audit.OpDelete:
		im.gone(t, e, im.cur.oldKey)
	case audit.OpUpdate, audit.OpInsert, audit.OpSnapshot:
		if e.Op == audit.OpUpdate && !bytes.Equal(im.cur.oldKey, im.cur.newKey) {
			im.gone(t, e, im.cur.oldKey) // the record lives on under its new key
		}
		for i := range im.cur.cols {
			c := &im.cur.cols[i]
			switch {
			case c.Kind == sink.ColValue && len(e.Redacted) > 0 && slices.Contains(e.Redacted, c.Name):
				c.Kind, c.Value = sink.ColToken, redact.Token(im.mac, c.Value)
			case len(c.Value) >= hugeEvent:
				// A huge value is not copied into the image: it would
				// double what it costs in memory (see hugeEvent). The
				// record's next update then lists it in unchanged_toast,
				// as without an image, when it is unchanged.
				c.Kind, c.Value = sink.ColUnknown, nil
			}
		}
		xid := e.XID
		if e.Op == audit.OpSnapshot {
			xid = 0
		}
		names := im.cur.names
		if names == nil {
			names = make([]string, len(im.cur.cols))
			for i := range im.cur.cols {
				names[i] = im.cur.cols[i].Name
			}
		}
		shape, err := im.shapeID(t, names)
		if err != nil {
			return err
		}
		size := 32
		for i := range im.cur.cols {
			size += len(im.cur.cols[i].Value) + 4
		}
		im.put(t, im.cur.newKey, sink.AppendImage(make([]byte, 0, size), &sink.Image{LSN: e.CommitLSN, XID: xid, Shape: shape, Cols: im.cur.cols}))
	}
	clear(im.cur.cols) // the values belong to the event
	im.cur.active = false
	return nil
}

// copying reports whether a snapshot of e's table is in progress.
func (im *imageCache) copying(e *audit.Event) bool {
	return im.tombstones != nil && im.tombstones(e.Schema, e.Table)
}

// drop removes every image of a table with the batch being built.
func (im *imageCache) drop(t *tableOverlay) {
	clear(t.entries)
	clear(t.shapes) // dropped with the bucket
	t.lastNames = nil
	t.dropped = im.seq + 1
	t.tombstoned = false
	im.writes = append(im.writes, sink.ImageWrite{Op: sink.ImageDrop, Table: t.name})
	im.touched = append(im.touched, touch{t: t, drop: true})
}

// unkeep stops keeping a table's images, dropping those stored: a record
// changed while they are not kept would otherwise keep an older image,
// and a later update under another identity would get a wrong
// before-image from it. Once per process (and after each spell of keeping
// them): dropping a table without images costs a lookup.
func (im *imageCache) unkeep(t *tableOverlay) {
	if !t.unkept {
		im.drop(t)
		t.unkept = true
	}
}

// put writes an image (val nil: removes it) with the batch being built.
func (im *imageCache) put(t *tableOverlay, key, val []byte) {
	k := string(key)
	t.entries[k] = overlayEntry{val: val, seq: im.seq + 1}
	w := sink.ImageWrite{Op: sink.ImagePut, Table: t.name, Key: key, Value: val}
	if val == nil {
		w.Op = sink.ImageDelete
	}
	im.writes = append(im.writes, w)
	im.touched = append(im.touched, touch{t: t, key: k})
}

func (im *imageCache) del(t *tableOverlay, key []byte) { im.put(t, key, nil) }

// gone removes the image of a key whose record e deleted or moved: kept as
// a tombstone while a snapshot of the table is under way, so that a row it
// read before e is known to be older.
func (im *imageCache) gone(t *tableOverlay, e *audit.Event, key []byte) {
	if im.copying(e) {
		im.put(t, key, sink.AppendImage(nil, &sink.Image{LSN: e.CommitLSN, XID: e.XID, Deleted: true}))
		t.tombstoned = true
		return
	}
	im.del(t, key)
}

// sweep removes the tombstones of a table whose snapshot is complete,
// with the next batch; or all its images when its last change was of
// REPLICA IDENTITY FULL: they were kept for the snapshot only.
func (im *imageCache) sweep(schema, table string) {
	t := im.table(schema, table)
	t.truncXID = 0
	if t.full {
		im.unkeep(t)
		return
	}
	for k, en := range t.entries {
		if sink.IsTombstone(en.val) {
			t.entries[k] = overlayEntry{seq: im.seq + 1}
			im.touched = append(im.touched, touch{t: t, key: k})
		}
	}
	if t.tombstoned || im.sweepStored {
		// The store's tombstones: a scan of the table's images, so only
		// when there can be some.
		im.writes = append(im.writes, sink.ImageWrite{Op: sink.ImageSweep, Table: t.name})
	}
	t.tombstoned = false
}
