package sink

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// bucketImages holds each audited record's last image: one nested bucket
// per table ("schema.table"), key = AppendImageKey of the record's key,
// value = AppendImage; and, under ShapeKey(id) (keys beginning with a zero
// byte, which no record key does), the column names of the images that
// name shape id, so that an image holds its values only. Written in the same transaction as the events that
// produced the images, so after a crash they are exactly as of the
// checkpoint. A store made before the bucket existed gets it at its first
// image write.
var bucketImages = []byte("images")

// ImageOp is the kind of an ImageWrite.
type ImageOp uint8

const (
	ImagePut    ImageOp = iota + 1 // store Value under Key
	ImageDelete                    // remove Key
	ImageDrop                      // remove every image of Table (TRUNCATE)
	ImageSweep                     // remove the tombstones of Table (its snapshot is complete)
)

// ImageWrite is one change to the images of a table, applied in order with
// the batch's events.
type ImageWrite struct {
	Op    ImageOp
	Table string // "schema.table"
	Key   []byte // AppendImageKey; ImagePut and ImageDelete only
	Value []byte // AppendImage; ImagePut only
}

// Image is a record's last image: the row as the change with commit LSN
// LSN in transaction XID (0: read by a snapshot) left it, or a tombstone
// (Deleted: the record was deleted while a snapshot of its table ran).
// Shape names its columns (ShapeID of their names, stored once per table).
type Image struct {
	LSN     uint64
	XID     uint32
	Deleted bool
	Shape   uint64
	Cols    []ImageColumn
}

// ImageColumn is one column of an image. Value aliases the bytes the image
// was parsed from. Name is not encoded: it comes from the image's shape.
type ImageColumn struct {
	Name  string
	Kind  ColumnKind
	Value []byte // the encoded value (ColValue) or token (ColToken)
}

// ShapeID identifies a list of column names (FNV-1a, 64 bits, over the
// length-prefixed names).
func ShapeID(names []string) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for _, n := range names {
		for _, c := range binary.AppendUvarint(make([]byte, 0, 10), uint64(len(n))) {
			h = (h ^ uint64(c)) * prime
		}
		for i := 0; i < len(n); i++ {
			h = (h ^ uint64(n[i])) * prime
		}
	}
	return h
}

// ShapeKey is the key of a shape record in a table's images bucket.
func ShapeKey(id uint64) []byte { return binary.BigEndian.AppendUint64([]byte{0}, id) }

func isShapeKey(k []byte) bool { return len(k) > 0 && k[0] == 0 }

// AppendShape encodes column names: a count, then each length-prefixed.
func AppendShape(b []byte, names []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, n := range names {
		b = binary.AppendUvarint(b, uint64(len(n)))
		b = append(b, n...)
	}
	return b
}

// ParseShape decodes AppendShape's encoding.
func ParseShape(b []byte) ([]string, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, errBadImage
	}
	b = b[k:]
	names := make([]string, n)
	for i := range names {
		var name []byte
		if name, b = uvarintBytes(b); b == nil {
			return nil, errBadImage
		}
		names[i] = string(name)
	}
	if len(b) != 0 {
		return nil, errBadImage
	}
	return names, nil
}

// ColumnKind says what an image knows of a column.
type ColumnKind uint8

const (
	ColValue   ColumnKind = iota // Value is the column's encoded value
	ColNull                      // SQL NULL
	ColUnknown                   // not known (an unchanged TOASTed value never seen)
	ColToken                     // a secret: Value is a keyed token of it, never the value
)

const imageDeleted = 1 // flags bit

// IsTombstone reports whether an encoded image is a tombstone.
func IsTombstone(v []byte) bool { return len(v) > 0 && v[0]&imageDeleted != 0 }

// Partial reports whether some column's value is unknown.
func (im *Image) Partial() bool {
	for i := range im.Cols {
		if im.Cols[i].Kind == ColUnknown {
			return true
		}
	}
	return false
}

// AppendImage appends the compact encoding of im: flags (1 byte), LSN (8),
// XID (4), shape (8), the column count, then per column its kind and value
// (length-prefixed).
func AppendImage(b []byte, im *Image) []byte {
	var flags byte
	if im.Deleted {
		flags |= imageDeleted
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, im.LSN)
	b = binary.BigEndian.AppendUint32(b, im.XID)
	b = binary.BigEndian.AppendUint64(b, im.Shape)
	b = binary.AppendUvarint(b, uint64(len(im.Cols)))
	for i := range im.Cols {
		c := &im.Cols[i]
		b = append(b, byte(c.Kind))
		if c.Kind == ColValue || c.Kind == ColToken {
			b = binary.AppendUvarint(b, uint64(len(c.Value)))
			b = append(b, c.Value...)
		}
	}
	return b
}

var errBadImage = errors.New("sink: malformed record image")

// ParseImage decodes AppendImage's encoding into im, reusing im.Cols.
// Values alias b; names are left as they were (the shape's names go there).
func ParseImage(b []byte, im *Image) error {
	if len(b) < 21 {
		return errBadImage
	}
	im.Deleted = b[0]&imageDeleted != 0
	im.LSN = binary.BigEndian.Uint64(b[1:])
	im.XID = binary.BigEndian.Uint32(b[9:])
	im.Shape = binary.BigEndian.Uint64(b[13:])
	b = b[21:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return errBadImage
	}
	b = b[k:]
	if cap(im.Cols) < int(n) {
		old := im.Cols
		im.Cols = make([]ImageColumn, n)
		copy(im.Cols, old)
	}
	im.Cols = im.Cols[:n]
	for i := range im.Cols {
		c := &im.Cols[i]
		if len(b) < 1 {
			return errBadImage
		}
		c.Kind, b = ColumnKind(b[0]), b[1:]
		c.Value = nil
		switch c.Kind {
		case ColValue, ColToken:
			if c.Value, b = uvarintBytes(b); b == nil {
				return errBadImage
			}
		case ColNull, ColUnknown:
		default:
			return errBadImage
		}
	}
	if len(b) != 0 {
		return errBadImage
	}
	return nil
}

// uvarintBytes splits a length-prefixed field off b; rest is nil when b is
// too short (an empty rest is []byte{}).
func uvarintBytes(b []byte) (field, rest []byte) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil
	}
	return b[k : k+int(n) : k+int(n)], b[k+int(n):]
}

// AppendImageKey appends the image key of a record: each key column's
// encoded value, length-prefixed, in key order. Deterministic (values are
// canonical encodings) and never starting with a zero byte.
func AppendImageKey(b []byte, key audit.Row) []byte {
	for i := range key {
		b = AppendImageKeyValue(b, key[i].Value)
	}
	return b
}

// AppendImageKeyValue appends one key column's value to an image key.
func AppendImageKeyValue(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// putImages applies a batch's image writes inside an Append's transaction.
// tables caches the nested buckets of this transaction.
func putImages(tx *bolt.Tx, writes []ImageWrite, tables map[string]*bolt.Bucket) error {
	if len(writes) == 0 {
		return nil
	}
	root, err := tx.CreateBucketIfNotExists(bucketImages)
	if err != nil {
		return err
	}
	for i := range writes {
		w := &writes[i]
		if w.Table == "" {
			return fmt.Errorf("sink: image write without a table")
		}
		switch w.Op {
		case ImageDrop:
			delete(tables, w.Table)
			if err := root.DeleteBucket([]byte(w.Table)); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return fmt.Errorf("sink: drop images of %s: %w", w.Table, err)
			}
			continue
		case ImageSweep:
			if err := sweepTombstones(root.Bucket([]byte(w.Table))); err != nil {
				return fmt.Errorf("sink: sweep tombstones of %s: %w", w.Table, err)
			}
			continue
		case ImagePut, ImageDelete:
		default:
			return fmt.Errorf("sink: unknown image write %d", w.Op)
		}
		b := tables[w.Table]
		if b == nil {
			if b, err = root.CreateBucketIfNotExists([]byte(w.Table)); err != nil {
				return fmt.Errorf("sink: images of %s: %w", w.Table, err)
			}
			// Keys mostly arrive in ascending order (serial keys), and an
			// update rewrites an image in place: fuller pages, fewer written.
			b.FillPercent = 0.9
			tables[w.Table] = b
		}
		if w.Op == ImagePut {
			err = b.Put(w.Key, w.Value)
		} else {
			err = b.Delete(w.Key)
		}
		if err != nil {
			return fmt.Errorf("sink: image of %s: %w", w.Table, err)
		}
	}
	return nil
}

func sweepTombstones(b *bolt.Bucket) error {
	if b == nil {
		return nil
	}
	c := b.Cursor()
	for k, v := c.First(); k != nil; {
		if !isShapeKey(k) && IsTombstone(v) {
			if err := c.Delete(); err != nil {
				return err
			}
			k, v = c.Seek(k) // Delete leaves the cursor where Next would skip a key
			continue
		}
		k, v = c.Next()
	}
	return nil
}

// ImageReader reads images inside one read transaction: open it, look up,
// close it. Never hold one across a wait for the writer (a file that
// outgrows its mapping makes the writer wait for every read transaction).
type ImageReader struct {
	tx   *bolt.Tx
	root *bolt.Bucket
	last string
	b    *bolt.Bucket
}

// ReadImages opens an ImageReader. Close it.
func (s *Store) ReadImages() (*ImageReader, error) {
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("sink: read images: %w", err)
	}
	return &ImageReader{tx: tx, root: tx.Bucket(bucketImages)}, nil
}

// Get returns the stored image of key in table (nil when there is none).
// The bytes are valid until Close: copy what must outlive it.
func (r *ImageReader) Get(table string, key []byte) (v []byte, err error) {
	defer catchDamage(r.tx.DB().Path(), &err)()
	if r.root == nil {
		return nil, nil
	}
	if r.b == nil || r.last != table {
		r.b, r.last = r.root.Bucket([]byte(table)), table
	}
	if r.b == nil {
		return nil, nil
	}
	return r.b.Get(key), nil
}

// Shape returns the column names of shape id in table (nil when unknown).
func (r *ImageReader) Shape(table string, id uint64) ([]string, error) {
	v, err := r.Get(table, ShapeKey(id))
	if v == nil || err != nil {
		return nil, err
	}
	return ParseShape(v)
}

// Close ends the read transaction.
func (r *ImageReader) Close() { r.tx.Rollback() }

// ForEachImage calls fn for every image of table in key order, names
// filled from its shape (tests, tools); key and im are valid only during
// the call.
func (s *Store) ForEachImage(table string, fn func(key []byte, im *Image) error) error {
	return s.view(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketImages)
		if root == nil {
			return nil
		}
		b := root.Bucket([]byte(table))
		if b == nil {
			return nil
		}
		var im Image
		return b.ForEach(guarded(func(k, v []byte) error {
			if isShapeKey(k) {
				return nil
			}
			if err := ParseImage(v, &im); err != nil {
				return fmt.Errorf("sink: image %x of %s: %w", k, table, err)
			}
			if !im.Deleted {
				names, err := ParseShape(b.Get(ShapeKey(im.Shape)))
				if err != nil || len(names) != len(im.Cols) {
					return fmt.Errorf("sink: image %x of %s: its shape is missing or does not fit", k, table)
				}
				for i := range im.Cols {
					im.Cols[i].Name = names[i]
				}
			}
			return fn(k, &im)
		}))
	})
}
