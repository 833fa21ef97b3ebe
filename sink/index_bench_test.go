package sink

import (
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/selfusage"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkAppendIndex stores 1000-event batches of varied events (every
// key its own record, 300 users, 3000 sessions, 50 tables) without
// indexes, with them (terms given, as the pipeline does), and with terms
// parsed from the records (as an index build does). cpu-µs/event is the
// process's user+system CPU per event (the fsync's wait excluded).
func BenchmarkAppendIndex(b *testing.B) {
	for _, mode := range []string{"none", "terms-given", "terms-parsed"} {
		b.Run(mode, func(b *testing.B) {
			const perBatch = 1000
			s := mustOpen(b, b.TempDir())
			defer s.Close()
			if mode == "none" {
				s.index = noIndex{}
			}
			batch := Batch{Events: make([]Encoded, perBatch)}
			commit := uint64(0x1000)
			n := 0
			fill := func() {
				commit += 0x100
				for i := range batch.Events {
					n++
					uid := int64(n % 300)
					e := &audit.Event{
						LSN: commit - 1, CommitLSN: commit, Ordinal: uint32(i + 1), XID: 741, CommitTime: t0.Add(time.Duration(n) * time.Millisecond),
						Database: "odoo", Schema: "public", Table: "sale_order_" + strconv.Itoa(n%50), Op: audit.OpUpdate,
						Key:     audit.Row{{Name: "id", Value: strconv.AppendInt(nil, int64(n), 10)}},
						Before:  audit.Row{{Name: "state", Value: []byte(`"draft"`)}, {Name: "note", Value: []byte(`"` + strings.Repeat("x", 90) + `"`)}},
						After:   audit.Row{{Name: "state", Value: []byte(`"sale"`)}, {Name: "note", Value: []byte(`"` + strings.Repeat("y", 90) + `"`)}},
						Changed: []string{"state", "note", "write_date", "write_uid"},
						Actor: audit.Actor{UserID: &uid, Login: "user" + strconv.Itoa(int(uid)) + "@example.com", UserVia: "row_user",
							SessionID: "sess" + strconv.Itoa(n%3000), SessionVia: "only_active"},
					}
					ev := &batch.Events[i]
					ev.Key, ev.Body, ev.Terms = e.StoreKey(), e.AppendBody(ev.Body[:0]), nil
					if mode == "terms-given" {
						t := e.Terms()
						ev.Terms = &t
					}
				}
				batch.Checkpoint = commit + 8
			}
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				fill()
				c0 := selfusage.CPU()
				b.StartTimer()
				if _, err := s.Append([]Batch{batch}); err != nil {
					b.Fatal(err)
				}
				cpu += selfusage.CPU() - c0
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*perBatch), "cpu-µs/event")
		})
	}
}

// BenchmarkIndexBlocks is the cost of the indexes alone: 1000 events per
// transaction indexed in blocks of 1 (every record a block, as Append
// writes them until records are grouped) or 64 records, on the bench.sh
// workload (inserts of new ids, then updates of them in order, one user,
// no session) and an ERP-like one (300 users, Zipf-distributed, a session
// each, 50 tables, Zipf-distributed records with new ids among them,
// transactions of 1–50 events). Reports CPU per event and the index's
// bytes per event (bbolt Bucket.Stats, in use and allocated).
func BenchmarkIndexBlocks(b *testing.B) {
	for _, wl := range []string{"bench", "erp"} {
		for _, size := range []int{1, 64} {
			b.Run(wl+"/block="+strconv.Itoa(size), func(b *testing.B) {
				s := mustOpen(b, b.TempDir())
				defer s.Close()
				ix := s.idx.ix
				gen := newIndexWorkload(wl, b.N*1000)
				keys := make([][]byte, 1000)
				terms := make([]*audit.Terms, 1000)
				var cpu time.Duration
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					for i := range keys {
						k, t := gen.next()
						keys[i], terms[i] = k, t
					}
					recs := make([][]byte, len(keys))
					c0 := selfusage.CPU()
					b.StartTimer()
					err := s.update(func(tx *bolt.Tx) error {
						for i := 0; i < len(keys); i += size {
							j := min(i+size, len(keys))
							if err := ix.addBlock(tx, keys[i], keys[i:j], recs[i:j], terms[i:j]); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					cpu += selfusage.CPU() - c0
					b.StartTimer()
				}
				b.StopTimer()
				inuse, alloc := indexBytes(b, s)
				events := float64(b.N * 1000)
				b.ReportMetric(float64(cpu.Nanoseconds())/1000/events, "cpu-µs/event")
				b.ReportMetric(float64(inuse)/events, "inuse-B/event")
				b.ReportMetric(float64(alloc)/events, "alloc-B/event")
			})
		}
	}
}

// indexBytes sums the bytes the index buckets use and have allocated.
func indexBytes(t testing.TB, s *Store) (inuse, alloc int) {
	err := s.view(func(tx *bolt.Tx) error {
		st := tx.Bucket(bucketIndex).Stats()
		inuse = st.BranchInuse + st.LeafInuse
		alloc = st.BranchAlloc + st.LeafAlloc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return inuse, alloc
}

type indexWorkload struct {
	name            string
	total, n        int
	lsn             uint64
	ord             uint32
	txLeft          int
	at              time.Time
	rng             *rand.Rand
	users, records  *rand.Zipf
	user, table     int
	nextID          []int
	session         string
	tableNames      []string
	login           []string
	changeOps       []audit.Op
	insertsTillHalf bool
}

func newIndexWorkload(name string, total int) *indexWorkload {
	rng := rand.New(rand.NewSource(1))
	w := &indexWorkload{name: name, total: total, lsn: 0x1000, at: t0, rng: rng,
		users: rand.NewZipf(rng, 1.2, 2, 299), records: rand.NewZipf(rng, 1.1, 10, 99_999), nextID: make([]int, 50)}
	for i := range 50 {
		w.tableNames = append(w.tableNames, "table_"+strconv.Itoa(i))
		w.nextID[i] = 100_000
	}
	for i := range 300 {
		w.login = append(w.login, "user"+strconv.Itoa(i)+"@example.com")
	}
	return w
}

func (w *indexWorkload) next() ([]byte, *audit.Terms) {
	w.n++
	if w.txLeft == 0 {
		w.lsn += 0x100
		w.ord = 0
		w.at = w.at.Add(time.Millisecond)
		if w.name == "bench" {
			w.txLeft = 1000
		} else {
			w.txLeft = 1 + w.rng.Intn(50)
			w.user = int(w.users.Uint64())
			w.session = "sess-" + strconv.Itoa(w.user) + "-" + strconv.Itoa(w.rng.Intn(3))
			w.table = w.rng.Intn(50)
		}
	}
	w.txLeft--
	w.ord++
	k := audit.MakeKey(w.lsn, w.ord)
	t := &audit.Terms{Schema: "public", CommitTime: w.at}
	if w.name == "bench" {
		t.Table, t.User, t.Op = "sale_order_line", "#6", audit.OpInsert
		id := w.n
		if w.n > w.total/2 {
			t.Op, id = audit.OpUpdate, w.n-w.total/2
		}
		t.Records = [][]byte{audit.RecordTerm("public", t.Table, audit.KeyValue{Text: strconv.Itoa(id)})}
		return k[:], t
	}
	table := w.table
	if w.rng.Intn(4) == 0 {
		table = w.rng.Intn(50)
	}
	t.Table, t.User, t.Session = w.tableNames[table], w.login[w.user], w.session
	var id int
	switch r := w.rng.Intn(10); {
	case r < 3:
		t.Op, id = audit.OpInsert, w.nextID[table]
		w.nextID[table]++
	case r < 9:
		t.Op, id = audit.OpUpdate, int(w.records.Uint64())
	default:
		t.Op, id = audit.OpDelete, int(w.records.Uint64())
	}
	t.Records = [][]byte{audit.RecordTerm("public", t.Table, audit.KeyValue{Text: strconv.Itoa(id)})}
	return k[:], t
}

// BenchmarkIndexScattered is the record index's cost under pgbench's
// pattern: after a prefill of one posting for each of 1M records, commits
// of `commit` changes to records drawn at random among them, in blocks of
// 64, indexed alone (no events). bbolt copies every leaf page a commit
// touches, so the bytes written per change follow the pages touched, not
// the postings. merge=M puts M random postings, sorted, in one
// transaction: what merging a queue of M postings into the record index
// would cost.
func BenchmarkIndexScattered(b *testing.B) {
	const records = 1_000_000
	if testing.Short() {
		b.Skip("a 1M-record prefill")
	}
	s := mustOpen(b, b.TempDir())
	defer s.Close()
	ix := s.idx.ix
	lsn := uint64(0x1000)
	rng := rand.New(rand.NewSource(1))
	// index writes n changes in one transaction, in blocks of 64, record
	// ids from id.
	index := func(n int, id func(i int) int) error {
		keys := make([][]byte, 0, 64)
		terms := make([]*audit.Terms, 0, 64)
		return s.update(func(tx *bolt.Tx) error {
			for i := 0; i < n; i += 64 {
				keys, terms = keys[:0], terms[:0]
				lsn += 0x100
				for j := i; j < min(i+64, n); j++ {
					k := audit.MakeKey(lsn, uint32(j-i+1))
					keys = append(keys, k[:])
					terms = append(terms, &audit.Terms{Schema: "public", Table: "pgbench_accounts", Op: audit.OpUpdate, CommitTime: t0,
						Records: [][]byte{audit.RecordTerm("public", "pgbench_accounts", audit.KeyValue{Text: strconv.Itoa(id(j))})}})
				}
				if err := ix.addBlock(tx, keys[0], keys, make([][]byte, len(keys)), terms); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for start := 0; start < records; start += 100_000 {
		if err := index(100_000, func(i int) int { return start + i + 1 }); err != nil {
			b.Fatal(err)
		}
	}
	measure := func(b *testing.B, changes int, fn func() error) {
		c0, w0 := selfusage.CPU(), writtenBytes(b)
		for range b.N {
			if err := fn(); err != nil {
				b.Fatal(err)
			}
		}
		cpu, w := selfusage.CPU()-c0, writtenBytes(b)-w0
		n := float64(b.N * changes)
		b.ReportMetric(float64(cpu.Nanoseconds())/1000/n, "cpu-µs/change")
		b.ReportMetric(float64(w)/n, "written-B/change")
	}
	for _, commit := range []int{64, 1024, 4096} {
		b.Run("commit="+strconv.Itoa(commit), func(b *testing.B) {
			measure(b, commit, func() error {
				return index(commit, func(int) int { return 1 + rng.Intn(records) })
			})
		})
	}
	for _, m := range []int{4096, 65536, 262144} {
		b.Run("merge="+strconv.Itoa(m), func(b *testing.B) {
			ids := make([]int, m)
			measure(b, m, func() error {
				for i := range ids {
					ids[i] = 1 + rng.Intn(records)
				}
				// sorted as the record index orders them (by the key's text)
				strs := make([]string, m)
				for i, id := range ids {
					strs[i] = strconv.Itoa(id)
				}
				slices.Sort(strs)
				return index(m, func(i int) int { id, _ := strconv.Atoi(strs[i]); return id })
			})
		})
	}
}

// writtenBytes is what this process has written so far.
func writtenBytes(tb testing.TB) int64 {
	n, ok := selfusage.Written()
	if !ok {
		tb.Skip("no /proc/self/io")
	}
	return n
}

// BenchmarkBlockPostings is the collecting of one block's postings (64
// records, the bench and ERP workloads), bbolt's puts aside.
func BenchmarkBlockPostings(b *testing.B) {
	for _, wl := range []string{"bench", "erp"} {
		b.Run(wl, func(b *testing.B) {
			s := mustOpen(b, b.TempDir())
			defer s.Close()
			ix := s.idx.ix
			gen := newIndexWorkload(wl, 64)
			keys := make([][]byte, 64)
			terms := make([]*audit.Terms, 64)
			for i := range keys {
				keys[i], terms[i] = gen.next()
			}
			recs := make([][]byte, 64)
			err := s.update(func(tx *bolt.Tx) error {
				if err := ix.begin(tx); err != nil {
					return err
				}
				ix.st.readState()
				for b.Loop() {
					ix.st.arena.reset()
					if _, _, err := ix.blockPostings(keys, recs, terms, true); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}
