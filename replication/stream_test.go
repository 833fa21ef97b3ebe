package replication

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	osexec "os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

// prepare creates a table t, the publication and the slot, and returns a
// config and the start LSN.
func prepare(t *testing.T, dsn string, cfg Config) (Config, uint64) {
	t.Helper()
	exec(t, dsn, "CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, v text)")
	if cfg.Logger == nil {
		cfg.Logger, _ = testLogger(t)
	}
	cfg.DSN = dsn
	if cfg.Slot == "" {
		cfg.Slot = slotFor(t, dsn)
	}
	_, start, err := Prepare(context.Background(), cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, start
}

// newDB creates the test's database; its name is also the test's slot
// name, as slots are cluster-wide.
func newDB(t *testing.T) (dsn, slot string) {
	return pgtest.NewDB(t)
}

func slotFor(t *testing.T, dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

func TestStreamDeliversWorkload(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	// trust authentication ignores the password: it is only there to be
	// kept out of the logs.
	dsn = strings.Replace(dsn, "postgres@", "postgres:s3cret@", 1)
	log, logs := testLogger(t)
	obs := &testObserver{}
	cfg, start := prepare(t, dsn, Config{Logger: log, Observer: obs})
	c := newConsumer()
	r := stream(t, cfg, start, c)

	exec(t, dsn, "INSERT INTO t VALUES (1, 'one')")
	exec(t, dsn, "BEGIN; INSERT INTO t VALUES (2, 'two'); INSERT INTO t VALUES (3, 'three'); SELECT pg_logical_emit_message(true, 'skipme', 'x'); COMMIT")
	exec(t, dsn, "SELECT pg_logical_emit_message(true, 'cdcaudit', 'hello')")
	// The message's commit may come a read after the message itself.
	waitFor(t, 10*time.Second, "three inserts and the message", func() bool {
		return strings.Count(c.kinds(), "M") == 2 && strings.HasSuffix(c.kinds(), "C")
	})
	if got := c.inserted(t); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("inserted %v", got)
	}
	// Relation messages come before a relation's first change, and again
	// whenever the server's cache entry was invalidated.
	if k := c.kinds(); !strings.HasPrefix(k, "BRI") || strings.ReplaceAll(k, "R", "") != "BICBIIMCBMC" {
		t.Fatalf("message kinds %q", k)
	}
	// The slot is confirmed up to the last durable commit, promptly.
	durable := c.position()
	if end := lsnOf(t, query[string](t, dsn, "SELECT pg_current_wal_lsn()::text")); durable == 0 || durable > end {
		t.Fatalf("durable %s, WAL end %s", lsnString(durable), lsnString(end))
	}
	waitFor(t, 5*time.Second, "the slot to confirm the last commit", func() bool { return confirmedFlush(t, dsn, slot) >= durable })

	if err := r.stop(t); err != nil {
		t.Fatalf("Stream after cancellation: %v", err)
	}
	if got := confirmedFlush(t, dsn, slot); got > c.position() {
		t.Fatalf("slot confirmed at %s, past the consumer's durable %s", lsnString(got), lsnString(c.position()))
	}
	obs.mu.Lock()
	skipped, confirmed := obs.skipped, obs.confirmed
	obs.mu.Unlock()
	if !slices.Equal(skipped, []byte{'M'}) {
		t.Fatalf("skipped %q", skipped)
	}
	if confirmed < durable {
		t.Fatalf("observer saw confirmed %s, durable %s", lsnString(confirmed), lsnString(durable))
	}
	if obs.reconnectCount() != 0 {
		t.Fatalf("reconnects: %v", obs.reconnects)
	}
	out := logs.String()
	if strings.Contains(out, "s3cret") {
		t.Fatalf("password in the log:\n%s", out)
	}
	if !strings.Contains(out, "postgres:xxxxx@") {
		t.Fatalf("log does not name the server:\n%s", out)
	}
}

// With wal_sender_timeout = 2s the server drops a client that does not
// answer its keepalives within 2s. StatusInterval is a minute here, so only
// the answers keep the connection alive.
func TestStreamAnswersKeepalives(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	obs := &testObserver{}
	cfg, start := prepare(t, dsn, Config{Observer: obs, StatusInterval: time.Minute})
	if got := query[string](t, dsn, "SHOW wal_sender_timeout"); got != "2s" {
		t.Fatalf("wal_sender_timeout %s", got)
	}
	stream(t, cfg, start, newConsumer())
	waitFor(t, 10*time.Second, "the stream", func() bool { return activePID(t, dsn, slot) != 0 })
	pid := activePID(t, dsn, slot)
	time.Sleep(6 * time.Second)
	if got := activePID(t, dsn, slot); got != pid {
		t.Fatalf("walsender changed from %d to %d: the connection was dropped", pid, got)
	}
	if n := obs.reconnectCount(); n != 0 {
		t.Fatalf("%d reconnects: %v", n, obs.reconnects)
	}
	if age := query[float64](t, dsn, "SELECT extract(epoch FROM now() - reply_time)::float8 FROM pg_stat_replication WHERE pid = $1", pid); age > 1.5 {
		t.Fatalf("last reply %.1fs ago", age)
	}
}

// A busy server, an idle publication: the slot must follow the server's WAL
// rather than hold it. wal_sender_timeout = 0 for this connection, so the
// server never asks for replies and the status goes out on our own timer.
func TestStreamIdleSlotAdvances(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	exec(t, dsn, "CREATE TABLE busy (id int, pad text)")
	cfg, start := prepare(t, dsn+"&options=-c%20wal_sender_timeout%3D0", Config{Tables: []string{"public.t"}})
	c := newConsumer()
	stream(t, cfg, start, c)
	waitFor(t, 10*time.Second, "the stream", func() bool { return activePID(t, dsn, slot) != 0 })

	before := confirmedFlush(t, dsn, slot)
	for i := 0; i < 3; i++ {
		exec(t, dsn, "INSERT INTO busy SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g")
	}
	written := lsnOf(t, query[string](t, dsn, "SELECT pg_current_wal_lsn()::text"))
	if written-before < 5<<20 {
		t.Fatalf("only %d bytes of WAL written", written-before)
	}
	exec(t, dsn, "INSERT INTO busy VALUES (0, 'after')")
	waitFor(t, 15*time.Second, "the slot to pass the unpublished writes", func() bool {
		return confirmedFlush(t, dsn, slot) >= written
	})
	if strings.Contains(c.kinds(), "I") {
		t.Fatalf("unpublished rows delivered: %q", c.kinds())
	}
	c.mu.Lock()
	advances := len(c.advances)
	c.mu.Unlock()
	if advances == 0 {
		t.Fatal("AdvanceIdle never called")
	}

	// Published changes still arrive after idle advances.
	exec(t, dsn, "INSERT INTO t VALUES (7, 'seven')")
	waitFor(t, 10*time.Second, "the insert", func() bool { return len(c.inserted(t)) == 1 })
}

// A terminated walsender: reconnect, resume from Reset's LSN, and receive
// again the transaction that was not durable when the connection broke.
func TestStreamReconnectsAfterTerminate(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	obs := &testObserver{}
	cfg, start := prepare(t, dsn, Config{Observer: obs})
	c := newConsumer()
	stream(t, cfg, start, c)

	exec(t, dsn, "INSERT INTO t VALUES (1, 'one')")
	waitFor(t, 10*time.Second, "the first insert to be durable", func() bool { return len(c.inserted(t)) == 1 && c.position() > start })

	// The second transaction is received but not stored.
	c.mu.Lock()
	c.hold = true
	c.mu.Unlock()
	exec(t, dsn, "INSERT INTO t VALUES (2, 'two')")
	var held uint64
	waitFor(t, 10*time.Second, "the second transaction, held", func() bool {
		// Its insert, then its commit (which may come in a later read).
		c.mu.Lock()
		held = c.held
		c.mu.Unlock()
		return len(c.inserted(t)) == 2 && held != 0
	})
	first := c.position() // fixed while a transaction is held
	waitFor(t, 5*time.Second, "the slot to confirm the durable position", func() bool { return confirmedFlush(t, dsn, slot) == first })
	time.Sleep(300 * time.Millisecond) // more status updates go out; none may confirm the held one
	if got := confirmedFlush(t, dsn, slot); got != first || got >= held {
		t.Fatalf("slot confirmed %s; durable %s, held commit ends at %s", lsnString(got), lsnString(first), lsnString(held))
	}

	c.onReset = func() {
		c.mu.Lock()
		c.hold = false
		c.mu.Unlock()
	}
	pid := activePID(t, dsn, slot)
	exec(t, dsn, "SELECT pg_terminate_backend($1)", pid)
	waitFor(t, 10*time.Second, "the second insert again, durable", func() bool { return len(c.inserted(t)) == 3 && c.position() > first })
	if got := c.inserted(t); !slices.Equal(got, []string{"1", "2", "2"}) {
		t.Fatalf("inserted %v: want the lost transaction replayed, and only it", got)
	}
	if n := obs.reconnectCount(); n < 1 {
		t.Fatal("no reconnect reported")
	}
	c.mu.Lock()
	resets := c.resets
	c.mu.Unlock()
	if resets < 1 {
		t.Fatal("Reset not called")
	}
	if got := activePID(t, dsn, slot); got == pid || got == 0 {
		t.Fatalf("walsender %d after terminating %d", got, pid)
	}
}

func TestStreamSlotDroppedWhileDown(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	cfg, start := prepare(t, dsn, Config{})
	c := newConsumer()
	c.onReset = func() {
		// The stream is down: drop the slot before it comes back.
		waitFor(t, 10*time.Second, "the slot to be released", func() bool { return activePID(t, dsn, slot) == 0 })
		exec(t, dsn, "SELECT pg_drop_replication_slot($1)", slot)
	}
	r := stream(t, cfg, start, c)
	waitFor(t, 10*time.Second, "the stream", func() bool { return activePID(t, dsn, slot) != 0 })
	exec(t, dsn, "SELECT pg_terminate_backend($1)", activePID(t, dsn, slot))
	err := r.wait(t, 20*time.Second)
	if !IsFatal(err) || !strings.Contains(err.Error(), fmt.Sprintf("replication slot %q does not exist", slot)) {
		t.Fatalf("got %v", err)
	}
}

func TestStreamReplicationRevoked(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	createRole(t, dsn, "stream_revoked", "REPLICATION")
	cfg, start := prepare(t, dsn, Config{})
	cfg.DSN = withUser(t, dsn, "stream_revoked")
	r := stream(t, cfg, start, newConsumer())
	waitFor(t, 10*time.Second, "the stream", func() bool { return activePID(t, dsn, slot) != 0 })
	exec(t, dsn, "ALTER ROLE stream_revoked NOREPLICATION")
	exec(t, dsn, "SELECT pg_terminate_backend($1)", activePID(t, dsn, slot))
	err := r.wait(t, 20*time.Second)
	if !IsFatal(err) || !strings.Contains(err.Error(), "ALTER ROLE stream_revoked WITH REPLICATION") {
		t.Fatalf("got %v", err)
	}
}

func TestStreamWaitsForBusySlot(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	cfg, start := prepare(t, dsn, Config{})
	pid, release := holdSlot(t, dsn, slot, "cdcaudit")

	// Held for longer than ActiveSlotWait: fatal, naming the holder.
	short := cfg
	short.ActiveSlotWait = 1500 * time.Millisecond
	err := stream(t, short, start, newConsumer()).wait(t, 20*time.Second)
	if !IsFatal(err) || !strings.Contains(err.Error(), fmt.Sprintf("in use by another process for 1s (PID %d", pid)) &&
		!strings.Contains(err.Error(), fmt.Sprintf("(PID %d", pid)) {
		t.Fatalf("got %v", err)
	}

	// Released in time: the stream takes over.
	c := newConsumer()
	stream(t, cfg, start, c)
	time.Sleep(time.Second)
	release()
	exec(t, dsn, "INSERT INTO t VALUES (1, 'one')")
	waitFor(t, 15*time.Second, "the insert", func() bool { return len(c.inserted(t)) == 1 })
}

// Not parallel: restarts the shared server.
func TestStreamSurvivesServerRestart(t *testing.T) {
	dsn, _ := newDB(t)
	obs := &testObserver{}
	cfg, start := prepare(t, dsn, Config{Observer: obs})
	c := newConsumer()
	r := stream(t, cfg, start, c)
	exec(t, dsn, "INSERT INTO t VALUES (1, 'one')")
	waitFor(t, 10*time.Second, "the first insert", func() bool { return len(c.inserted(t)) == 1 })

	if err := pgtest.Shared(t).Restart(); err != nil {
		t.Fatal(err)
	}
	exec(t, dsn, "INSERT INTO t VALUES (2, 'two')")
	waitFor(t, 20*time.Second, "the insert after the restart", func() bool { return slices.Contains(c.inserted(t), "2") })
	if obs.reconnectCount() == 0 {
		t.Fatal("no reconnect reported")
	}

	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

// The monitor reports the slot's health, and a slot that vanishes ends
// the stream loudly.
func TestMonitorReportsAndDetectsDroppedSlot(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	obs := &testObserver{}
	cfg, _ := prepare(t, dsn, Config{Observer: obs, MonitorInterval: 100 * time.Millisecond})
	cfg, err := cfg.normalize()
	if err != nil {
		t.Fatal(err)
	}
	st := &streamer{cfg: &cfg, log: cfg.Logger}
	ctx, fail := context.WithCancelCause(context.Background())
	defer fail(nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.monitor(ctx, fail)
	}()
	waitFor(t, 10*time.Second, "a slot status", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.slotStatus == "reserved"
	})
	exec(t, dsn, "SELECT pg_drop_replication_slot($1)", slot)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("monitor did not notice the dropped slot")
	}
	if cause := context.Cause(ctx); !IsFatal(cause) || !strings.Contains(cause.Error(), "no longer exists") || !strings.Contains(cause.Error(), "--accept-gap") {
		t.Fatalf("cause %v", cause)
	}
}

// Not parallel: changes max_slot_wal_keep_size on the shared server.
func TestStreamSlotLost(t *testing.T) {
	dsn, slot := newDB(t)
	cfg, start := prepare(t, dsn, Config{})
	exec(t, dsn, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
	exec(t, dsn, "SELECT pg_reload_conf()")
	t.Cleanup(func() {
		exec(t, dsn, "ALTER SYSTEM RESET max_slot_wal_keep_size")
		exec(t, dsn, "SELECT pg_reload_conf()")
	})
	for i := 0; i < 3; i++ {
		exec(t, dsn, "INSERT INTO t VALUES ($1, 'x')", i)
		exec(t, dsn, "SELECT pg_switch_wal()")
	}
	exec(t, dsn, "CHECKPOINT")
	if s := query[string](t, dsn, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1", slot); s != "lost" {
		t.Fatalf("wal_status %s; the test could not invalidate the slot", s)
	}

	err := stream(t, cfg, start, newConsumer()).wait(t, 20*time.Second)
	if !IsFatal(err) || !strings.Contains(err.Error(), "invalidated") {
		t.Fatalf("Stream: %v", err)
	}
	if _, _, err := Prepare(context.Background(), cfg, start); !IsFatal(err) || !strings.Contains(err.Error(), "LOST") {
		t.Fatalf("Prepare: %v", err)
	}
	fs, err := Check(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustFind(t, fs, "fail", "slot", "invalidated")
}

// pgoutput reads the publication as of each change: one dropped and
// recreated after the slot cannot be streamed past. Fatal, with the fix.
func TestStreamPublicationRecreated(t *testing.T) {
	t.Parallel()
	dsn, _ := newDB(t)
	cfg, start := prepare(t, dsn, Config{})
	exec(t, dsn, "DROP PUBLICATION cdcaudit")
	exec(t, dsn, "INSERT INTO t VALUES (1, 'one')")
	exec(t, dsn, "CREATE PUBLICATION cdcaudit FOR ALL TABLES")
	err := stream(t, cfg, start, newConsumer()).wait(t, 20*time.Second)
	if !IsFatal(err) || !strings.Contains(err.Error(), "did not exist when the changes") {
		t.Fatalf("got %v", err)
	}
}

var germanLocale sync.Once

// installGermanLocale makes the de_DE.UTF-8 locale when it is missing and
// the tests run as root (as the harness installs PostgreSQL itself), so the
// German tests run on a fresh Debian machine too; glibc's localedef and its
// locale sources come with every Debian system.
func installGermanLocale() {
	out, _ := osexec.Command("locale", "-a").Output()
	if bytes.Contains(bytes.ToLower(out), []byte("de_de.utf8")) || os.Geteuid() != 0 {
		return
	}
	_ = osexec.Command("localedef", "-i", "de_DE", "-f", "UTF-8", "de_DE.UTF-8").Run()
}

// germanServer starts a private server whose messages are German (plus
// settings) and returns the DSN of its postgres database; it skips the test
// when the locale or the translations are not installed.
func germanServer(t *testing.T, settings map[string]string) string {
	t.Helper()
	germanLocale.Do(installGermanLocale)
	conf := map[string]string{"lc_messages": "'de_DE.utf8'", "wal_sender_timeout": "'2s'"}
	for k, v := range settings {
		conf[k] = v
	}
	c, err := pgtest.Start(pgtest.Options{Settings: conf})
	if err != nil {
		t.Skipf("no server with lc_messages de_DE.utf8 (install the locale: localedef -i de_DE -f UTF-8 de_DE.UTF-8): %v", err)
	}
	t.Cleanup(c.Stop)
	dsn := c.DSN("postgres")
	if err := tryExec(t, dsn, "SELECT * FROM nosuch"); err == nil || !strings.Contains(err.Error(), "existiert nicht") {
		t.Skipf("the server's messages are not German (are postgres-15.mo translations installed?): %v", err)
	}
	return dsn
}

// A slot about to be invalidated (wal_status unreserved: its WAL is past
// max_slot_wal_keep_size and goes at the next checkpoint) is reported
// before the loss, by the monitor and by check; once lost, the stream stops
// with the right message. The server speaks German: errors are told apart
// by SQLSTATE and the catalog, not by their (translated) text.
func TestSlotUnreservedThenLostInGerman(t *testing.T) {
	t.Parallel()
	dsn := germanServer(t, map[string]string{"max_slot_wal_keep_size": "'16MB'", "checkpoint_timeout": "'1h'"})

	log, logs := testLogger(t)
	obs := &testObserver{}
	cfg, start := prepare(t, dsn, Config{Slot: "unreserved", Logger: log, Observer: obs, MonitorInterval: 100 * time.Millisecond})
	cons := newConsumer()
	cons.hold = true // nothing becomes durable: the slot keeps its WAL
	r := stream(t, cfg, start, cons)
	exec(t, dsn, "INSERT INTO t VALUES (1, 'x')")
	waitFor(t, 10*time.Second, "the insert to be received", func() bool { return len(cons.inserted(t)) == 1 })
	for i := 2; i < 6; i++ {
		exec(t, dsn, "INSERT INTO t VALUES ($1, 'x')", i)
		exec(t, dsn, "SELECT pg_switch_wal()")
	}
	if s := query[string](t, dsn, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'unreserved'"); s != "unreserved" {
		t.Fatalf("wal_status %s; the test could not bring the slot to unreserved", s)
	}
	waitFor(t, 10*time.Second, "the monitor to see wal_status unreserved", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.slotStatus == "unreserved"
	})
	waitFor(t, 5*time.Second, "the pre-loss warning", func() bool {
		return strings.Contains(logs.String(), "REPLICATION SLOT ABOUT TO BE LOST: wal_status unreserved")
	})
	fs, err := Check(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustFind(t, fs, "fail", "slot", "about to be invalidated (wal_status unreserved")
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	exec(t, dsn, "CHECKPOINT")
	if s := query[string](t, dsn, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'unreserved'"); s != "lost" {
		t.Fatalf("wal_status %s after a checkpoint; want lost", s)
	}
	err = stream(t, cfg, start, newConsumer()).wait(t, 20*time.Second)
	if !IsFatal(err) || !strings.Contains(err.Error(), "was invalidated (wal_status lost: WAL it needed was removed") {
		t.Fatalf("Stream from a lost slot: %v", err)
	}
}

// A publication dropped and recreated after the slot, and a missing slot,
// told apart on a German-speaking server.
func TestPublicationRecreatedAndSlotMissingInGerman(t *testing.T) {
	t.Parallel()
	dsn := germanServer(t, nil)
	cfg, start := prepare(t, dsn, Config{Slot: "recreated"})
	exec(t, dsn, "DROP PUBLICATION cdcaudit")
	exec(t, dsn, "INSERT INTO t VALUES (1, 'one')")
	exec(t, dsn, "CREATE PUBLICATION cdcaudit FOR ALL TABLES WITH (publish = 'insert, truncate')")
	err := stream(t, cfg, start, newConsumer()).wait(t, 20*time.Second)
	if !IsFatal(err) || !strings.Contains(err.Error(), "did not exist when the changes now being decoded were written") {
		t.Fatalf("publication recreated: %v", err)
	}

	// The walsender exits a moment after the stream's connection closed.
	waitFor(t, 10*time.Second, "the slot to be released", func() bool {
		return !query[bool](t, dsn, "SELECT active FROM pg_replication_slots WHERE slot_name = 'recreated'")
	})
	exec(t, dsn, "SELECT pg_drop_replication_slot('recreated')")
	err = stream(t, cfg, start, newConsumer()).wait(t, 20*time.Second)
	if !IsFatal(err) || !strings.Contains(err.Error(), `replication slot "recreated" does not exist`) {
		t.Fatalf("slot missing: %v", err)
	}
}
