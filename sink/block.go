package sink

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/klauspost/compress/zstd"
)

// The value stored in the events bucket under a block's key (the key of
// its first record) is one of:
//
//	'{' …            a bare record: one record exactly as audit.Seal made it
//	                 (every record of a format-2 store; a huge record now)
//	1 header zstd    a zstd block: the records concatenated, one zstd frame
//	2 header raw     a raw block: the same, uncompressed (zstd did not shrink it)
//
// header = uvarint n (records), then for records 2…n the key as a delta
// from the one before (uvarint commit-LSN delta, then uvarint ordinal:
// the ordinal's delta when the LSN is the same, the ordinal itself when
// not), then n uvarint record lengths. Keys only ascend inside a block.
//
// Stored bytes are untrusted: decodeBlock never panics and never allocates
// more than maxBlockRaw for a block, whatever the value holds.
const (
	blockZstd byte = 1
	blockRaw  byte = 2

	// A block holds at most maxBlockRecords records and is closed once its
	// records reach blockTargetRaw bytes: measured, 64 records compress to
	// about 82 B each and decode in ~2 µs each; a reader of one record
	// decodes its whole block. Index slots fit a 64-bit bitmap.
	maxBlockRecords = 64
	blockTargetRaw  = 256 << 10
	// hugeRecord and above is stored bare, sealed in place in the producer's
	// buffer: never copied into a block, never compressed (a 100 MB value
	// costs its size once more in bbolt's pages, not three times).
	hugeRecord = 1 << 20
	// maxBlockRaw bounds what decoding one block may allocate: a block
	// never holds more than blockTargetRaw plus one record below hugeRecord.
	maxBlockRaw = 4 << 20
	// maxDecodeRecords bounds a block's record count when decoding.
	maxDecodeRecords = 4096
)

// blockError is a block that cannot be decoded: damaged or altered.
type blockError struct {
	key  []byte
	what string
}

func (e *blockError) Error() string {
	return fmt.Sprintf("the block of records at %s cannot be read (%s)", keyID(e.key), e.what)
}

func (e *blockError) Unwrap() error { return ErrDamaged }

// block is a decoded block. Its slices point into the stored value (bare
// and raw blocks) or into raw (zstd blocks), and are reused by the next
// decode into the same block.
type block struct {
	keys   [][]byte
	recs   [][]byte
	keyBuf []byte
	raw    []byte
}

// isBare reports whether a stored value is one bare record.
func isBare(v []byte) bool { return len(v) > 0 && v[0] == '{' }

// parseHeader parses the header of the block stored as v at blockKey: the
// keys (into b), the record lengths (appended to lens), and the payload.
func parseHeader(b *block, blockKey, v []byte, lens []int) ([]int, []byte, error) {
	bad := func(format string, args ...any) error {
		return &blockError{key: blockKey, what: fmt.Sprintf(format, args...)}
	}
	lsn, ord, ok := audit.SplitKey(blockKey)
	if !ok {
		return nil, nil, bad("malformed block key %x", blockKey)
	}
	p := v[1:]
	uv := func() (uint64, bool) {
		x, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, false
		}
		p = p[n:]
		return x, true
	}
	n, ok := uv()
	if !ok || n == 0 || n > maxDecodeRecords {
		return nil, nil, bad("record count")
	}
	b.keyBuf = b.keyBuf[:0]
	b.keyBuf = append(b.keyBuf, blockKey...)
	for i := uint64(1); i < n; i++ {
		dl, ok1 := uv()
		o, ok2 := uv()
		switch {
		case !ok1 || !ok2:
			return nil, nil, bad("truncated header")
		case dl == 0 && (o == 0 || uint64(ord)+o > math.MaxUint32):
			return nil, nil, bad("keys out of order")
		case dl == 0:
			ord += uint32(o)
		case lsn+dl < lsn || o > math.MaxUint32:
			return nil, nil, bad("key out of range")
		default:
			lsn, ord = lsn+dl, uint32(o)
		}
		k := audit.MakeKey(lsn, ord)
		b.keyBuf = append(b.keyBuf, k[:]...)
	}
	lens = lens[:0]
	total := 0
	for range n {
		l, ok := uv()
		if !ok || l == 0 || l > maxBlockRaw || total+int(l) > maxBlockRaw {
			return nil, nil, bad("record lengths")
		}
		total += int(l)
		lens = append(lens, int(l))
	}
	b.keys = b.keys[:0]
	for i := range int(n) {
		b.keys = append(b.keys, b.keyBuf[i*audit.KeyLen:(i+1)*audit.KeyLen:(i+1)*audit.KeyLen])
	}
	return lens, p, nil
}

// decodeBlock decodes the stored value v of the block at blockKey into b.
func decodeBlock(b *block, blockKey, v []byte) error {
	if isBare(v) {
		b.keys = append(b.keys[:0], blockKey)
		b.recs = append(b.recs[:0], v)
		return nil
	}
	if len(v) == 0 || (v[0] != blockZstd && v[0] != blockRaw) {
		return &blockError{key: blockKey, what: "unknown block format"}
	}
	var lensBuf [maxBlockRecords]int
	lens, payload, err := parseHeader(b, blockKey, v, lensBuf[:0])
	if err != nil {
		return err
	}
	total := 0
	for _, l := range lens {
		total += l
	}
	data := payload
	if v[0] == blockZstd {
		if cap(b.raw) < total {
			b.raw = make([]byte, 0, total)
		}
		out, err := zstdDecoder().DecodeAll(payload, b.raw[:0:total])
		if err != nil {
			return &blockError{key: blockKey, what: "zstd: " + err.Error()}
		}
		data = out
	}
	if len(data) != total {
		return &blockError{key: blockKey, what: fmt.Sprintf("%d bytes of records where the header says %d", len(data), total)}
	}
	b.recs = b.recs[:0]
	off := 0
	for _, l := range lens {
		b.recs = append(b.recs, data[off:off+l:off+l])
		off += l
	}
	return nil
}

// blockHas reports the slot of key in the block stored as v at blockKey
// (-1 when the block does not hold it), reading the header only.
func blockHas(blockKey, v, key []byte) (int, error) {
	if isBare(v) {
		if string(blockKey) == string(key) {
			return 0, nil
		}
		return -1, nil
	}
	if len(v) == 0 || (v[0] != blockZstd && v[0] != blockRaw) {
		return -1, &blockError{key: blockKey, what: "unknown block format"}
	}
	var b block
	var lensBuf [maxBlockRecords]int
	if _, _, err := parseHeader(&b, blockKey, v, lensBuf[:0]); err != nil {
		return -1, err
	}
	for i, k := range b.keys {
		if string(k) == string(key) {
			return i, nil
		}
	}
	return -1, nil
}

var zstdDecoder = sync.OnceValue(func() *zstd.Decoder {
	// One decoder for every reader: DecodeAll is safe for concurrent use
	// and keeps a pool of GOMAXPROCS block decoders. The cap limit makes a
	// frame that claims more than the header's lengths fail, not allocate.
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxBlockRaw),
		zstd.WithDecoderMaxWindow(maxBlockRaw), zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		panic(err) // constant options
	}
	return d
})

// blockEncoder builds the blocks of the writer path (Append, rewrites):
// one at a time, under the store's write lock, with one zstd encoder.
type blockEncoder struct {
	z     *zstd.Encoder
	keys  []byte // the block's keys, KeyLen each
	ends  []int  // end offset of each record in raw
	raw   []byte // the records, concatenated
	zbuf  []byte
	terms []*audit.Terms
	// scratch handed to the indexer
	keySlices, recSlices [][]byte
}

func newBlockEncoder() *blockEncoder {
	z, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithLowerEncoderMem(true))
	if err != nil {
		panic(err) // constant options
	}
	return &blockEncoder{z: z}
}

func (e *blockEncoder) reset() {
	e.keys, e.ends, e.raw, e.terms = e.keys[:0], e.ends[:0], e.raw[:0], e.terms[:0]
}

func (e *blockEncoder) len() int { return len(e.ends) }

// fits reports whether a record of n bytes still goes into the block.
func (e *blockEncoder) fits(n int) bool {
	return len(e.ends) == 0 || (len(e.ends) < maxBlockRecords && len(e.raw)+n <= blockTargetRaw)
}

// seal seals body after prev into the block under key.
func (e *blockEncoder) seal(key, body []byte, prev audit.Hash, terms *audit.Terms) audit.Hash {
	var h audit.Hash
	e.raw, h = audit.Seal(e.raw, body, prev)
	e.add(key, terms)
	return h
}

// addRecord adds an already sealed record to the block.
func (e *blockEncoder) addRecord(key, rec []byte, terms *audit.Terms) {
	e.raw = append(e.raw, rec...)
	e.add(key, terms)
}

func (e *blockEncoder) add(key []byte, terms *audit.Terms) {
	e.keys = append(e.keys, key...)
	e.ends = append(e.ends, len(e.raw))
	e.terms = append(e.terms, terms)
}

// slices returns the block's keys and records (valid until the next reset).
func (e *blockEncoder) slices() (keys, recs [][]byte) {
	e.keySlices, e.recSlices = e.keySlices[:0], e.recSlices[:0]
	start := 0
	for i, end := range e.ends {
		e.keySlices = append(e.keySlices, e.keys[i*audit.KeyLen:(i+1)*audit.KeyLen])
		e.recSlices = append(e.recSlices, e.raw[start:end])
		start = end
	}
	return e.keySlices, e.recSlices
}

// encode returns the stored value of the block: a new slice (bbolt holds
// it until the transaction commits).
func (e *blockEncoder) encode() []byte {
	hdr := make([]byte, 0, 16+4*len(e.ends))
	hdr = binary.AppendUvarint(hdr, uint64(len(e.ends)))
	lsn, ord, _ := audit.SplitKey(e.keys[:audit.KeyLen])
	for i := 1; i < len(e.ends); i++ {
		l, o, _ := audit.SplitKey(e.keys[i*audit.KeyLen : (i+1)*audit.KeyLen])
		if l == lsn {
			hdr = binary.AppendUvarint(hdr, 0)
			hdr = binary.AppendUvarint(hdr, uint64(o-ord))
		} else {
			hdr = binary.AppendUvarint(hdr, l-lsn)
			hdr = binary.AppendUvarint(hdr, uint64(o))
		}
		lsn, ord = l, o
	}
	start := 0
	for _, end := range e.ends {
		hdr = binary.AppendUvarint(hdr, uint64(end-start))
		start = end
	}
	e.zbuf = e.z.EncodeAll(e.raw, e.zbuf[:0])
	format, payload := blockZstd, e.zbuf
	if len(e.zbuf) >= len(e.raw) {
		format, payload = blockRaw, e.raw
	}
	v := make([]byte, 0, 1+len(hdr)+len(payload))
	v = append(v, format)
	v = append(v, hdr...)
	return append(v, payload...)
}
