package sink

import (
	"math/rand"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkAppend stores one 1000-event batch (~700-byte bodies) per
// operation: one bbolt transaction and its fsync each.
func BenchmarkAppend(b *testing.B) {
	const perBatch = 1000
	s := mustOpen(b, b.TempDir())
	defer s.Close()

	e := &audit.Event{
		LSN: 1, CommitLSN: 1, Ordinal: 1, XID: 741, CommitTime: t0,
		Database: "odoo", Schema: "public", Table: "sale_order", Model: "sale.order", Op: audit.OpUpdate,
		Key:     audit.Row{{Name: "id", Value: []byte("42")}},
		Before:  audit.Row{{Name: "state", Value: []byte(`"draft"`)}, {Name: "note", Value: []byte(`"` + strings.Repeat("x", 90) + `"`)}},
		After:   audit.Row{{Name: "state", Value: []byte(`"sale"`)}, {Name: "note", Value: []byte(`"` + strings.Repeat("y", 90) + `"`)}},
		Changed: []string{"state", "note", "write_date", "write_uid"},
		Actor:   audit.Actor{Login: "alice@example.com", UserVia: "row_user", SessionID: "a1b2c3d4", SessionVia: "only_active"},
	}
	template := e.AppendBody(nil)
	batch := Batch{Events: make([]Encoded, perBatch)}
	bodyBytes := 0
	for i := range batch.Events {
		batch.Events[i].Body = append([]byte(nil), template...)
		bodyBytes += len(template)
	}
	b.SetBytes(int64(bodyBytes))
	b.ReportAllocs()
	b.ResetTimer()
	commit := uint64(0x1000)
	for b.Loop() {
		commit += 0x100
		for i := range batch.Events {
			ev := &batch.Events[i]
			ev.Key = audit.MakeKey(commit, uint32(i+1))
			copy(ev.Body[len(`{"id":"`):], audit.FormatID(commit, uint32(i+1)))
		}
		batch.Checkpoint = commit + 8
		if _, err := s.Append([]Batch{batch}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(len(template)), "body-bytes")
}

// BenchmarkWriterSmallTx submits one 5-event transaction per operation; the
// writer groups them, so the cost per transaction is far below an fsync.
func BenchmarkWriterSmallTx(b *testing.B) {
	s := mustOpen(b, b.TempDir())
	defer s.Close()
	w := NewWriter(s, 1024)
	var appends int
	w.OnCommit = func(CommitInfo) { appends++ }
	c := uint64(0)
	for b.Loop() {
		c++
		if err := w.Submit(b.Context(), txBatch(c<<8, 5)); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*5)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/float64(max(appends, 1)), "tx/append")
}

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
				c0 := cpuTime()
				b.StartTimer()
				if _, err := s.Append([]Batch{batch}); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - c0
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*perBatch), "cpu-µs/event")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
					c0 := cpuTime()
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
					cpu += cpuTime() - c0
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
