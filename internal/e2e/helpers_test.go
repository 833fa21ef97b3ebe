package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/cdcaudit/cdcaudit/internal/pipeline"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
	"github.com/jackc/pgx/v5"
)

// Generous limits: they only turn a hang into a failure, they measure nothing.
const (
	catchUpTimeout = 3 * time.Minute
	stopTimeout    = 2 * time.Minute
	cliTimeout     = time.Minute
)

// testDB is a fresh database of the shared cluster, with a slot name of its
// own (slot names are cluster-wide).
type testDB struct {
	dsn, name, slot string
}

func newDB(t *testing.T) testDB {
	t.Helper()
	dsn, name := pgtest.NewDB(t)
	slot := name
	if len(slot) > 63 {
		slot = slot[:63]
	}
	return testDB{dsn: dsn, name: name, slot: slot}
}

func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t testing.TB, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", abbrev(sql), err)
	}
}

func abbrev(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// withConn runs fn on a connection of its own: the control queries of the
// tests that restart the server must not depend on a connection that the
// restart broke.
func withConn(dsn string, fn func(*pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return fn(conn)
}

func queryLSN(dsn, sql string, args ...any) (uint64, error) {
	var s *string
	err := withConn(dsn, func(c *pgx.Conn) error {
		return c.QueryRow(context.Background(), sql, args...).Scan(&s)
	})
	if err != nil {
		return 0, err
	}
	if s == nil {
		return 0, nil
	}
	return audit.ParseLSN(*s)
}

// currentLSN is the server's WAL write position, taken after a workload.
func currentLSN(t testing.TB, dsn string) uint64 {
	t.Helper()
	lsn, err := queryLSN(dsn, "SELECT pg_current_wal_lsn()::text")
	if err != nil {
		t.Fatalf("pg_current_wal_lsn: %v", err)
	}
	return lsn
}

func confirmedFlush(dsn, slot string) (uint64, error) {
	return queryLSN(dsn, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", slot)
}

// alive reports why the capture process under test is no longer running,
// or nil.
type alive interface{ exited() error }

// waitCaughtUp waits until the slot is confirmed at or past target. The slot
// is only ever confirmed up to what is durable in the store (or, when idle,
// the WAL end a keepalive reported), so afterwards the store holds every
// change committed before target.
func waitCaughtUp(t testing.TB, dsn, slot string, target uint64, p alive) {
	t.Helper()
	deadline := time.Now().Add(catchUpTimeout)
	var last uint64
	var lastErr error
	for time.Now().Before(deadline) {
		if p != nil {
			if err := p.exited(); err != nil {
				t.Fatalf("waiting for slot %s to reach %s: the capture process ended: %v", slot, audit.FormatLSN(target), err)
			}
		}
		lsn, err := confirmedFlush(dsn, slot)
		if err == nil && lsn >= target {
			return
		}
		last, lastErr = lsn, err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("slot %s not confirmed up to %s after %s: confirmed_flush_lsn %s (err %v)",
		slot, audit.FormatLSN(target), catchUpTimeout, audit.FormatLSN(last), lastErr)
}

// waitSlotActive waits until the slot exists and a walsender streams from
// it, and returns that walsender's pid. not, when non-zero, is a pid that
// does not count (a walsender just terminated). The slot is also active
// while the connection that creates it runs CREATE_REPLICATION_SLOT: only
// a walsender in state catchup or streaming counts.
func waitSlotActive(t testing.TB, dsn, slot string, not int, p alive) int {
	t.Helper()
	deadline := time.Now().Add(catchUpTimeout)
	for time.Now().Before(deadline) {
		if p != nil {
			if err := p.exited(); err != nil {
				t.Fatalf("waiting for slot %s to be active: the capture process ended: %v", slot, err)
			}
		}
		var pid *int32
		err := withConn(dsn, func(c *pgx.Conn) error {
			err := c.QueryRow(context.Background(), `
				SELECT s.active_pid FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
				WHERE s.slot_name = $1 AND r.state IN ('catchup', 'streaming')`, slot).Scan(&pid)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			return err
		})
		if err == nil && pid != nil && int(*pid) != not {
			return int(*pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("slot %s did not become active", slot)
	return 0
}

// --- the in-process pipeline ---

// syncBuffer collects log output; it is shown when the test failed.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

type runningPipeline struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // valid once done is closed
	logs   *syncBuffer
}

// startPipeline runs pipeline.Run in this process until stop.
func startPipeline(t *testing.T, db testDB, dataDir string, tables ...string) *runningPipeline {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	p := &runningPipeline{cancel: cancel, done: make(chan struct{}), logs: logs}
	go func() {
		defer close(p.done)
		p.err = pipeline.Run(ctx, pipeline.Config{
			Replication: replication.Config{
				DSN:            db.dsn,
				Slot:           db.slot,
				Publication:    "cdcaudit",
				Tables:         tables,
				StatusInterval: 500 * time.Millisecond,
			},
			DataDir: dataDir,
			Logger:  log,
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
		}
		if t.Failed() {
			t.Logf("pipeline log:\n%s", tail(logs.String(), 6000))
		}
	})
	return p
}

func (p *runningPipeline) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("pipeline.Run returned %v", p.err)
	default:
		return nil
	}
}

// stop cancels Run's context and requires it to return nil.
func (p *runningPipeline) stop(t testing.TB) {
	t.Helper()
	p.cancel()
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		t.Fatalf("pipeline.Run did not return within %s of its context being cancelled", stopTimeout)
	}
	if p.err != nil {
		t.Fatalf("pipeline.Run returned %v after cancellation, want nil", p.err)
	}
}

// --- the binary ---

// cleanEnv is the environment without CDCAUDIT_* variables, which would
// change the daemon's configuration behind the test's back.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CDCAUDIT_") {
			env = append(env, kv)
		}
	}
	return env
}

type daemon struct {
	t       *testing.T
	args    []string
	logPath string

	cmd  *exec.Cmd
	done chan struct{}
	runs int
}

// startDaemon runs `cdcaudit run` with args (after --dsn and --data-dir
// given by the caller) as a subprocess; its output goes to a log file that
// the test shows when it fails.
func startDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	// No pg_stat_activity sampling unless a test asks (a later flag wins):
	// the tests' own connections are not Odoo's, and their raw edits would
	// all be flagged direct_db (dbsessions_test.go turns it on).
	d := &daemon{t: t, args: append([]string{"run", "--http-addr", "127.0.0.1:0", "--log-level", "info", "--db-sessions-interval", "0"}, args...),
		logPath: filepath.Join(t.TempDir(), "cdcaudit.log")}
	d.start()
	t.Cleanup(func() {
		if d.cmd != nil && d.exited() == nil {
			d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(d.logPath)
			t.Logf("cdcaudit log (%s):\n%s", d.logPath, tail(string(b), 8000))
		}
	})
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	bin := binary(d.t)
	f, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	d.runs++
	fmt.Fprintf(f, "===== start %d: cdcaudit %s\n", d.runs, strings.Join(d.args, " "))
	cmd := exec.Command(bin, d.args...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start cdcaudit: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	d.cmd, d.done = cmd, done
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) exited() error {
	select {
	case <-d.done:
		return fmt.Errorf("cdcaudit run exited: %v", d.cmd.ProcessState)
	default:
		return nil
	}
}

// kill SIGKILLs the daemon, as a power loss or the OOM killer would.
func (d *daemon) kill() {
	d.t.Helper()
	if err := d.exited(); err != nil {
		d.t.Fatalf("cannot kill: %v", err)
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// stop sends SIGTERM and waits for the exit; it returns the process state.
func (d *daemon) stop() *os.ProcessState {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(stopTimeout):
		d.cmd.Process.Kill()
		<-d.done
		d.t.Fatalf("cdcaudit did not exit within %s of SIGTERM", stopTimeout)
	}
	return d.cmd.ProcessState
}

// stopClean stops the daemon and requires exit status 0.
func (d *daemon) stopClean() *os.ProcessState {
	d.t.Helper()
	ps := d.stop()
	if ps.ExitCode() != 0 {
		d.t.Fatalf("cdcaudit run exited with %v after SIGTERM, want exit status 0", ps)
	}
	return ps
}

func (d *daemon) log() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

// runCLI runs a short-lived cdcaudit command. A command that does not end
// within cliTimeout is killed and fails the test: that is a hang.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = cleanEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("cdcaudit %s hung (killed after %s); stderr: %s", strings.Join(args, " "), cliTimeout, e.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("cdcaudit %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// --- reading the store ---

// col is one member of a row object, in stored order.
type col struct {
	Name  string
	Value json.RawMessage
}

// row is a decoded row object; nil for JSON null.
type row []col

func (r row) get(name string) (json.RawMessage, bool) {
	for _, c := range r {
		if c.Name == name {
			return c.Value, true
		}
	}
	return nil, false
}

func (r row) names() []string {
	n := make([]string, len(r))
	for i, c := range r {
		n[i] = c.Name
	}
	return n
}

func (r row) String() string {
	if r == nil {
		return "null"
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, c := range r {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%s", c.Name, c.Value)
	}
	b.WriteByte('}')
	return b.String()
}

// parseRow decodes a JSON object keeping its members' order (and their raw
// encodings, so numbers are compared as written).
func parseRow(raw json.RawMessage) (row, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not an object: %s", raw)
	}
	r := row{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		r = append(r, col{Name: tok.(string), Value: v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return r, nil
}

// event is a stored event, decoded.
type event struct {
	*audit.Record
	Raw                         string
	KeyRow, BeforeRow, AfterRow row
	ChangedList                 []string // nil when changed is null
	Toast, FlagList             []string
	lsn, commitLSN              uint64
	ordinal                     uint32
}

func decodeEvent(raw []byte) (*event, error) {
	r, err := audit.ParseRecord(raw)
	if err != nil {
		return nil, err
	}
	e := &event{Record: r, Raw: string(raw)}
	if e.KeyRow, err = parseRow(r.Key); err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	if e.BeforeRow, err = parseRow(r.Before); err != nil {
		return nil, fmt.Errorf("before: %w", err)
	}
	if e.AfterRow, err = parseRow(r.After); err != nil {
		return nil, fmt.Errorf("after: %w", err)
	}
	for _, l := range []struct {
		raw json.RawMessage
		dst *[]string
	}{{r.Changed, &e.ChangedList}, {r.UnchangedToast, &e.Toast}, {r.Flags, &e.FlagList}} {
		if err := json.Unmarshal(l.raw, l.dst); err != nil {
			return nil, err
		}
	}
	if e.lsn, err = audit.ParseLSN(r.LSN); err != nil {
		return nil, err
	}
	if e.commitLSN, err = audit.ParseLSN(r.CommitLSN); err != nil {
		return nil, err
	}
	lsn, ord, err := audit.ParseID(r.ID)
	if err != nil {
		return nil, err
	}
	if lsn != e.commitLSN {
		return nil, fmt.Errorf("id %s does not carry commit_lsn %s", r.ID, r.CommitLSN)
	}
	e.ordinal = ord
	return e, nil
}

// scanStore opens the store of a stopped daemon read-only and calls fn for
// every event in key order.
func scanStore(t testing.TB, dir string, fn func(e *event)) {
	t.Helper()
	st, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	defer st.Close()
	err = st.Scan(nil, nil, func(key, record []byte) error {
		e, err := decodeEvent(record)
		if err != nil {
			return fmt.Errorf("record %q: %w", tail(string(record), 300), err)
		}
		lsn, ord, ok := audit.SplitKey(key)
		if !ok || audit.FormatID(lsn, ord) != e.ID {
			return fmt.Errorf("record %s stored under key %x", e.ID, key)
		}
		fn(e)
		return nil
	})
	if err != nil {
		t.Fatalf("scan store: %v", err)
	}
}

func readStore(t testing.TB, dir string) []*event {
	t.Helper()
	var evs []*event
	scanStore(t, dir, func(e *event) { evs = append(evs, e) })
	return evs
}

// storeCheckpoint reads the durable checkpoint of a stopped daemon's store.
func storeCheckpoint(t testing.TB, dir string) uint64 {
	t.Helper()
	st, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	defer st.Close()
	return st.Checkpoint()
}

// changeCount counts the events that are changes: snapshot records (rows as
// a table snapshot read them) are not, and verify does not count them.
func changeCount(evs []*event) int {
	n := 0
	for _, e := range evs {
		if e.Op != "snapshot" {
			n++
		}
	}
	return n
}

// verifyOK runs `cdcaudit verify` and requires exit 0 and the event count.
func verifyOK(t *testing.T, dir string, events int) {
	t.Helper()
	out, errOut, code := runCLI(t, "verify", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("cdcaudit verify exited %d, want 0\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if want := thousands(events) + " events verified"; !strings.Contains(out, want) {
		t.Fatalf("cdcaudit verify says %q, want it to say %q", out, want)
	}
}

// thousands formats n the way the CLI does (1,234,567).
func thousands(n int) string {
	s := strconv.Itoa(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
