package sink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
)

// ErrDamaged is wrapped by every error about a store file that is not as
// bbolt and cdcaudit wrote it: truncated, overwritten, or holding a page or
// a record that cannot be read back.
var ErrDamaged = errors.New("the store file is damaged")

type damageError struct{ path, what string }

func (e *damageError) Error() string {
	return "sink: " + e.path + ": the store file is damaged: " + e.what +
		" (restore the store from a backup: see 'cdcaudit backup --help')"
}

func (e *damageError) Unwrap() error { return ErrDamaged }

func damaged(path, format string, args ...any) error {
	return &damageError{path: path, what: fmt.Sprintf(format, args...)}
}

// catchDamage turns what a damaged file does to bbolt into an error: a
// panic on a corrupt page, and (with SetPanicOnFault) a fault on a page the
// file no longer holds, which would otherwise kill the process. Use it as
// defer catchDamage(path, &err)() around every call into bbolt; it is
// per goroutine, and callbacks run on the calling goroutine.
// A panic of the caller's own code (a callback of Scan or LoadState) is
// not damage: it goes on as the panic it was.
func catchDamage(path string, err *error) func() {
	old := debug.SetPanicOnFault(true)
	return func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			if cp, ok := r.(callerPanic); ok {
				panic(cp.v)
			}
			*err = damaged(path, "bbolt cannot read it: %v", r)
		}
	}
}

// callerPanic carries a panic of a caller's callback through catchDamage.
type callerPanic struct{ v any }

// guarded runs a caller's callback so that its panic is not taken for
// damage of the file. A fault reading the key or value it was handed (a
// damaged page pointing outside the file: SetPanicOnFault's error, which
// has an Addr; a nil dereference has none) is damage all the same.
func guarded(fn func(k, v []byte) error) func(k, v []byte) error {
	return func(k, v []byte) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if _, fault := r.(interface{ Addr() uintptr }); fault {
					panic(r)
				}
				panic(callerPanic{r})
			}
		}()
		return fn(k, v)
	}
}

// bbolt's on-disk meta page: a 16-byte page header, then magic, version,
// page size, flags, root bucket (root page, sequence), freelist page, high
// water mark (pages in use), txid and an FNV-64a checksum of what precedes it.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	pageHeaderLen  = 16
	metaSummedLen  = 56
	metaLen        = metaSummedLen + 8
	minBoltPageLen = 512
)

type boltMeta struct {
	pageSize uint32
	pages    uint64 // high water mark
	txid     uint64
}

func readBoltMeta(f io.ReaderAt, off int64) (boltMeta, bool) {
	var b [pageHeaderLen + metaLen]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return boltMeta{}, false
	}
	m := b[pageHeaderLen:]
	le := binary.LittleEndian
	h := fnv.New64a()
	h.Write(m[:metaSummedLen])
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion || le.Uint64(m[metaSummedLen:]) != h.Sum64() {
		return boltMeta{}, false
	}
	ps := le.Uint32(m[8:])
	if ps < minBoltPageLen || ps&(ps-1) != 0 {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: ps, pages: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// checkFile compares an existing store file with what its bbolt meta pages
// say, before bbolt maps it: a read of a page past the end of a truncated
// file would kill the process with SIGBUS, and bbolt would initialise an
// empty (0-byte) file as a new store, silently starting a new history.
func checkFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sink: open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("sink: %s: %w", path, err)
	}
	size := fi.Size()
	if size == 0 {
		return damaged(path, "it is empty (0 bytes): truncated, or its creation was interrupted (then nothing was ever stored in it: delete it)")
	}
	m0, ok0 := readBoltMeta(f, 0)
	pageSize := int64(os.Getpagesize())
	if ok0 {
		pageSize = int64(m0.pageSize)
	}
	m1, ok1 := readBoltMeta(f, pageSize)
	var m boltMeta
	switch {
	case ok0 && ok1 && m1.txid > m0.txid, !ok0 && ok1:
		m = m1
	case ok0:
		m = m0
	default:
		return damaged(path, "neither of its two meta pages is valid (%d bytes; overwritten, truncated, or not a cdcaudit store)", size)
	}
	if need := int64(m.pages) * int64(m.pageSize); m.pages < 2 || need > size || need/int64(m.pageSize) != int64(m.pages) {
		return damaged(path, "truncated: the file is %d bytes, but its meta page says it holds %d pages of %d bytes (%d bytes)",
			size, m.pages, m.pageSize, need)
	}
	return nil
}
