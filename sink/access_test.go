package sink

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

func accessStore(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 3, 19, 0, 0, 0, time.UTC)
	for i := range n {
		e := AccessEntry{Time: at.Add(time.Duration(i) * time.Second), Action: "signin", Result: "ok",
			Role: "self", Login: "alice", Via: "password", Address: "203.0.113.10"}
		if i%2 == 1 {
			e = AccessEntry{Time: e.Time, Action: "export", Result: "ok", Role: "viewer", Via: "token:auditor",
				Address: "192.0.2.1", Detail: []Field{{Name: "count", Value: []byte("42")}, StringField("format", "csv")}}
		}
		seq, err := s.AppendAccess(e)
		if err != nil || seq != uint64(i+1) {
			t.Fatalf("entry %d: seq %d, %v", i, seq, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestAccessLogAppendListVerify(t *testing.T) {
	dir := accessStore(t, 5)
	s, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if n, err := s.VerifyAccess(ctx); err != nil || n != 5 {
		t.Fatalf("verify: %d entries, %v", n, err)
	}
	var got []uint64
	var first []byte
	next, err := s.AccessLog(ctx, 0, false, 3, func(r AccessRecord) error {
		got = append(got, r.Seq)
		if first == nil {
			first = bytes.Clone(r.Record)
		}
		return nil
	})
	if err != nil || next != 3 || len(got) != 3 {
		t.Fatalf("first page: %v next %d, %v", got, next, err)
	}
	if _, err = s.AccessLog(ctx, next, false, 3, func(r AccessRecord) error { got = append(got, r.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	var desc []uint64
	if _, err = s.AccessLog(ctx, 0, true, 0, func(r AccessRecord) error { desc = append(desc, r.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []uint64{1, 2, 3, 4, 5}; !slices.Equal(got, want) || !slices.Equal(desc, []uint64{5, 4, 3, 2, 1}) {
		t.Fatalf("pages %v, newest first %v", got, desc)
	}
	wantFirst := `{"id":"access-0000000000000001","time":"2026-12-03T19:00:00.000000Z","action":"signin","result":"ok","role":"self","login":"alice","via":"password","address":"203.0.113.10","prev_hash":"` + strings.Repeat("0", 64) + `","hash":"`
	if !strings.HasPrefix(string(first), wantFirst) {
		t.Fatalf("first entry:\n%s\nwant it to begin\n%s", first, wantFirst)
	}
	if id, _, _, err := audit.Check(first); err != nil || id != "access-0000000000000001" {
		t.Fatalf("the entry is not sealed like an event: %q, %v", id, err)
	}
}

// Every way of editing the log outside cdcaudit fails VerifyAccess.
func TestAccessLogTamperDetected(t *testing.T) {
	seq := func(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }
	for _, tc := range []struct {
		name, want string
		edit       func(b, meta *bolt.Bucket) error
	}{
		{"altered", "does not match its hash", func(b, _ *bolt.Bucket) error {
			v := bytes.Clone(b.Get(seq(2)))
			return b.Put(seq(2), bytes.Replace(v, []byte(`"result":"ok"`), []byte(`"result":"no"`), 1))
		}},
		{"removed from the middle", "found where", func(b, _ *bolt.Bucket) error { return b.Delete(seq(3)) }},
		{"removed from the end", "were recorded", func(b, _ *bolt.Bucket) error { return b.Delete(seq(5)) }},
		{"replaced by a resealed entry", "does not follow", func(b, _ *bolt.Bucket) error {
			rec, _ := audit.Seal(nil, accessBody(3, AccessEntry{Time: time.Now(), Action: "signin", Result: "ok"}), audit.Hash{})
			return b.Put(seq(3), rec)
		}},
		{"log dropped", "is gone", func(_, _ *bolt.Bucket) error { return errDropAccess }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := accessStore(t, 5)
			db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				err := tc.edit(tx.Bucket(bucketAccess), tx.Bucket(bucketMeta))
				if errors.Is(err, errDropAccess) {
					return tx.DeleteBucket(bucketAccess)
				}
				return err
			})
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
			s, err := OpenReadOnly(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = s.VerifyAccess(context.Background())
			if !errors.Is(err, ErrChainBroken) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("verify after the edit: %v; want a broken chain saying %q", err, tc.want)
			}
		})
	}
}

var errDropAccess = errors.New("drop the bucket")

// Detail members cannot shadow the entry's own or break its JSON.
func TestAccessLogRefusesBadMembers(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, name := range []string{"login", "hash", "Bad", `a"b`, ""} {
		if _, err := s.AppendAccess(AccessEntry{Time: time.Now(), Action: "export", Result: "ok", Detail: []Field{StringField(name, "x")}}); err == nil {
			t.Errorf("member %q accepted", name)
		}
	}
	long := "a" + strings.Repeat("é", maxAccessField) // the bound falls inside a character
	if _, err := s.AppendAccess(AccessEntry{Time: time.Now(), Action: "signin", Result: "failed", Login: long}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AccessLog(context.Background(), 0, false, 0, func(r AccessRecord) error {
		if !utf8.Valid(r.Record) || len(r.Record) > 2*maxAccessField+400 {
			t.Errorf("the long login was not cut at a character: %d bytes, valid UTF-8 %v", len(r.Record), utf8.Valid(r.Record))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.VerifyAccess(context.Background()); err != nil || n != 1 {
		t.Fatalf("verify: %d, %v", n, err)
	}
}

// compact carries the access log over whole: it still verifies.
func TestAccessLogSurvivesCompact(t *testing.T) {
	dir := accessStore(t, 4)
	if _, err := Compact(t.Context(), dir, "", nil); err != nil {
		t.Fatal(err)
	}
	s, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.VerifyAccess(t.Context()); err != nil || n != 4 {
		t.Fatalf("after compact: %d entries, %v", n, err)
	}
}
