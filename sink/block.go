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
//	3 header seals zstd
//	                 a zstd block of bodies: each record without its seal
//	                 tail (audit.SealTailLen bytes), whose hashes are in seals
//	4 header seals raw
//	                 the same, uncompressed
//
// Blocks 3 and 4 are what the writer makes when every record ends in the
// canonical tail (audit.SplitSealed): the tails' 128 hex digits were two
// fifths of zstd's work on a block (measured on the bench workload) and
// compress badly, their 32-byte hashes do not need it. A reader rebuilds
// each record byte for byte.
//
// seals = prev_hash of the first record (32 bytes), then each record's
// hash (32 bytes each), then uvarint k and k times (uvarint slot, 32-byte
// prev_hash) for the records whose prev_hash is not the hash of the record
// before them in the block (a block rewritten by retention holds records
// apart in the chain), slots ascending.
//
// header = uvarint n (records), then for records 2…n the key as a delta
// from the one before (uvarint commit-LSN delta, then uvarint ordinal:
// the ordinal's delta when the LSN is the same, the ordinal itself when
// not), then n uvarint record lengths. Keys only ascend inside a block.
//
// Stored bytes are untrusted: decodeBlock never panics and never allocates
// more than maxBlockRaw for a block's records (twice for a block of bodies:
// the bodies, then the records rebuilt), whatever the value holds.
const (
	blockZstd      byte = 1
	blockRaw       byte = 2
	blockZstdSeals byte = 3
	blockRawSeals  byte = 4

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
// and raw blocks), into raw (zstd blocks) or into full (blocks of bodies),
// and are reused by the next decode into the same block.
type block struct {
	keys   [][]byte
	recs   [][]byte
	keyBuf []byte
	raw    []byte
	full   []byte // the rebuilt records of a block of bodies
}

// isBlock reports whether a stored value's first byte is a block format.
func isBlock(v []byte) bool { return len(v) > 0 && v[0] >= blockZstd && v[0] <= blockRawSeals }

func hasSeals(format byte) bool { return format == blockZstdSeals || format == blockRawSeals }

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
	if !isBlock(v) {
		return &blockError{key: blockKey, what: "unknown block format"}
	}
	var lensBuf [maxBlockRecords]int
	lens, payload, err := parseHeader(b, blockKey, v, lensBuf[:0])
	if err != nil {
		return err
	}
	var seals []byte
	if hasSeals(v[0]) {
		if seals, payload, err = splitSeals(blockKey, payload, len(lens)); err != nil {
			return err
		}
	}
	total := 0
	for _, l := range lens {
		total += l
	}
	if seals != nil && total+len(lens)*audit.SealTailLen > maxBlockRaw {
		return &blockError{key: blockKey, what: "record lengths"}
	}
	data := payload
	if v[0] == blockZstd || v[0] == blockZstdSeals {
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
	if seals != nil {
		b.rebuild(data, lens, seals)
		return nil
	}
	off := 0
	for _, l := range lens {
		b.recs = append(b.recs, data[off:off+l:off+l])
		off += l
	}
	return nil
}

// splitSeals splits the seals of a block of n records from its payload.
func splitSeals(blockKey, p []byte, n int) (seals, payload []byte, err error) {
	bad := func(what string) error { return &blockError{key: blockKey, what: "seals: " + what} }
	fixed := (1 + n) * audit.HashLen
	if len(p) < fixed {
		return nil, nil, bad("truncated")
	}
	q := p[fixed:]
	k, m := binary.Uvarint(q)
	if m <= 0 || k > uint64(n) {
		return nil, nil, bad("break count")
	}
	q = q[m:]
	last := -1
	for range k {
		slot, m := binary.Uvarint(q)
		if m <= 0 || slot >= uint64(n) || int(slot) <= last || len(q) < m+audit.HashLen {
			return nil, nil, bad("breaks")
		}
		last = int(slot)
		q = q[m+audit.HashLen:]
	}
	return p[:len(p)-len(q)], q, nil
}

// rebuild sets b.recs to the records of a block of bodies: each body
// followed by the seal tail its seals give (checked by splitSeals).
func (b *block) rebuild(bodies []byte, lens []int, seals []byte) {
	n := len(lens)
	need := len(bodies) + n*audit.SealTailLen
	if cap(b.full) < need {
		b.full = make([]byte, 0, need)
	}
	full := b.full[:0]
	hashAt := func(i int) (h audit.Hash) {
		copy(h[:], seals[(1+i)*audit.HashLen:])
		return h
	}
	var prev audit.Hash
	copy(prev[:], seals)
	breaks := seals[(1+n)*audit.HashLen:]
	_, m := binary.Uvarint(breaks)
	breaks = breaks[m:]
	nextBreak := -1
	readBreak := func() {
		nextBreak = -1
		if len(breaks) > 0 {
			slot, m := binary.Uvarint(breaks)
			nextBreak = int(slot)
			breaks = breaks[m:]
		}
	}
	readBreak()
	off := 0
	for i, l := range lens {
		if i == nextBreak {
			copy(prev[:], breaks)
			breaks = breaks[audit.HashLen:]
			readBreak()
		}
		start := len(full)
		full = append(full, bodies[off:off+l]...)
		h := hashAt(i)
		full = audit.AppendSealTail(full, prev, h)
		b.recs = append(b.recs, full[start:len(full):len(full)])
		off += l
		prev = h
	}
	b.full = full
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
	if !isBlock(v) {
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
	// Each record's prev_hash and hash, while every record ends in the
	// canonical seal tail (split): then the block is stored as bodies.
	prevs, hashes []audit.Hash
	split         bool
	bodies        []byte
	// scratch handed to the indexer
	keySlices, recSlices [][]byte
}

func newBlockEncoder() *blockEncoder {
	// No frame checksum: every reader checks each record it decodes against
	// its SHA-256 (checkStored, Verify), which a damaged frame cannot pass.
	z, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithLowerEncoderMem(true), zstd.WithEncoderCRC(false))
	if err != nil {
		panic(err) // constant options
	}
	return &blockEncoder{z: z, split: true}
}

func (e *blockEncoder) reset() {
	e.keys, e.ends, e.raw, e.terms = e.keys[:0], e.ends[:0], e.raw[:0], e.terms[:0]
	e.prevs, e.hashes, e.split = e.prevs[:0], e.hashes[:0], true
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
	e.prevs, e.hashes = append(e.prevs, prev), append(e.hashes, h)
	e.split = e.split && len(body) > 0
	e.add(key, terms)
	return h
}

// addRecord adds an already sealed record to the block.
func (e *blockEncoder) addRecord(key, rec []byte, terms *audit.Terms) {
	if e.split {
		_, prev, h, ok := audit.SplitSealed(rec)
		e.prevs, e.hashes = append(e.prevs, prev), append(e.hashes, h)
		e.split = ok
	}
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
	hdr := make([]byte, 0, 16+4*len(e.ends)+(1+len(e.ends))*audit.HashLen+8)
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
	tail := 0
	if e.split {
		tail = audit.SealTailLen
	}
	start := 0
	for _, end := range e.ends {
		hdr = binary.AppendUvarint(hdr, uint64(end-start-tail))
		start = end
	}
	in, zformat, rformat := e.raw, blockZstd, blockRaw
	if e.split {
		hdr = e.appendSeals(hdr)
		e.bodies = e.bodies[:0]
		start := 0
		for _, end := range e.ends {
			e.bodies = append(e.bodies, e.raw[start:end-tail]...)
			start = end
		}
		in, zformat, rformat = e.bodies, blockZstdSeals, blockRawSeals
	}
	e.zbuf = e.z.EncodeAll(in, e.zbuf[:0])
	format, payload := zformat, e.zbuf
	if len(e.zbuf) >= len(in) {
		format, payload = rformat, in
	}
	v := make([]byte, 0, 1+len(hdr)+len(payload))
	v = append(v, format)
	v = append(v, hdr...)
	return append(v, payload...)
}

// appendSeals appends the block's seals (see the format above).
func (e *blockEncoder) appendSeals(b []byte) []byte {
	b = append(b, e.prevs[0][:]...)
	for i := range e.hashes {
		b = append(b, e.hashes[i][:]...)
	}
	k := 0
	for i := 1; i < len(e.prevs); i++ {
		if e.prevs[i] != e.hashes[i-1] {
			k++
		}
	}
	b = binary.AppendUvarint(b, uint64(k))
	for i := 1; i < len(e.prevs); i++ {
		if e.prevs[i] != e.hashes[i-1] {
			b = binary.AppendUvarint(b, uint64(i))
			b = append(b, e.prevs[i][:]...)
		}
	}
	return b
}
