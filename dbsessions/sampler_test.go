package dbsessions

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/cdcaudit/cdcaudit/sink"
)

func TestMain(m *testing.M) { pgtest.Main(m, pgtest.Options{}) }

// waitFor is generous: it only turns a hang into a failure.
const waitFor = time.Minute

// connectAs opens a connection that names itself app.
func connectAs(t *testing.T, dsn, app string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn+"&application_name="+app)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func pidOf(t *testing.T, conn *pgx.Conn) int32 {
	t.Helper()
	var pid int32
	if err := conn.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// storeState is the pipeline's StateSink over a real store: a state-only
// batch through the store's writer, then a flush.
func storeState(t *testing.T, store *sink.Store) func(context.Context, []sink.StateRecord) error {
	w := sink.NewWriter(store, sink.WriterOptions{Queue: 16})
	t.Cleanup(func() { w.Close() })
	return func(ctx context.Context, recs []sink.StateRecord) error {
		if err := w.Submit(ctx, sink.Batch{State: recs}); err != nil {
			return err
		}
		return w.Flush(ctx)
	}
}

func openStore(t *testing.T) *sink.Store {
	t.Helper()
	store, err := sink.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// startSampler runs a sampler of dsn (the application: odoo-*) into book,
// storing into store, until the test ends.
func startSampler(t *testing.T, dsn string, interval time.Duration, book *Book, store *sink.Store) {
	t.Helper()
	s, err := NewSampler(Options{DSN: dsn, Interval: interval, App: App{Names: DefaultAppNames},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, book)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	state := storeState(t, store)
	go func() { done <- s.Run(ctx, state) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sampler: %v", err)
		}
	})
}

// await polls the book until cond holds.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", waitFor, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func byPID(list []Session, pid int32) *Session {
	i := slices.IndexFunc(list, func(s Session) bool { return s.PID == pid })
	if i < 0 {
		return nil
	}
	return &list[i]
}

func stored(t *testing.T, store *sink.Store) *Book {
	t.Helper()
	b, err := ReadBook(func(fn func(k, v []byte) error) error { return store.LoadState(Bucket, fn) })
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A psql session is kept with its role, client, application_name, start
// and state; the application's (odoo-<pid>) and cdcaudit's own are not.
// Its end is seen, and what the book shows is what the store holds.
func TestSamplerKeepsTheSessionsOutsideTheApplication(t *testing.T) {
	dsn, _ := pgtest.NewDB(t)
	app := connectAs(t, dsn, "odoo-4242")
	own := connectAs(t, dsn, "cdcaudit")
	psql := connectAs(t, dsn, "psql")
	psqlPID := pidOf(t, psql)
	var start time.Time
	var role string
	if err := psql.QueryRow(context.Background(), "SELECT backend_start, current_user::text FROM pg_stat_activity WHERE pid = pg_backend_pid()").Scan(&start, &role); err != nil {
		t.Fatal(err)
	}

	book, store := NewBook(), openStore(t)
	startSampler(t, dsn, time.Second, book, store)
	await(t, "the psql session", func() bool { return byPID(book.List(), psqlPID) != nil })
	list := book.List()
	for name, conn := range map[string]*pgx.Conn{"the application's": app, "cdcaudit's own": own} {
		if s := byPID(list, pidOf(t, conn)); s != nil {
			t.Errorf("%s session is listed: %+v", name, s)
		}
	}
	s := byPID(list, psqlPID)
	if s.ID != SessionID(psqlPID, start) || s.Role != role || s.Client != "127.0.0.1" || s.Application != "psql" ||
		!s.Start.Equal(start) || s.State != "idle" || s.StateChange == nil || s.Closed != nil {
		t.Errorf("psql session %+v; want id %s, role %s, client 127.0.0.1, idle, open", s, SessionID(psqlPID, start), role)
	}

	psql.Close(context.Background())
	await(t, "the psql session closed", func() bool { s := byPID(book.List(), psqlPID); return s != nil && s.Closed != nil })
	s = byPID(book.List(), psqlPID)
	if !s.Closed.After(s.Start) {
		t.Errorf("closed %s before it started %s", s.Closed, s.Start)
	}
	if got, want := stored(t, store).List(), book.List(); !equalLists(got, want) {
		t.Errorf("the store holds %+v\nthe book shows %+v", got, want)
	}
}

func equalLists(a, b []Session) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// rawUpdate updates a row on conn and returns a time inside its
// transaction, before its commit, and after the session connected.
func rawUpdate(t *testing.T, conn *pgx.Conn) time.Time {
	t.Helper()
	var at time.Time
	if err := conn.QueryRow(context.Background(), "UPDATE item SET name = 'raw' WHERE id = 1 RETURNING now()").Scan(&at); err != nil {
		t.Fatal(err)
	}
	return at
}

func events(at time.Time, via ...string) []*audit.Event {
	var out []*audit.Event
	for i, v := range via {
		out = append(out, &audit.Event{CommitLSN: 0x16B3800, Ordinal: uint32(i + 1), CommitTime: at, Schema: "public", Table: "item",
			Op: audit.OpUpdate, Actor: audit.Actor{UserVia: v, SessionVia: "none"}})
	}
	return out
}

// A session that connects and changes between two periodic samples is
// found by the sample the change asks for; the change is flagged with it
// as a candidate and alerted once; a flag decided again from the stored
// sessions alone (a replay, after the session ended) is the same.
func TestFlagAsksForASampleAndAReplayDecidesTheSame(t *testing.T) {
	dsn, _ := pgtest.NewDB(t)
	ctl := connectAs(t, dsn, "odoo-1")
	if _, err := ctl.Exec(context.Background(), "CREATE TABLE item (id int PRIMARY KEY, name text); INSERT INTO item VALUES (1, 'a')"); err != nil {
		t.Fatal(err)
	}
	book, store := NewBook(), openStore(t)
	startSampler(t, dsn, time.Hour, book, store) // one sample now, the next in an hour
	await(t, "the first sample", func() bool { return !book.Sampled().IsZero() })

	psql := connectAs(t, dsn, "psql")
	psqlPID := pidOf(t, psql)
	at := rawUpdate(t, psql)
	if open := book.OpenAt(at); len(open) != 0 {
		t.Fatalf("sessions known before any sample saw psql: %+v", open)
	}
	state := storeState(t, store)
	f := NewFlagger(book)
	evs := events(at, "none", "row_user")
	recs := f.Flag(0x16B3800, at, evs)
	s := byPID(book.List(), psqlPID)
	if s == nil {
		t.Fatal("no sample found the psql session")
	}
	if !slices.Equal(evs[0].Flags, []string{FlagDirectDB}) || evs[0].Actor.Candidates == nil || !slices.Equal(evs[0].Actor.Candidates.Sessions, []string{s.ID}) {
		t.Errorf("raw change: flags %v candidates %+v; want direct_db and %s", evs[0].Flags, evs[0].Actor.Candidates, s.ID)
	}
	if len(evs[1].Flags) != 0 || evs[1].Actor.Candidates != nil {
		t.Errorf("a change by an application user was flagged: %v %+v", evs[1].Flags, evs[1].Actor.Candidates)
	}
	if len(recs) != 1 || recs[0].Bucket != alerts.Bucket || recs[0].Key != "q/direct_db/"+evs[0].ID() {
		t.Fatalf("alert records %+v", recs)
	}
	var a alerts.Alert
	if err := json.Unmarshal(recs[0].Value, &a); err != nil {
		t.Fatal(err)
	}
	if a.Kind != alerts.KindDirectDB || a.Session != s.ID || !slices.Equal(a.Events, []string{evs[0].ID()}) || a.IP != "127.0.0.1" || !a.Time.Equal(at) {
		t.Errorf("alert %+v", a)
	}
	if err := state(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	// A later chunk of the same transaction is flagged, not alerted again.
	if more := f.Flag(0x16B3800, at, events(at, "none")); len(more) != 0 {
		t.Errorf("alerted twice for one transaction: %+v", more)
	}

	// The session ends; a sample records it.
	psql.Close(context.Background())
	if !book.awaitSample(time.Now(), waitFor) {
		t.Fatal("no sample after psql disconnected")
	}
	if s = byPID(book.List(), psqlPID); s.Closed == nil {
		t.Fatalf("psql still open: %+v", s)
	}
	// A replay: a flagger of a fresh process, from the store only.
	replayed := events(at, "none", "row_user")
	again := NewFlagger(stored(t, store)).Flag(0x16B3800, at, replayed)
	if !slices.Equal(replayed[0].Flags, evs[0].Flags) || !slices.Equal(replayed[0].Actor.Candidates.Sessions, evs[0].Actor.Candidates.Sessions) ||
		len(replayed[1].Flags) != 0 {
		t.Errorf("replay: flags %v candidates %+v; live: %v %+v", replayed[0].Flags, replayed[0].Actor.Candidates, evs[0].Flags, evs[0].Actor.Candidates)
	}
	if len(again) != 1 || string(again[0].Value) != string(recs[0].Value) {
		t.Errorf("replay queues %+v\nlive queued %s", again, recs[0].Value)
	}
	// After the session closed, a change is not flagged.
	later := events(s.Closed.Add(time.Millisecond), "none")
	if NewFlagger(stored(t, store)).Flag(0x16B3900, later[0].CommitTime, later) != nil || len(later[0].Flags) != 0 {
		t.Errorf("a change after the session closed was flagged: %v", later[0].Flags)
	}
}
