package sink

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// The access log records who read or acted on the audit trail: sign-ins
// (ok or failed), exports, admin actions. It is a hash chain of its own,
// sealed like the events (audit.Seal: SHA-256 over the canonical JSON),
// in the bucket "access" keyed by sequence number (8 bytes, big-endian,
// from 1), its head (count and last hash) in meta, so that an entry
// altered, removed, inserted or cut off the end fails Verify. Retention
// never prunes it: it grows by a few entries per sign-in or export.
//
// An entry's record:
//
//	{"id":"access-<16 hex digits: seq>","time":…,"action":…,"result":…,
//	 "role":…,"login":…,"via":…,"address":…,<detail fields>,
//	 "prev_hash":…,"hash":…}
var (
	bucketAccess    = []byte("access")
	metaAccessCount = []byte("access_count")
	metaAccessHead  = []byte("access_head")
	accessIDPrefix  = "access-"
)

// AccessEntry is one entry of the access log. Secrets (passwords, tokens,
// cookies, TOTP codes) never go in: the caller names who and what only.
type AccessEntry struct {
	Time   time.Time
	Action string // "signin", "signout", "export", …
	Result string // "ok", "failed", "refused", …
	// Who: the principal's role, login and how it signed in (any may be
	// empty for a failed sign-in: then Login is the login that was tried).
	Role, Login, Via string
	Address          string  // the client's address
	Detail           []Field // more members, already JSON (the export's filter, count, manifest hash …)
}

// maxAccessField bounds each string an entry takes from a request.
const maxAccessField = 512

// AccessRecord is an access log entry as stored, with its sequence number.
type AccessRecord struct {
	Seq    uint64
	Record []byte // valid only during the callback
}

// AppendAccess appends e to the access log in its own transaction and
// returns its sequence number once it is durable.
func (s *Store) AppendAccess(e AccessEntry) (uint64, error) {
	if s.readOnly {
		return 0, errors.New("sink: the access log of a store opened read-only cannot grow")
	}
	if e.Action == "" || e.Result == "" {
		return 0, errors.New("sink: an access log entry needs an action and a result")
	}
	for _, f := range e.Detail {
		if !validMemberName(f.Name) || len(f.Value) == 0 {
			return 0, fmt.Errorf("sink: access log entry: malformed member %q", f.Name)
		}
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.done {
		return 0, errors.New("sink: store closed")
	}
	var seq uint64
	err := s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		b, err := tx.CreateBucketIfNotExists(bucketAccess)
		if err != nil {
			return err
		}
		n := getUint64(meta, metaAccessCount)
		var prev audit.Hash
		if n > 0 {
			if h := meta.Get(metaAccessHead); len(h) == audit.HashLen {
				copy(prev[:], h)
			} else {
				return damaged(s.db.Path(), "the access log's head is missing: run 'cdcaudit verify'")
			}
		}
		seq = n + 1
		rec, h := audit.Seal(nil, accessBody(seq, e), prev)
		if err := b.Put(binary.BigEndian.AppendUint64(nil, seq), rec); err != nil {
			return err
		}
		if err := meta.Put(metaAccessCount, binary.BigEndian.AppendUint64(nil, seq)); err != nil {
			return err
		}
		return meta.Put(metaAccessHead, h[:])
	})
	if err != nil {
		return 0, err
	}
	return seq, nil
}

// accessBody encodes an entry up to its prev_hash, as AppendBody does an
// event's.
func accessBody(seq uint64, e AccessEntry) []byte {
	b := append(make([]byte, 0, 256), `{"id":"`...)
	b = append(b, accessID(seq)...)
	b = append(b, `","time":"`...)
	b = audit.AppendTime(b, e.Time)
	b = append(b, '"')
	for _, m := range [...]struct{ name, value string }{
		{"action", e.Action}, {"result", e.Result}, {"role", e.Role}, {"login", e.Login},
		{"via", e.Via}, {"address", e.Address},
	} {
		b = append(b, `,"`...)
		b = append(b, m.name...)
		b = append(b, `":`...)
		if m.value == "" {
			b = append(b, "null"...)
			continue
		}
		v := m.value
		if len(v) > maxAccessField { // a request cannot grow the log without bound
			cut := maxAccessField
			for cut > 0 && !utf8.RuneStart(v[cut]) {
				cut--
			}
			v = v[:cut]
		}
		b = audit.AppendString(b, v)
	}
	for _, f := range e.Detail {
		b = append(b, `,"`...)
		b = append(b, f.Name...)
		b = append(b, `":`...)
		b = append(b, f.Value...)
	}
	return append(b, ',')
}

// accessID is an entry's id: 23 characters, as an event's.
func accessID(seq uint64) string {
	s := strconv.FormatUint(seq, 16)
	return accessIDPrefix + "0000000000000000"[len(s):] + s
}

// validMemberName keeps detail members to plain names that cannot break
// the record's JSON or shadow the entry's own members.
func validMemberName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	switch name {
	case "id", "time", "action", "result", "role", "login", "via", "address", "prev_hash", "hash":
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c == '_' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// AccessLog calls fn with the access log's entries after sequence number
// after, oldest first (newest first with desc, before after when after is
// not 0), at most limit (0: all). It returns the sequence number to pass
// as after for the next page, 0 when there is none.
func (s *Store) AccessLog(ctx context.Context, after uint64, desc bool, limit int, fn func(AccessRecord) error) (next uint64, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccess)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		switch {
		case !desc:
			k, v = c.Seek(binary.BigEndian.AppendUint64(nil, after+1))
		case after == 0:
			k, v = c.Last()
		default:
			c.Seek(binary.BigEndian.AppendUint64(nil, after))
			k, v = c.Prev()
		}
		for n := 0; k != nil; n++ {
			if len(k) != 8 {
				return damaged(s.db.Path(), "malformed key in the access log: run 'cdcaudit verify'")
			}
			seq := binary.BigEndian.Uint64(k)
			if limit > 0 && n == limit {
				next = seq
				if !desc {
					next = seq - 1
				} else {
					next = seq + 1
				}
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(AccessRecord{Seq: seq, Record: v}); err != nil {
				return err
			}
			if desc {
				k, v = c.Prev()
			} else {
				k, v = c.Next()
			}
		}
		return nil
	})
	return next, err
}

// VerifyAccess checks the access log's chain: every entry sealed, in
// sequence from 1, each linked to the one before, and the last one the
// head meta records. It returns how many entries it checked; a broken log
// is a *VerifyError.
func (s *Store) VerifyAccess(ctx context.Context) (uint64, error) {
	var n uint64
	err := s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		count, head := getUint64(meta, metaAccessCount), meta.Get(metaAccessHead)
		b := tx.Bucket(bucketAccess)
		if b == nil {
			if count != 0 {
				return &VerifyError{Reason: fmt.Sprintf("the access log is gone: %d entries were recorded", count)}
			}
			return nil
		}
		var prev audit.Hash
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if len(k) != 8 {
				return &VerifyError{Reason: "malformed key in the access log"}
			}
			seq := binary.BigEndian.Uint64(k)
			want := accessID(n + 1)
			if seq != n+1 {
				return &VerifyError{ID: want, Reason: fmt.Sprintf("access log: entry %s found where %s belongs: entries were removed or inserted", accessID(seq), want)}
			}
			id, p, h, err := audit.Check(v)
			if err != nil || id != want {
				return &VerifyError{ID: want, Reason: "access log: the entry's content does not match its hash (altered)"}
			}
			if p != prev {
				return &VerifyError{ID: want, Reason: "access log: the entry does not follow the one before it (one was removed, inserted or replaced)"}
			}
			prev = h
			n++
		}
		if n != count {
			return &VerifyError{Reason: fmt.Sprintf("access log: %d entries, but %d were recorded: entries were removed from its end or added outside cdcaudit", n, count)}
		}
		if n > 0 && !bytes.Equal(head, prev[:]) {
			return &VerifyError{Reason: "access log: its last entry is not the recorded head (replaced)"}
		}
		return nil
	})
	return n, err
}
