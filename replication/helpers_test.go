package replication

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// The shared cluster asks for a standby reply every second: every stream
// test also proves keepalives are answered.
func TestMain(m *testing.M) {
	pgtest.Main(m, pgtest.Options{Settings: map[string]string{"wal_sender_timeout": "2s"}})
}

// testConsumer records every message and makes each transaction durable at
// its commit, like a store that writes synchronously. hold keeps commits
// from becoming durable (a store that has not written yet).
type testConsumer struct {
	mu       sync.Mutex
	msgs     []message
	durable  uint64
	inTx     bool
	hold     bool
	held     uint64 // commit end LSN received while holding
	advances []uint64
	resets   int
	onReset  func() // called from Reset, without the lock
	notify   chan struct{}
}

type message struct {
	walStart uint64
	data     []byte
}

func newConsumer() *testConsumer { return &testConsumer{notify: make(chan struct{}, 1)} }

func (c *testConsumer) Handle(_ context.Context, walStart uint64, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, message{walStart, bytes.Clone(data)})
	switch data[0] {
	case 'B':
		c.inTx = true
	case 'C':
		c.inTx = false
		end := binary.BigEndian.Uint64(data[10:18]) // Commit: flags, commit LSN, end LSN, time
		if c.hold {
			c.held = end
			return nil
		}
		c.durable = end
		c.signal()
	case 'M':
		if bytes.Contains(data, []byte("skipme")) {
			return fmt.Errorf("%w: test message", ErrSkippable)
		}
	}
	return nil
}

func (c *testConsumer) signal() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *testConsumer) Position() (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.durable, c.inTx || c.held != 0
}

func (c *testConsumer) AdvanceIdle(lsn uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inTx || c.held != 0 {
		panic("AdvanceIdle with a transaction in flight")
	}
	c.advances = append(c.advances, lsn)
	if lsn > c.durable {
		c.durable = lsn
		c.signal()
	}
}

func (c *testConsumer) Notify() <-chan struct{} { return c.notify }

func (c *testConsumer) Reset(context.Context) (uint64, error) {
	if c.onReset != nil {
		c.onReset()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resets++
	c.inTx, c.held = false, 0
	return c.durable, nil
}

// kinds returns the message kinds received so far, e.g. "BRIC".
func (c *testConsumer) kinds() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, m := range c.msgs {
		b.WriteByte(m.data[0])
	}
	return b.String()
}

// inserted returns the first column of every Insert received, as text.
func (c *testConsumer) inserted(t *testing.T) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.msgs {
		if m.data[0] != 'I' {
			continue
		}
		msg, err := pglogrepl.Parse(m.data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(msg.(*pglogrepl.InsertMessage).Tuple.Columns[0].Data))
	}
	return out
}

func (c *testConsumer) position() uint64 {
	d, _ := c.Position()
	return d
}

// testObserver counts what the stream reports.
type testObserver struct {
	mu          sync.Mutex
	reconnects  []error
	confirmed   uint64
	walEnd      uint64
	skipped     []byte
	slotStatus  string
	slotChecked int
}

func (o *testObserver) ServerWALEnd(lsn uint64) { o.mu.Lock(); o.walEnd = lsn; o.mu.Unlock() }
func (o *testObserver) Confirmed(lsn uint64)    { o.mu.Lock(); o.confirmed = lsn; o.mu.Unlock() }
func (o *testObserver) Reconnected(err error) {
	o.mu.Lock()
	o.reconnects = append(o.reconnects, err)
	o.mu.Unlock()
}
func (o *testObserver) SkippedMessage(kind byte) {
	o.mu.Lock()
	o.skipped = append(o.skipped, kind)
	o.mu.Unlock()
}
func (o *testObserver) SlotStatus(s string, _ int64, _ uint64) {
	o.mu.Lock()
	o.slotStatus = s
	o.slotChecked++
	o.mu.Unlock()
}
func (o *testObserver) reconnectCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.reconnects)
}

// logBuffer collects log output (safe for concurrent writers) and echoes
// it to the test log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	t   testing.TB
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func testLogger(t testing.TB) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{t: t}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("REPLICATION_TEST_LOG") != "" {
			t.Logf("log:\n%s", lb.String())
		}
	})
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// exec runs SQL on dsn.
func exec(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	if err := tryExec(t, dsn, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// tryExec runs sql on dsn and returns its error: for statements the
// application runs, which must not fail.
func tryExec(t testing.TB, dsn, sql string, args ...any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

// query returns the single value of a query on dsn.
func query[T any](t testing.TB, dsn, sql string, args ...any) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var v T
	if err := conn.QueryRow(ctx, sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func lsnOf(t testing.TB, s string) uint64 {
	t.Helper()
	l, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(l)
}

// confirmedFlush is the slot's confirmed_flush_lsn (0 when it is missing).
func confirmedFlush(t testing.TB, dsn, slot string) uint64 {
	return lsnOf(t, query[string](t, dsn, `SELECT coalesce((SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1), '0/0')`, slot))
}

// activePID is the PID streaming from slot (0 when none).
func activePID(t testing.TB, dsn, slot string) int {
	return query[int](t, dsn, `SELECT coalesce((SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1), 0)`, slot)
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// withUser returns dsn for another role.
func withUser(t testing.TB, dsn, user string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(user)
	return u.String()
}

// createRole creates a login role for this test and drops it afterwards.
func createRole(t testing.TB, dsn, name, attrs string) {
	exec(t, dsn, fmt.Sprintf("CREATE ROLE %s LOGIN %s", name, attrs))
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, name)
		conn.Exec(ctx, "DROP OWNED BY "+name)
		conn.Exec(ctx, "DROP ROLE "+name)
	})
}

// running is a Stream running in the background until the test ends.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func stream(t testing.TB, cfg Config, start uint64, c Consumer) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = Stream(ctx, cfg, start, c)
		close(r.done)
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the stream and returns Stream's result.
func (r *running) stop(t testing.TB) error {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Errorf("Stream did not return within 30s of cancellation")
	}
	return r.err
}

// wait waits for Stream to return by itself.
func (r *running) wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(timeout):
		t.Fatalf("Stream still running after %s", timeout)
		return nil
	}
}

// holdSlot streams from slot over a plain replication connection (as
// another consumer would), until release is called.
func holdSlot(t testing.TB, dsn, slot, pub string) (pid uint32, release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgconn.Connect(ctx, dsn+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	err = pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: []string{"proto_version '1'", "publication_names '" + pub + "'"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Answer keepalives so wal_sender_timeout does not end the hold.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			msg, err := conn.ReceiveMessage(rctx)
			cancel()
			if err != nil {
				if pgconn.Timeout(err) {
					continue
				}
				return
			}
			// All-zero positions: alive, confirming nothing.
			if cd, ok := msg.(*pgproto3.CopyData); ok && len(cd.Data) > 0 && cd.Data[0] == pglogrepl.PrimaryKeepaliveMessageByteID {
				pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{})
			}
		}
	}()
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(stop)
			<-done
			conn.Close(ctx)
		})
	}
	t.Cleanup(release)
	return conn.PID(), release
}
