package outbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/outboxtest"
	"github.com/cdcaudit/cdcaudit/sink"
)

// fileSink is a real destination: a JSON Lines file, appended and fsynced
// before Deliver returns. down makes it refuse (the destination is down);
// loseAck makes it write and then fail (the acknowledgement lost on the
// way back), which at-least-once must absorb.
type fileSink struct {
	path    string
	down    atomic.Bool
	loseAck atomic.Int32
	calls   atomic.Int32
}

func (f *fileSink) Name() string { return "file" }

func (f *fileSink) Deliver(ctx context.Context, batch []Record) error {
	f.calls.Add(1)
	if f.down.Load() {
		return errors.New("destination down")
	}
	fh, err := os.OpenFile(f.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer fh.Close()
	var b bytes.Buffer
	for _, r := range batch {
		b.Write(r.JSON)
		b.WriteByte('\n')
	}
	if _, err := fh.Write(b.Bytes()); err != nil {
		return err
	}
	if err := fh.Sync(); err != nil {
		return err
	}
	if f.loseAck.Load() > 0 {
		f.loseAck.Add(-1)
		return errors.New("acknowledgement lost")
	}
	return nil
}

// lines reads the file: every line, and the ids in order.
func (f *fileSink) lines(t *testing.T) (ids []string, byID map[string][]byte) {
	t.Helper()
	fh, err := os.Open(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, map[string][]byte{}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	byID = map[string][]byte{}
	sc := bufio.NewScanner(fh)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		id, _, _, err := audit.Check(sc.Bytes())
		if err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if old, ok := byID[id]; ok && !bytes.Equal(old, sc.Bytes()) {
			t.Fatalf("%s delivered twice with different content", id)
		}
		ids = append(ids, id)
		byID[id] = bytes.Clone(sc.Bytes())
	}
	return ids, byID
}

func event(commit uint64, ord uint32, at time.Time) sink.Encoded {
	e := &audit.Event{
		LSN: commit - 0x10, CommitLSN: commit, Ordinal: ord, XID: uint32(commit), CommitTime: at,
		Database: "odoo", Schema: "public", Table: "sale_order", Op: audit.OpUpdate,
		Key:     audit.Row{{Name: "id", Value: []byte(strconv.Itoa(int(commit)))}},
		After:   audit.Row{{Name: "state", Value: []byte(`"sale"`)}},
		Changed: []string{"state"},
	}
	return sink.Encoded{Key: e.StoreKey(), Body: e.AppendBody(nil)}
}

var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// appendTx stores transaction i (two events) through the writer.
func appendTx(t *testing.T, w *sink.Writer, i uint64) {
	t.Helper()
	c := i << 8
	at := base.Add(time.Duration(i) * time.Minute)
	if err := w.Submit(t.Context(), sink.Batch{Events: []sink.Encoded{event(c, 1, at), event(c, 2, at)}, Checkpoint: c + 0x80, CommitTime: at}); err != nil {
		t.Fatal(err)
	}
}

var stateOf = outboxtest.State

// storeIDs lists every record of the store (chain records too).
func storeIDs(t *testing.T, s *sink.Store) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	if err := s.Records(t.Context(), nil, 0, func(k, v []byte) error {
		out[keyID(k)] = bytes.Clone(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

type testMetrics struct {
	mu        sync.Mutex
	delivered int
	failed    int
	lag       uint64
}

func (m *testMetrics) SinkDelivered(_ string, n int) { m.mu.Lock(); m.delivered += n; m.mu.Unlock() }
func (m *testMetrics) SinkFailed(string)             { m.mu.Lock(); m.failed++; m.mu.Unlock() }
func (m *testMetrics) SinkLag(_ string, r uint64, _ float64) {
	m.mu.Lock()
	m.lag = r
	m.mu.Unlock()
}

var waitFor = outboxtest.WaitFor

func cursorOf(t *testing.T, s *sink.Store) Cursor {
	t.Helper()
	c, _, err := LoadCursor(s, "file")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRunnerDeliversEverythingAtLeastOnceAndResumes(t *testing.T) {
	s, w := outboxtest.Store(t, 50, appendTx)
	fs := &fileSink{path: filepath.Join(t.TempDir(), "out.jsonl")}
	fs.loseAck.Store(2) // two batches written whose acknowledgement is lost
	m := &testMetrics{}
	start := func() (stop func()) {
		r, err := New(s, fs, Options{Batch: 7, Poll: 5 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		return outboxtest.Start(t, w, r.Run)
	}
	head := func() string { k, _, _ := s.Head(); return keyID(k) }
	stop := start()
	waitFor(t, func() bool { return cursorOf(t, s).After == head() })

	// The destination goes down; more events come; it comes back.
	fs.down.Store(true)
	outboxtest.Fill(t, w, 51, 80, appendTx)
	waitFor(t, func() bool { m.mu.Lock(); defer m.mu.Unlock(); return m.failed >= 5 })
	if c := cursorOf(t, s); c.After != id(50<<8, 2) {
		t.Fatalf("the cursor moved while the destination was down: %+v", c)
	}
	fs.down.Store(false)
	waitFor(t, func() bool { return cursorOf(t, s).After == head() })
	stop()

	// Restarted: it resumes at its cursor, delivering nothing again.
	calls := fs.calls.Load()
	outboxtest.Fill(t, w, 81, 81, appendTx)
	stop = start()
	waitFor(t, func() bool { return cursorOf(t, s).After == head() })
	stop()

	ids, byID := fs.lines(t)
	want := storeIDs(t, s)
	if len(byID) != len(want) || len(want) != 1+81*2 {
		t.Fatalf("delivered %d distinct records, the store has %d", len(byID), len(want))
	}
	for id, rec := range want {
		if !bytes.Equal(byID[id], rec) {
			t.Fatalf("%s: delivered %q, stored %q", id, byID[id], rec)
		}
	}
	// At least once: the lost acknowledgements were delivered again, and
	// nothing else twice.
	if dups := len(ids) - len(byID); dups == 0 || dups > 14 {
		t.Fatalf("%d records delivered twice, want 1 to 14 (two lost acknowledgements of 7)", dups)
	}
	// In order, each first delivery after the one before.
	seen := map[string]bool{}
	last := ""
	for _, id := range ids {
		if !seen[id] {
			if id < last {
				t.Fatalf("%s delivered after %s", id, last)
			}
			seen[id], last = true, id
		}
	}
	if c := cursorOf(t, s); c.Delivered != uint64(m.delivered) || fs.calls.Load() <= calls {
		t.Fatalf("cursor %+v, metrics delivered %d", c, m.delivered)
	}
	if m.lag != 0 {
		t.Fatalf("lag %d when caught up", m.lag)
	}
}

// The hold keeps every record a sink has not acknowledged from retention.
func TestHoldKeepsWhatIsNotAcknowledged(t *testing.T) {
	s, w := outboxtest.Store(t, 20, appendTx)
	hold := Hold(s, []string{"file"})
	ret := sink.Retention{Default: time.Hour, Now: func() time.Time { return base.Add(10 * time.Hour) }, Hold: hold}
	prune := func() sink.PruneStats {
		p, err := s.NewPruner(ret)
		if err != nil {
			t.Fatal(err)
		}
		st, err := p.Prune(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	// No cursor yet: everything is held.
	if st := prune(); st.Removed != 0 || st.HeldBy != "file" {
		t.Fatalf("without a cursor: %+v", st)
	}
	// Acknowledged through transaction 8: those go, the rest stays.
	v := []byte(`{"after":"` + id(8<<8, 2) + `","delivered":16}`)
	if err := stateOf(w)(t.Context(), []sink.StateRecord{{Bucket: Bucket, Key: "file", Value: v}}); err != nil {
		t.Fatal(err)
	}
	st := prune()
	if st.Removed != 16 || st.HeldBy != "file" || !st.HeldSince.Equal(base.Add(9*time.Minute)) {
		t.Fatalf("held at 8: %+v", st)
	}
	if _, _, n := s.Head(); n != 24 {
		t.Fatalf("%d events left, want 24", n)
	}
	// Another configured sink that acknowledged less holds more.
	v2 := []byte(`{"after":"` + id(3<<8, 2) + `"}`)
	stateOf(w)(t.Context(), []sink.StateRecord{{Bucket: Bucket, Key: "kafka", Value: v2}})
	if after, by, ok := Hold(s, []string{"file", "kafka"})(); !ok || by != "kafka" || !bytes.Equal(after, key(3<<8, 2)) {
		t.Fatalf("hold of two sinks: %x %s %v", after, by, ok)
	}
	if Hold(s, nil) != nil {
		t.Fatal("a hold without sinks")
	}
}

func id(commit uint64, ord uint32) string { return audit.FormatID(commit, ord) }

func key(commit uint64, ord uint32) []byte { k := audit.MakeKey(commit, ord); return k[:] }

// gatedSink acknowledges a batch when the test lets it (gate), and says
// how many records it acknowledged.
type gatedSink struct {
	gate  chan struct{}
	acked atomic.Int64
}

func (g *gatedSink) Name() string { return "gated" }

func (g *gatedSink) Deliver(ctx context.Context, batch []Record) error {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.acked.Add(int64(len(batch)))
	return nil
}

// lagMetrics keeps every lag reported.
type lagMetrics struct {
	mu  sync.Mutex
	lag []uint64
}

func (m *lagMetrics) SinkDelivered(string, int) {}
func (m *lagMetrics) SinkFailed(string)         {}
func (m *lagMetrics) SinkLag(_ string, r uint64, _ float64) {
	m.mu.Lock()
	m.lag = append(m.lag, r)
	m.mu.Unlock()
}

func (m *lagMetrics) reports() int { m.mu.Lock(); defer m.mu.Unlock(); return len(m.lag) }
func (m *lagMetrics) last() uint64 { m.mu.Lock(); defer m.mu.Unlock(); return m.lag[len(m.lag)-1] }

// The lag in records, counted when the clock says so, is the store's
// records not acknowledged yet: records appended while behind are added,
// those delivered taken off.
func TestLagRecordsCountsTheBacklog(t *testing.T) {
	s, w := outboxtest.Store(t, 20, appendTx) // genesis + 40 events
	g := &gatedSink{gate: make(chan struct{})}
	m := &lagMetrics{}
	var clock atomic.Int64 // seconds since base
	now := func() time.Time { return base.Add(time.Duration(clock.Load()) * time.Second) }
	r, err := New(s, g, Options{Batch: 5, Poll: 5 * time.Millisecond, LagEvery: 10 * time.Second, Metrics: m, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	stop := outboxtest.Start(t, w, r.Run)
	defer stop()
	total := func() uint64 { return uint64(len(storeIDs(t, s))) }
	// deliver lets one batch through and waits for the next report,
	// made before that batch's Deliver.
	deliver := func() uint64 {
		t.Helper()
		n := m.reports()
		g.gate <- struct{}{}
		waitFor(t, func() bool { return m.reports() > n })
		return m.last()
	}
	waitFor(t, func() bool { return m.reports() > 0 })
	if got := m.last(); got != 41 {
		t.Fatalf("first count: lag %d, want 41", got)
	}
	// Without a count, delivered batches are taken off.
	if got := deliver(); got != 36 {
		t.Fatalf("after a batch: lag %d, want 36", got)
	}
	// Appended while behind, counted at the next count.
	outboxtest.Fill(t, w, 21, 30, appendTx)
	clock.Add(10)
	if got, want := deliver(), total()-uint64(g.acked.Load()); got != want {
		t.Fatalf("after appending: lag %d, want %d", got, want)
	}
	// More appended, and delivered past what was counted before the
	// next count: still exact.
	outboxtest.Fill(t, w, 31, 40, appendTx)
	for range 11 {
		deliver()
	}
	clock.Add(10)
	if got, want := deliver(), total()-uint64(g.acked.Load()); got != want {
		t.Fatalf("at the end: lag %d, want %d", got, want)
	}
}
