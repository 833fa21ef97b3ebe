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
