package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTest() (*Metrics, *clock) {
	c := &clock{t: time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)}
	return newMetrics(c.now), c
}

func TestEventsAndTransactions(t *testing.T) {
	m, _ := newTest()
	m.AddEvents("public", "sale_order", "insert", 3)
	m.AddEvents("public", "sale_order", "insert", 2)
	m.AddEvents("public", "sale_order", "update", 1)
	m.AddEvents("public", "res_partner", "delete", 0) // no series for n = 0
	m.AddTransactions(4)
	want := `
# HELP cdcaudit_events_total Row events (insert, update, delete, truncate) stored, by table and operation.
# TYPE cdcaudit_events_total counter
cdcaudit_events_total{op="insert",schema="public",table="sale_order"} 5
cdcaudit_events_total{op="update",schema="public",table="sale_order"} 1
# HELP cdcaudit_transactions_total Transactions whose events are durable in the store.
# TYPE cdcaudit_transactions_total counter
cdcaudit_transactions_total 4
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "cdcaudit_events_total", "cdcaudit_transactions_total"); err != nil {
		t.Fatal(err)
	}
}

func TestBatchCommitted(t *testing.T) {
	m, _ := newTest()
	ct := time.Date(2026, 11, 23, 12, 59, 0, 500_000_000, time.UTC)
	m.BatchCommitted(100, 7, 4096, 3*time.Millisecond, 0x16B3800, ct)
	m.BatchCommitted(10, 0, 1000, 20*time.Millisecond, 0x16B3900, ct.Add(time.Second))
	// An older checkpoint (cannot happen, but must not move the gauge back).
	m.BatchCommitted(1, 0, 10, time.Millisecond, 0x16B3000, ct.Add(-time.Hour))

	if got := testutil.ToFloat64(m.checkpoint); got != float64(0x16B3900) {
		t.Errorf("checkpoint_lsn = %v, want %v", got, float64(0x16B3900))
	}
	if got := testutil.ToFloat64(m.duplicates); got != 7 {
		t.Errorf("duplicates = %v", got)
	}
	if got := testutil.ToFloat64(m.writtenBytes); got != 5106 {
		t.Errorf("written bytes = %v", got)
	}
	if got := testutil.ToFloat64(m.lastCommit); got != float64(ct.Add(time.Second).UnixNano())/1e9 {
		t.Errorf("last commit = %v", got)
	}
	if n := testutil.CollectAndCount(m.commitSeconds); n != 1 {
		t.Errorf("histogram series = %d", n)
	}
	want := `
# HELP cdcaudit_batch_commit_duration_seconds Time to write one batch of transactions and its checkpoint to the store (one bbolt commit, fsync included).
# TYPE cdcaudit_batch_commit_duration_seconds histogram
cdcaudit_batch_commit_duration_seconds_bucket{le="0.0005"} 0
cdcaudit_batch_commit_duration_seconds_bucket{le="0.001"} 1
cdcaudit_batch_commit_duration_seconds_bucket{le="0.0025"} 1
cdcaudit_batch_commit_duration_seconds_bucket{le="0.005"} 2
cdcaudit_batch_commit_duration_seconds_bucket{le="0.01"} 2
cdcaudit_batch_commit_duration_seconds_bucket{le="0.025"} 3
cdcaudit_batch_commit_duration_seconds_bucket{le="0.05"} 3
cdcaudit_batch_commit_duration_seconds_bucket{le="0.1"} 3
cdcaudit_batch_commit_duration_seconds_bucket{le="0.25"} 3
cdcaudit_batch_commit_duration_seconds_bucket{le="0.5"} 3
cdcaudit_batch_commit_duration_seconds_bucket{le="1"} 3
cdcaudit_batch_commit_duration_seconds_bucket{le="2.5"} 3
cdcaudit_batch_commit_duration_seconds_bucket{le="5"} 3
cdcaudit_batch_commit_duration_seconds_bucket{le="10"} 3
cdcaudit_batch_commit_duration_seconds_bucket{le="+Inf"} 3
cdcaudit_batch_commit_duration_seconds_sum 0.024
cdcaudit_batch_commit_duration_seconds_count 3
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want), "cdcaudit_batch_commit_duration_seconds"); err != nil {
		t.Fatal(err)
	}
}

func lagValues(t *testing.T, m *Metrics) (bytes, seconds float64) {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	bytes, seconds = -1, -1
	for _, mf := range mfs {
		switch mf.GetName() {
		case "cdcaudit_replication_lag_bytes":
			bytes = mf.GetMetric()[0].GetGauge().GetValue()
		case "cdcaudit_replication_lag_seconds":
			seconds = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if bytes < 0 || seconds < 0 {
		t.Fatalf("lag gauges missing or negative: %v %v", bytes, seconds)
	}
	return bytes, seconds
}

func TestLag(t *testing.T) {
	m, clk := newTest()
	if b, s := lagValues(t, m); b != 0 || s != 0 {
		t.Fatalf("fresh: lag = %v bytes, %v s", b, s)
	}

	// WAL ahead, nothing durable yet: bytes known, age unknown (0).
	m.ServerWALEnd(1000)
	if b, s := lagValues(t, m); b != 1000 || s != 0 {
		t.Fatalf("nothing stored: lag = %v bytes, %v s", b, s)
	}

	commit := clk.now().Add(-2 * time.Second)
	m.BatchCommitted(1, 0, 100, time.Millisecond, 400, commit)
	clk.add(3 * time.Second)
	if b, s := lagValues(t, m); b != 600 || s != 5 {
		t.Fatalf("behind: lag = %v bytes, %v s; want 600, 5", b, s)
	}

	// An older WAL end (out-of-order report) never moves the gauge back.
	m.ServerWALEnd(900)
	if b, _ := lagValues(t, m); b != 600 {
		t.Fatalf("WAL end went backwards: lag %v", b)
	}

	// Caught up: 0 and 0, however old the last commit is.
	m.BatchCommitted(1, 0, 100, time.Millisecond, 1000, commit.Add(time.Second))
	clk.add(time.Hour)
	if b, s := lagValues(t, m); b != 0 || s != 0 {
		t.Fatalf("caught up: lag = %v bytes, %v s", b, s)
	}

	// Checkpoint past the WAL end seen so far (keepalive not yet seen): 0.
	m.BatchCommitted(1, 0, 100, time.Millisecond, 5000, clk.now())
	if b, s := lagValues(t, m); b != 0 || s != 0 {
		t.Fatalf("checkpoint ahead: lag = %v bytes, %v s", b, s)
	}

	// Idle publication: the server's WAL end moves on and is confirmed with
	// nothing in flight: no lag although no transaction was stored.
	m.ServerWALEnd(9000)
	m.Confirmed(9000)
	clk.add(time.Hour)
	if b, s := lagValues(t, m); b != 0 || s != 0 {
		t.Fatalf("idle, confirmed: lag = %v bytes, %v s", b, s)
	}
	if got := testutil.ToFloat64(m.confirmed); got != 9000 {
		t.Errorf("confirmed_flush_lsn = %v", got)
	}
	if got := testutil.ToFloat64(m.checkpoint); got != 5000 {
		t.Errorf("checkpoint_lsn = %v (Confirmed must not move the stored checkpoint)", got)
	}
	if got := testutil.ToFloat64(m.walEnd); got != 9000 {
		t.Errorf("server_wal_end_lsn = %v", got)
	}
}

// A transaction received but not yet stored is lag, even when the idle
// advance confirmed past its first changes while the server was still
// writing it (the walsender sends a transaction only at its commit).
func TestLagCountsPendingTransaction(t *testing.T) {
	m, clk := newTest()
	m.BatchCommitted(1, 0, 100, time.Millisecond, 1000, clk.now().Add(-time.Hour))
	m.ServerWALEnd(50_000)
	m.Confirmed(50_000) // idle advance while the big transaction was written
	commit := clk.now()
	clk.add(9 * time.Second)
	// Its changes arrive (XLogData WAL ends are the changes' own LSNs) …
	m.Pending(2000, commit)
	m.ServerWALEnd(48_000)
	if b, s := lagValues(t, m); b != 48_000 || s != 9 {
		t.Fatalf("transaction received, not stored: lag = %v bytes, %v s; want 48000, 9", b, s)
	}
	// … until it is stored.
	m.BatchCommitted(600_000, 0, 1<<20, time.Second, 50_100, commit)
	m.Pending(0, time.Time{})
	if b, s := lagValues(t, m); b != 0 || s != 0 {
		t.Fatalf("stored: lag = %v bytes, %v s", b, s)
	}
}

func TestHealthy(t *testing.T) {
	m, clk := newTest()
	if ok, reason := m.Healthy(); !ok {
		t.Fatalf("fresh process unhealthy: %s", reason)
	}
	clk.add(DisconnectedGrace + time.Second)
	if ok, reason := m.Healthy(); ok || !strings.Contains(reason, "down for 31s") {
		t.Fatalf("never connected for 31s: ok=%v %q", ok, reason)
	}
	m.SetConnected(true)
	clk.add(time.Hour)
	if ok, reason := m.Healthy(); !ok || reason != "ok" {
		t.Fatalf("connected: ok=%v %q", ok, reason)
	}
	m.SetConnected(false)
	m.Reconnected(errors.New("unexpected EOF"))
	clk.add(10 * time.Second)
	if ok, _ := m.Healthy(); !ok {
		t.Fatal("down for 10s must still be healthy")
	}
	clk.add(25 * time.Second)
	ok, reason := m.Healthy()
	if ok || !strings.Contains(reason, "unexpected EOF") {
		t.Fatalf("down for 35s: ok=%v %q", ok, reason)
	}
	m.SetConnected(true)
	if ok, _ := m.Healthy(); !ok {
		t.Fatal("reconnected: unhealthy")
	}
	if got := testutil.ToFloat64(m.reconnects); got != 1 {
		t.Errorf("reconnects_total = %v", got)
	}
	if got := testutil.ToFloat64(m.connected); got != 1 {
		t.Errorf("replication_connected = %v", got)
	}

	m.SlotStatus("lost", 0, 0)
	if ok, reason := m.Healthy(); ok || !strings.Contains(reason, "lost") {
		t.Fatalf("slot lost: ok=%v %q", ok, reason)
	}

	// The HTTP handler.
	rec := httptest.NewRecorder()
	healthHandler(m.Healthy).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "lost") {
		t.Fatalf("/healthz: %d %q", rec.Code, rec.Body.String())
	}
	m.SlotStatus("reserved", 10, 0)
	rec = httptest.NewRecorder()
	healthHandler(m.Healthy).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "ok\n" {
		t.Fatalf("/healthz: %d %q", rec.Code, rec.Body.String())
	}
}

// The Observer calls alone keep the connection state: a keepalive means up,
// a reconnect means down until the server is heard from again.
func TestConnectionFromObserverCalls(t *testing.T) {
	m, clk := newTest()
	m.ServerWALEnd(100)
	clk.add(time.Hour)
	if ok, reason := m.Healthy(); !ok {
		t.Fatalf("after a keepalive: %s", reason)
	}
	m.Reconnected(errors.New("connection reset by peer"))
	if got := testutil.ToFloat64(m.connected); got != 0 {
		t.Fatalf("replication_connected = %v after Reconnected", got)
	}
	clk.add(31 * time.Second)
	if ok, reason := m.Healthy(); ok || !strings.Contains(reason, "connection reset by peer") {
		t.Fatalf("31s after a lost connection: ok=%v %q", ok, reason)
	}
	m.ServerWALEnd(200)
	if ok, reason := m.Healthy(); !ok {
		t.Fatalf("heard from the server again: %s", reason)
	}
}

func TestSlotAndSkipped(t *testing.T) {
	m, _ := newTest()
	m.SlotStatus("extended", 123456, 0)
	m.SkippedMessage('S')
	m.SkippedMessage('S')
	m.SkippedMessage(0)
	m.StoreSize(1 << 20)
	want := `
# HELP cdcaudit_skipped_messages_total Unknown or unexpected pgoutput messages skipped, by message type byte.
# TYPE cdcaudit_skipped_messages_total counter
cdcaudit_skipped_messages_total{kind="0x00"} 1
cdcaudit_skipped_messages_total{kind="S"} 2
cdcaudit_skipped_messages_total{kind="none"} 0
# HELP cdcaudit_slot_retained_wal_bytes WAL the replication slot holds back on the server (pg_current_wal_lsn() − restart_lsn).
# TYPE cdcaudit_slot_retained_wal_bytes gauge
cdcaudit_slot_retained_wal_bytes 123456
# HELP cdcaudit_slot_wal_status 1 for the replication slot's current pg_replication_slots.wal_status (reserved, extended, unreserved, lost), 0 for the others. lost means the server removed WAL the slot needed: changes were lost.
# TYPE cdcaudit_slot_wal_status gauge
cdcaudit_slot_wal_status{status="extended"} 1
cdcaudit_slot_wal_status{status="lost"} 0
cdcaudit_slot_wal_status{status="reserved"} 0
cdcaudit_slot_wal_status{status="unreserved"} 0
# HELP cdcaudit_store_size_bytes Size of the store file on disk.
# TYPE cdcaudit_store_size_bytes gauge
cdcaudit_store_size_bytes 1.048576e+06
`
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want),
		"cdcaudit_skipped_messages_total", "cdcaudit_slot_retained_wal_bytes", "cdcaudit_slot_wal_status", "cdcaudit_store_size_bytes"); err != nil {
		t.Fatal(err)
	}
}

// TestLintAndHandler checks the naming conventions with promlint and that the
// handler serves our series and the Go/process collectors.
func TestLintAndHandler(t *testing.T) {
	m, _ := newTest()
	m.AddEvents("public", "t", "insert", 1)
	m.SkippedMessage('X')
	problems, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "cdcaudit_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}

	srv := httptest.NewServer(handler(m.reg))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, s := range []string{
		"cdcaudit_events_total{", "cdcaudit_replication_lag_bytes 0", "cdcaudit_replication_lag_seconds 0",
		"cdcaudit_checkpoint_lsn 0", "go_goroutines", "go_build_info", "cdcaudit_batch_commit_duration_seconds_count 0",
	} {
		if !strings.Contains(string(body), s) {
			t.Errorf("/metrics lacks %q", s)
		}
	}
	if !strings.Contains(string(body), "process_") {
		t.Log("no process_* series (procfs unavailable on this OS?)")
	}
}

func TestConcurrentUse(t *testing.T) {
	m := New()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				m.AddEvents("public", "t", "insert", 1)
				m.BatchCommitted(1, 0, 10, time.Microsecond, uint64(i*1000+j), time.Now())
				m.ServerWALEnd(uint64(i*1000 + j + 5))
				m.Confirmed(uint64(i*1000 + j))
				m.SetConnected(j%2 == 0)
				m.Healthy()
				if j%50 == 0 {
					if _, err := m.reg.Gather(); err != nil {
						t.Error(err)
					}
				}
			}
		}(i)
	}
	wg.Wait()
	if got := testutil.ToFloat64(m.events.WithLabelValues("public", "t", "insert")); got != 1600 {
		t.Fatalf("events = %v", got)
	}
}

// Every cdcaudit_ series is documented in docs/operations.md.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := newTest()
	m.AddEvents("public", "t", "insert", 1)
	m.SkippedMessage('X')
	m.Sinks("postgres")
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if name := mf.GetName(); strings.HasPrefix(name, "cdcaudit_") && !strings.Contains(string(doc), "`"+name) {
			t.Errorf("docs/operations.md does not document %s", name)
		}
	}
}

func TestSessionsGaugesReadTheirSourceWhenScraped(t *testing.T) {
	m := New()
	gauges := func() (open, users, skipped float64) {
		t.Helper()
		mfs, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			v := mf.GetMetric()[0].GetGauge().GetValue()
			switch mf.GetName() {
			case "cdcaudit_sessions_open":
				open = v
			case "cdcaudit_application_users":
				users = v
			case "cdcaudit_session_rows_skipped":
				skipped = v
			}
		}
		return
	}
	if o, u, s := gauges(); o != 0 || u != 0 || s != 0 {
		t.Fatalf("without a source: %v %v %v", o, u, s)
	}
	calls := 0
	m.SessionsFrom(func() (int, int, uint64) { calls++; return 3 * calls, 12, 2 })
	if o, u, s := gauges(); o != 3 || u != 12 || s != 2 {
		t.Errorf("sessions_open %v, application_users %v, session_rows_skipped %v; want 3, 12, 2", o, u, s)
	}
	if o, _, _ := gauges(); o != 6 || calls != 2 {
		t.Errorf("second scrape: sessions_open %v after %d reads; want 6 after 2 (one read per scrape)", o, calls)
	}
}

// TestBehindIsABacklog: readers are paced (readpace) only while the server
// has more than BehindBytes of WAL the store does not hold yet, and the
// connection is up; the slot monitor's look at the server's position shows
// a backlog the stream's own messages do not.
func TestBehindIsABacklog(t *testing.T) {
	m, _ := newTest()
	m.Confirmed(1000)
	m.ServerWALEnd(1000 + BehindBytes) // a transaction in flight: keeping up
	if m.Behind() {
		t.Fatal("behind with exactly BehindBytes to go")
	}
	m.SlotStatus("reserved", 0, 1000+BehindBytes+1) // the monitor sees more WAL
	if !m.Behind() {
		t.Fatal("not behind with more than BehindBytes of WAL to go")
	}
	if b, _ := lagValues(t, m); b != BehindBytes+1 {
		t.Fatalf("lag %v bytes, want %d: the monitor's position is the server's WAL end", b, BehindBytes+1)
	}
	m.Reconnected(nil)
	if m.Behind() {
		t.Fatal("behind while disconnected: nothing is being recorded that readers could slow")
	}
	m.ServerWALEnd(1000 + BehindBytes + 1)
	m.BatchCommitted(1, 0, 100, time.Millisecond, 1000+BehindBytes+1, time.Now())
	if m.Behind() {
		t.Fatal("behind once the store holds everything")
	}
}

func TestSinkMetrics(t *testing.T) {
	m, clk := newTest()
	m.Sinks("postgres")
	value := func(name, sink string) (float64, bool) {
		t.Helper()
		mfs, err := m.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, s := range mf.GetMetric() {
				if s.GetLabel()[0].GetValue() == sink {
					if c := s.GetCounter(); c != nil {
						return c.GetValue(), true
					}
					return s.GetGauge().GetValue(), true
				}
			}
		}
		return 0, false
	}
	for _, n := range []string{"cdcaudit_sink_delivered_records_total", "cdcaudit_sink_errors_total", "cdcaudit_sink_lag_records", "cdcaudit_sink_lag_seconds", "cdcaudit_retention_held_seconds"} {
		if v, ok := value(n, "postgres"); !ok || v != 0 {
			t.Errorf("%s{sink=postgres} = %v, %v before anything happened; want a 0", n, v, ok)
		}
	}
	m.SinkDelivered("postgres", 7)
	m.SinkDelivered("postgres", 3)
	m.SinkFailed("postgres")
	m.SinkLag("postgres", 42, 1.5)
	if v, _ := value("cdcaudit_sink_delivered_records_total", "postgres"); v != 10 {
		t.Errorf("delivered %v", v)
	}
	if v, _ := value("cdcaudit_sink_errors_total", "postgres"); v != 1 {
		t.Errorf("errors %v", v)
	}
	if r, _ := value("cdcaudit_sink_lag_records", "postgres"); r != 42 {
		t.Errorf("lag records %v", r)
	}
	m.RetentionHeld("postgres", clk.now().Add(-time.Hour))
	if v, _ := value("cdcaudit_retention_held_seconds", "postgres"); v != 3600 {
		t.Errorf("held %v, want 3600", v)
	}
	m.RetentionHeld("", time.Time{})
	if v, _ := value("cdcaudit_retention_held_seconds", "postgres"); v != 0 {
		t.Errorf("held %v after release, want 0", v)
	}
}
