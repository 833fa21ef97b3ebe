package sink

import (
	"bytes"
	"testing"

	"github.com/cdcaudit/cdcaudit/audit"
)

var testShape = []string{"id", "note", "big", "password"}

func imagePut(table string, id string, lsn uint64, deleted bool) ImageWrite {
	key := AppendImageKey(nil, audit.Row{{Name: "id", Value: []byte(id)}})
	im := &Image{LSN: lsn, XID: 7, Deleted: deleted, Shape: ShapeID(testShape), Cols: []ImageColumn{
		{Value: []byte(id)}, {Kind: ColNull}, {Kind: ColUnknown},
		{Kind: ColToken, Value: []byte(`"hmac-sha256:00"`)},
	}}
	return ImageWrite{Op: ImagePut, Table: table, Key: key, Value: AppendImage(nil, im)}
}

func shapePut(table string) ImageWrite {
	return ImageWrite{Op: ImagePut, Table: table, Key: ShapeKey(ShapeID(testShape)), Value: AppendShape(nil, testShape)}
}

func readImage(t *testing.T, s *Store, table, id string) *Image {
	t.Helper()
	r, err := s.ReadImages()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	v, err := r.Get(table, AppendImageKey(nil, audit.Row{{Name: "id", Value: []byte(id)}}))
	if err != nil {
		t.Fatal(err)
	}
	if v == nil {
		return nil
	}
	im := &Image{}
	if err := ParseImage(bytes.Clone(v), im); err != nil {
		t.Fatal(err)
	}
	return im
}

func TestImageEncoding(t *testing.T) {
	w := imagePut("public.t", "42", 0x1234, true)
	var im Image
	if err := ParseImage(w.Value, &im); err != nil {
		t.Fatal(err)
	}
	if im.LSN != 0x1234 || im.XID != 7 || !im.Deleted || !im.Partial() || len(im.Cols) != 4 || im.Shape != ShapeID(testShape) ||
		string(im.Cols[0].Value) != "42" || im.Cols[1].Kind != ColNull ||
		im.Cols[3].Kind != ColToken || string(im.Cols[3].Value) != `"hmac-sha256:00"` {
		t.Fatalf("round trip: %+v", im)
	}
	if !bytes.Equal(AppendImage(nil, &im), w.Value) {
		t.Fatal("re-encoding differs")
	}
	for i := range len(w.Value) {
		if err := ParseImage(w.Value[:i], &im); err == nil {
			t.Fatalf("truncated image of %d bytes accepted", i)
		}
	}
	names, err := ParseShape(AppendShape(nil, testShape))
	if err != nil || len(names) != 4 || names[3] != "password" {
		t.Fatalf("shape round trip: %v %v", names, err)
	}
	if ShapeID([]string{"ab", "c"}) == ShapeID([]string{"a", "bc"}) || ShapeKey(1)[0] != 0 {
		t.Fatal("shape ids or keys collide")
	}
	// Keys: deterministic, and distinct for (1,23) and (12,3).
	a := AppendImageKey(nil, audit.Row{{Name: "a", Value: []byte("1")}, {Name: "b", Value: []byte("23")}})
	b := AppendImageKey(nil, audit.Row{{Name: "a", Value: []byte("12")}, {Name: "b", Value: []byte("3")}})
	if bytes.Equal(a, b) || a[0] == 0 {
		t.Fatalf("keys %x %x", a, b)
	}
}

// Image writes are stored in the same transaction as the batch's events and
// checkpoint: an Append that fails stores none of them; a truncate drops a
// table's images; a sweep removes its tombstones only.
func TestImagesInAppend(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	// A format-2 store written before images existed: events only.
	mustAppend(t, s, txBatch(0x100, 2))
	s.Close()
	s = mustOpen(t, dir)
	defer s.Close()
	if readImage(t, s, "public.t", "1") != nil {
		t.Fatal("image in a store that has none")
	}

	b := txBatch(0x200, 1)
	b.Images = []ImageWrite{shapePut("public.t"), imagePut("public.t", "1", 0x200, false), imagePut("public.t", "2", 0x200, false), shapePut("public.u"), imagePut("public.u", "1", 0x200, true)}
	mustAppend(t, s, b)
	if im := readImage(t, s, "public.t", "2"); im == nil || im.LSN != 0x200 {
		t.Fatalf("image not stored: %+v", im)
	}

	// A batch whose events are out of order fails whole: no image, no checkpoint.
	bad := Batch{Events: []Encoded{ev(0x150, 1)}, Checkpoint: 0x400,
		Images: []ImageWrite{{Op: ImageDelete, Table: "public.t", Key: imagePut("public.t", "1", 0, false).Key}}}
	if _, err := s.Append([]Batch{bad}); err == nil {
		t.Fatal("out-of-order append accepted")
	}
	if readImage(t, s, "public.t", "1") == nil || s.Checkpoint() != 0x208 {
		t.Fatalf("failed append changed the store: checkpoint %x", s.Checkpoint())
	}

	// Delete, then drop and re-put in one batch, then sweep.
	b = txBatch(0x300, 1)
	b.Images = []ImageWrite{
		{Op: ImageDelete, Table: "public.t", Key: imagePut("public.t", "1", 0, false).Key},
		{Op: ImageDrop, Table: "public.t"},
		shapePut("public.t"),
		imagePut("public.t", "3", 0x300, false),
		imagePut("public.u", "2", 0x300, false),
		{Op: ImageSweep, Table: "public.u"},
		{Op: ImageDrop, Table: "public.never"},
	}
	mustAppend(t, s, b)
	if readImage(t, s, "public.t", "2") != nil || readImage(t, s, "public.t", "3") == nil {
		t.Fatal("drop did not remove the table's older images, or removed the later one")
	}
	if readImage(t, s, "public.u", "1") != nil || readImage(t, s, "public.u", "2") == nil {
		t.Fatal("sweep: the tombstone stayed or the image went")
	}
	// A batch with only image writes is stored (not taken for a replay).
	mustAppend(t, s, Batch{Images: []ImageWrite{{Op: ImageDelete, Table: "public.t", Key: imagePut("public.t", "3", 0, false).Key}}})
	if readImage(t, s, "public.t", "3") != nil {
		t.Fatal("image-only batch not stored")
	}
	n := 0
	err := s.ForEachImage("public.u", func(k []byte, im *Image) error {
		if n++; im.Cols[3].Name != "password" || im.Cols[3].Kind != ColToken {
			t.Errorf("ForEachImage: %+v", im)
		}
		return nil
	})
	if err != nil || n != 1 {
		t.Fatalf("ForEachImage: %d, %v (the shape record is no image)", n, err)
	}
}
