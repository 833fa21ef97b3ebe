package pipeline

import (
	"testing"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// rowShape stands in for the decoder's description of a change: the
// table's columns, none SQL NULL.
type rowShape []string

func (s rowShape) Columns() []string { return s }
func (rowShape) NewNull(int) bool    { return false }
func (rowShape) FullIdentity() bool  { return false }

type cacheRig struct {
	t     *testing.T
	st    *sink.Store
	im    *imageCache
	lsn   uint64
	stage []sink.ImageWrite
}

func newCacheRig(t *testing.T) *cacheRig {
	dir := t.TempDir()
	st, err := sink.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	im, err := newImageCache(st, rowShape{"id", "v"}, nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(im.release) // before the store closes: Close waits for read transactions
	return &cacheRig{t: t, st: st, im: im, lsn: 0x1000}
}

// event runs one event through the cache as the consumer does; keep says
// whether it is kept.
func (r *cacheRig) event(op audit.Op, xid uint32, id, v string, readAt *audit.Visibility) (*audit.Event, bool) {
	r.t.Helper()
	r.lsn += 0x100
	e := &audit.Event{CommitLSN: r.lsn, Ordinal: 1, XID: xid, Schema: "public", Table: "t", Op: op, ReadAt: readAt,
		Key: audit.Row{{Name: "id", Value: []byte(id)}}}
	switch op {
	case audit.OpInsert, audit.OpSnapshot:
		e.After = audit.Row{{Name: "id", Value: []byte(id)}, {Name: "v", Value: []byte(v)}}
	case audit.OpUpdate:
		e.After = audit.Row{{Name: "id", Value: []byte(id)}, {Name: "v", Value: []byte(v)}}
		e.BeforeSource = audit.BeforeUnknown
	case audit.OpDelete:
		e.Before = audit.Row{{Name: "id", Value: []byte(id)}}
		e.BeforeSource = audit.BeforeUnknown
	}
	keep, err := r.im.apply(e)
	if err != nil {
		r.t.Fatal(err)
	}
	if keep {
		if err := r.im.record(e); err != nil {
			r.t.Fatal(err)
		}
	}
	return e, keep
}

// store hands the writes so far to the store, as the writer does.
func (r *cacheRig) store() {
	r.t.Helper()
	b := sink.Batch{Images: r.im.take()}
	if _, err := r.st.Append([]sink.Batch{b}); err != nil {
		r.t.Fatal(err)
	}
	r.im.released(b)
}

func (r *cacheRig) stored(id string) *sink.Image {
	r.im.release()
	imgs := map[string]*sink.Image{}
	if err := r.st.ForEachImage("public.t", func(k []byte, im *sink.Image) error {
		imgs[string(k)] = cloneImage(im)
		return nil
	}); err != nil {
		r.t.Fatal(err)
	}
	return imgs[string(sink.AppendImageKey(nil, audit.Row{{Value: []byte(id)}}))]
}

// The snapshot rule: a snapshot row is dropped when the record's image was
// written by a transaction its read did not see (the stream is ahead),
// kept and stored otherwise. While the table's snapshot runs, a delete
// leaves a tombstone that outranks older snapshot rows; the sweep at the
// end of the snapshot removes it.
func TestImageCacheSnapshotRule(t *testing.T) {
	r := newCacheRig(t)
	snapshotOn := true
	r.im.tombstones = func(schema, table string) bool { return snapshotOn && table == "t" }
	sawUpTo := &audit.Visibility{Xmin: 500, Xmax: 500} // saw every xid below 500

	r.event(audit.OpInsert, 400, "1", `"a"`, nil)
	r.event(audit.OpInsert, 600, "2", `"b"`, nil)
	if _, keep := r.event(audit.OpSnapshot, 0, "1", `"a"`, sawUpTo); !keep {
		t.Fatal("a snapshot row that saw the image's transaction was dropped")
	}
	if _, keep := r.event(audit.OpSnapshot, 0, "2", `"old b"`, sawUpTo); keep {
		t.Fatal("a snapshot row older than the stream's image was kept")
	}
	if _, keep := r.event(audit.OpSnapshot, 0, "3", `"c"`, sawUpTo); !keep {
		t.Fatal("a snapshot row of a record the stream never showed was dropped")
	}
	r.event(audit.OpDelete, 700, "3", "", nil) // while the snapshot runs: a tombstone
	r.store()
	if _, keep := r.event(audit.OpSnapshot, 0, "3", `"c again"`, sawUpTo); keep {
		t.Fatal("a snapshot row read before the delete brought the record back")
	}
	if im := r.stored("1"); im == nil || im.XID != 0 || string(im.Cols[1].Value) != `"a"` {
		t.Fatalf("snapshot image of 1: %+v", im)
	}
	if im := r.stored("2"); im == nil || im.XID != 600 || string(im.Cols[1].Value) != `"b"` {
		t.Fatalf("the dropped snapshot row overwrote 2: %+v", im)
	}
	if im := r.stored("3"); im == nil || !im.Deleted || im.XID != 700 {
		t.Fatalf("tombstone of 3: %+v", im)
	}
	// An update of a tombstoned record has no before-image.
	if e, _ := r.event(audit.OpUpdate, 710, "3", `"x"`, nil); e.BeforeSource != audit.BeforeUnknown {
		t.Fatalf("update after a tombstone: %v", e.BeforeSource)
	}
	r.event(audit.OpDelete, 720, "3", "", nil)
	snapshotOn = false
	r.im.sweep("public", "t")
	r.store()
	if im := r.stored("3"); im != nil {
		t.Fatalf("tombstone left after the sweep: %+v", im)
	}
	// The overlay is empty once everything is durable: lookups read the store.
	r.event(audit.OpInsert, 800, "4", `"d"`, nil)
	r.store()
	r.im.evict()
	for _, tb := range r.im.tables {
		if len(tb.entries) != 0 {
			t.Fatalf("%d overlay entries left after their batches were stored", len(tb.entries))
		}
	}
	e, _ := r.event(audit.OpUpdate, 810, "4", `"e"`, nil)
	if e.BeforeSource != audit.BeforeReconstructed || string(e.Before[1].Value) != `"d"` || len(e.Changed) != 1 {
		t.Fatalf("update read from the store: %v %v %v", e.BeforeSource, e.Before, e.Changed)
	}
}

// While a table is copied, a key change and a TRUNCATE that the chunk's
// read did not see outrank its rows: neither the record under its old key
// nor a truncated record comes back.
func TestImageCacheSnapshotRuleKeyChangeAndTruncate(t *testing.T) {
	r := newCacheRig(t)
	r.im.tombstones = func(schema, table string) bool { return table == "t" }
	sawUpTo := &audit.Visibility{Xmin: 500, Xmax: 500}

	r.event(audit.OpInsert, 400, "1", `"a"`, nil)
	// Key 1 becomes 2 in xid 600, which the read did not see.
	r.lsn += 0x100
	moved := &audit.Event{CommitLSN: r.lsn, Ordinal: 1, XID: 600, Schema: "public", Table: "t", Op: audit.OpUpdate,
		Key:    audit.Row{{Name: "id", Value: []byte("2")}},
		Before: audit.Row{{Name: "id", Value: []byte("1")}}, BeforeSource: audit.BeforeUnknown,
		After: audit.Row{{Name: "id", Value: []byte("2")}, {Name: "v", Value: []byte(`"a"`)}}}
	if keep, err := r.im.apply(moved); err != nil || !keep {
		t.Fatal(keep, err)
	}
	if moved.BeforeSource != audit.BeforeReconstructed {
		t.Fatalf("key change: before_source %v", moved.BeforeSource)
	}
	if err := r.im.record(moved); err != nil {
		t.Fatal(err)
	}
	r.store()
	if _, keep := r.event(audit.OpSnapshot, 0, "1", `"a"`, sawUpTo); keep {
		t.Fatal("a row read under the old key before the key change came back")
	}
	if im := r.stored("1"); im == nil || !im.Deleted || im.XID != 600 {
		t.Fatalf("the old key is no tombstone: %+v", im)
	}

	// A truncate in xid 700: rows read before it are older than the empty table.
	r.lsn += 0x100
	tr := &audit.Event{CommitLSN: r.lsn, Ordinal: 1, XID: 700, Schema: "public", Table: "t", Op: audit.OpTruncate}
	if keep, err := r.im.apply(tr); err != nil || !keep {
		t.Fatal(keep, err)
	}
	if err := r.im.record(tr); err != nil {
		t.Fatal(err)
	}
	r.store()
	if _, keep := r.event(audit.OpSnapshot, 0, "5", `"e"`, &audit.Visibility{Xmin: 650, Xmax: 650}); keep {
		t.Fatal("a row read before the truncate came back")
	}
	if _, keep := r.event(audit.OpSnapshot, 0, "6", `"f"`, &audit.Visibility{Xmin: 800, Xmax: 800}); !keep {
		t.Fatal("a row read after the truncate was dropped")
	}
	r.im.sweep("public", "t")
	if _, keep := r.event(audit.OpSnapshot, 0, "7", `"g"`, &audit.Visibility{Xmin: 650, Xmax: 650}); !keep {
		t.Fatal("the truncate outlived the table's snapshot")
	}
}

// The sweep scans the store only when it can hold tombstones: ones this
// process wrote, or ones of a snapshot resumed from a previous run.
func TestImageCacheSweepOnlyWhenNeeded(t *testing.T) {
	r := newCacheRig(t)
	r.im.tombstones = func(schema, table string) bool { return true }
	r.event(audit.OpInsert, 400, "1", `"a"`, nil)
	r.event(audit.OpDelete, 410, "1", "", nil)
	r.store()
	if im := r.stored("1"); im == nil || !im.Deleted {
		t.Fatalf("no tombstone stored: %+v", im)
	}

	// A restart: a cache that wrote no tombstone of its own.
	r.im.release()
	fresh, err := newImageCache(r.st, rowShape{"id", "v"}, nil, r.st.Dir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fresh.release)
	fresh.sweep("public", "t")
	if w := fresh.take(); len(w) != 0 {
		t.Fatalf("a sweep with no tombstone to remove wrote %+v", w)
	}
	fresh.sweepStored = true // the snapshot was resumed from the previous run
	fresh.sweep("public", "t")
	r.im = fresh
	r.store()
	if im := r.stored("1"); im != nil {
		t.Fatalf("the previous run's tombstone outlived the sweep: %+v", im)
	}
}

// identityShape is rowShape with the identity the stream's Relation gives
// the table now.
type identityShape struct {
	rowShape
	full bool
}

func (s *identityShape) FullIdentity() bool { return s.full }

// fullUpdate runs an update of a FULL table through the cache: the server
// sent its whole old row.
func (r *cacheRig) fullUpdate(xid uint32, id, old, v string) *audit.Event {
	r.t.Helper()
	r.lsn += 0x100
	e := &audit.Event{CommitLSN: r.lsn, Ordinal: 1, XID: xid, Schema: "public", Table: "t", Op: audit.OpUpdate,
		Key:          audit.Row{{Name: "id", Value: []byte(id)}},
		Before:       audit.Row{{Name: "id", Value: []byte(id)}, {Name: "v", Value: []byte(old)}},
		BeforeSource: audit.BeforeWAL,
		After:        audit.Row{{Name: "id", Value: []byte(id)}, {Name: "v", Value: []byte(v)}},
		Changed:      []string{"v"}}
	if keep, err := r.im.apply(e); err != nil || !keep {
		r.t.Fatal(keep, err)
	}
	if e.BeforeSource != audit.BeforeWAL || string(e.Before[1].Value) != old {
		r.t.Fatalf("a FULL table's before-image was touched: %v %v", e.BeforeSource, e.Before)
	}
	if err := r.im.record(e); err != nil {
		r.t.Fatal(err)
	}
	return e
}

// pending returns the image writes of the batch being built (left there).
func (r *cacheRig) pending() []sink.ImageWrite { return r.im.writes }

// A FULL table's changes keep no image and read none; the first of them
// drops the table's stored images, once per spell (in a process, and again
// after images were kept), so that a record changed while FULL never gets
// a stale before-image once the table is DEFAULT again, whether the drop
// is durable yet or not.
func TestImageCacheFullIdentity(t *testing.T) {
	r := newCacheRig(t)
	shape := &identityShape{rowShape: rowShape{"id", "v"}}
	r.im.shape = shape
	update := func(xid uint32, id, v string) *audit.Event {
		e, _ := r.event(audit.OpUpdate, xid, id, v, nil)
		return e
	}

	r.event(audit.OpInsert, 400, "1", `"a"`, nil)
	r.event(audit.OpInsert, 400, "2", `"b"`, nil)
	r.store()

	shape.full = true
	r.fullUpdate(410, "1", `"a"`, `"a2"`)
	r.fullUpdate(411, "1", `"a2"`, `"a3"`)
	if w := r.pending(); len(w) != 1 || w[0].Op != sink.ImageDrop || w[0].Table != "public.t" {
		t.Fatalf("FULL changes wrote %+v, want one drop of the table's images", w)
	}
	// DEFAULT again before the drop is durable: the overlay knows.
	shape.full = false
	if e := update(420, "1", `"a4"`); e.BeforeSource != audit.BeforeUnknown {
		t.Fatalf("first update after FULL: before_source %v from a stale image (%v)", e.BeforeSource, e.Before)
	}
	if e := update(421, "1", `"a5"`); e.BeforeSource != audit.BeforeReconstructed || string(e.Before[1].Value) != `"a4"` {
		t.Fatalf("second update after FULL: %v %v", e.BeforeSource, e.Before)
	}
	if e := update(422, "2", `"b2"`); e.BeforeSource != audit.BeforeUnknown {
		t.Fatalf("a record not changed since FULL: before_source %v", e.BeforeSource)
	}
	r.store()
	if im := r.stored("1"); im == nil || string(im.Cols[1].Value) != `"a5"` {
		t.Fatalf("image of 1: %+v", im)
	}

	// A second FULL spell in the same process drops what the DEFAULT one
	// kept, this time once the drop is durable.
	shape.full = true
	r.fullUpdate(430, "1", `"a5"`, `"a6"`)
	if w := r.pending(); len(w) != 1 || w[0].Op != sink.ImageDrop {
		t.Fatalf("second FULL spell wrote %+v, want a drop", w)
	}
	r.store()
	r.im.evict()
	if im := r.stored("1"); im != nil {
		t.Fatalf("an image outlived its table's FULL spell: %+v", im)
	}
	shape.full = false
	if e := update(440, "1", `"a7"`); e.BeforeSource != audit.BeforeUnknown {
		t.Fatalf("after the second FULL spell: before_source %v", e.BeforeSource)
	}
	r.store()

	// A restart: the new process does not know what the store holds, so
	// its first FULL change drops again.
	r.im.release()
	fresh, err := newImageCache(r.st, shape, nil, r.st.Dir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fresh.release)
	r.im = fresh
	shape.full = true
	r.fullUpdate(450, "1", `"a7"`, `"a8"`)
	if w := r.pending(); len(w) != 1 || w[0].Op != sink.ImageDrop {
		t.Fatalf("first FULL change after a restart wrote %+v, want a drop", w)
	}
	r.store()
	shape.full = false
	if e := update(460, "1", `"a9"`); e.BeforeSource != audit.BeforeUnknown {
		t.Fatalf("after a restart and FULL: before_source %v", e.BeforeSource)
	}
}

// While a FULL table's snapshot runs, its changes keep images (the
// snapshot rule needs them); when the snapshot completes they are dropped,
// and changes seen before the snapshotter says so keep them until the next
// change outside the snapshot drops them again.
func TestImageCacheFullIdentityDuringSnapshot(t *testing.T) {
	r := newCacheRig(t)
	shape := &identityShape{rowShape: rowShape{"id", "v"}, full: true}
	r.im.shape = shape
	snapshotOn := true
	r.im.tombstones = func(schema, table string) bool { return snapshotOn }
	sawUpTo := &audit.Visibility{Xmin: 500, Xmax: 500}

	r.fullUpdate(600, "1", `"a"`, `"b"`)
	r.store()
	if im := r.stored("1"); im == nil || im.XID != 600 {
		t.Fatalf("a FULL change while its table is copied kept no image: %+v", im)
	}
	if _, keep := r.event(audit.OpSnapshot, 0, "1", `"a"`, sawUpTo); keep {
		t.Fatal("a snapshot row older than a FULL table's change was kept")
	}
	if _, keep := r.event(audit.OpSnapshot, 0, "2", `"c"`, sawUpTo); !keep {
		t.Fatal("a snapshot row of a record the stream never showed was dropped")
	}
	r.im.sweep("public", "t")            // the last chunk
	r.fullUpdate(610, "2", `"c"`, `"d"`) // the snapshotter does not know yet
	r.store()
	if im := r.stored("1"); im != nil {
		t.Fatalf("a FULL table's image outlived its snapshot: %+v", im)
	}
	if im := r.stored("2"); im == nil || im.XID != 610 {
		t.Fatalf("image of 2: %+v", im)
	}
	snapshotOn = false
	r.fullUpdate(620, "2", `"d"`, `"e"`)
	if w := r.pending(); len(w) != 1 || w[0].Op != sink.ImageDrop {
		t.Fatalf("the first change after the snapshot wrote %+v, want a drop", w)
	}
	r.store()
	if im := r.stored("2"); im != nil {
		t.Fatalf("an image kept after the snapshot: %+v", im)
	}
}
