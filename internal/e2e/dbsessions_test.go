package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/dbsessions"
	"github.com/cdcaudit/cdcaudit/internal/odoosim"
	"github.com/cdcaudit/cdcaudit/sink"
	"github.com/jackc/pgx/v5"
)

// dbSessionsListed runs `cdcaudit sessions --db --format json` (through the
// daemon's socket while it runs).
func dbSessionsListed(t *testing.T, dataDir string) []dbsessions.Session {
	t.Helper()
	out, stderr, code := runCLI(t, "sessions", "--db", "--format", "json", "--data-dir", dataDir)
	if code != 0 {
		t.Fatalf("sessions --db: exit %d: %s", code, stderr)
	}
	var list []dbsessions.Session
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("sessions --db: %v\n%s", err, out)
	}
	return list
}

func backendOf(t *testing.T, conn *pgx.Conn) (pid int32, id string) {
	t.Helper()
	var start time.Time
	if err := conn.QueryRow(context.Background(), "SELECT pg_backend_pid(), backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()").Scan(&pid, &start); err != nil {
		t.Fatal(err)
	}
	return pid, dbsessions.SessionID(pid, start)
}

func listedID(list []dbsessions.Session, id string) *dbsessions.Session {
	for i := range list {
		if list[i].ID == id {
			return &list[i]
		}
	}
	return nil
}

// The proof of direct database sessions, on the real daemon with the Odoo
// profile: a psql session is listed by `sessions --db` (the application's
// own connection, named as Odoo names them, is not); its UPDATE, made with
// no application user, is flagged direct_db with that session among the
// candidates and alerted, while the application's change in the same
// moment is not, across a SIGKILL; the flag decided again from the stored sessions alone is
// the same; and a change made while cdcaudit was stopped, by a session it
// had seen open and that ended meanwhile, is flagged when the restarted
// daemon catches up, from the stored interval.
func TestDirectDBSessions(t *testing.T) {
	r := startOdoo(t, "--db-sessions-interval", "1s")
	appConn := connect(t, r.db.dsn+"&application_name=odoo-4242")
	appPID, _ := backendOf(t, appConn)
	app := odoosim.New(appConn)
	psqlConn := connect(t, r.db.dsn+"&application_name=psql")
	_, psqlID := backendOf(t, psqlConn)
	psql := odoosim.New(psqlConn)

	var list []dbsessions.Session
	for deadline := time.Now().Add(catchUpTimeout); ; time.Sleep(200 * time.Millisecond) {
		if list = dbSessionsListed(t, r.dataDir); listedID(list, psqlID) != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions --db never listed the psql session %s: %+v", psqlID, list)
		}
	}
	s := listedID(list, psqlID)
	if s.Application != "psql" || s.Closed != nil || s.Client != "127.0.0.1" {
		t.Errorf("psql session listed as %+v", s)
	}
	for _, s := range list {
		if s.PID == appPID || strings.HasPrefix(s.Application, "odoo-") {
			t.Errorf("the application's session is listed: %+v", s)
		}
	}

	alice := app.NewDevice(odoosim.Alice, aliceLaptop)
	orm := r.request(alice, writePartner(12, odoosim.Vals{"phone": "+1 555 0112"}))
	raw := r.ok(psql.RawSQL(r.ctx, "UPDATE res_partner SET city = 'Nowhere' WHERE id = 11"))
	// A crash at once: whether the change was stored or is replayed from
	// the slot, its flag is decided from the stored sessions.
	r.d.kill()
	r.restart()

	// A session cdcaudit sees open, that changes a record while cdcaudit
	// is stopped and ends before it is back.
	late := connect(t, r.db.dsn+"&application_name=pgadmin")
	_, lateID := backendOf(t, late)
	for deadline := time.Now().Add(catchUpTimeout); listedID(dbSessionsListed(t, r.dataDir), lateID) == nil; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sessions --db never listed %s", lateID)
		}
	}
	r.catchUp()
	r.d.stopClean()
	whileDown := r.ok(odoosim.New(late).RawSQL(r.ctx, "UPDATE res_partner SET city = 'Elsewhere' WHERE id = 14"))
	late.Close(context.Background())
	r.restart()
	evs := r.stop()

	e := one(t, evs, orm, "res_partner", "update")
	if slices.Contains(e.FlagList, dbsessions.FlagDirectDB) {
		t.Errorf("%s: the application's change is flagged %v", describe(e), e.FlagList)
	}
	for _, x := range []struct {
		xid uint32
		id  string
		why string
	}{{raw, psqlID, "psql's raw UPDATE"}, {whileDown, lateID, "a raw UPDATE while cdcaudit was stopped"}} {
		e := one(t, evs, x.xid, "res_partner", "update")
		a := actorOf(t, e)
		if a.UserVia != "none" || !slices.Contains(e.FlagList, dbsessions.FlagDirectDB) || a.Candidates == nil || !slices.Contains(a.Candidates.Sessions, x.id) {
			t.Errorf("%s: %s: user_via %s flags %v candidates %+v; want direct_db with %s", x.why, describe(e), a.UserVia, e.FlagList, a.Candidates, x.id)
		}
	}

	store, err := sink.OpenReadOnly(r.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	queued := map[string]alerts.Alert{}
	err = store.LoadState(alerts.Bucket, func(k, v []byte) error {
		var a alerts.Alert
		if strings.HasPrefix(string(k), "q/") {
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			queued[a.ID] = a
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rawEvent := one(t, evs, raw, "res_partner", "update")
	if a, ok := queued["direct_db/"+rawEvent.ID]; !ok || a.Kind != alerts.KindDirectDB || !slices.Contains(a.Sessions, psqlID) || !slices.Equal(a.Events, []string{rawEvent.ID}) {
		t.Errorf("alert of %s: %+v (queued: %v)", rawEvent.ID, a, queued)
	}
	for id, a := range queued {
		if a.Kind == alerts.KindDirectDB && slices.Contains(a.Events, one(t, evs, orm, "res_partner", "update").ID) {
			t.Errorf("the application's change alerted: %s", id)
		}
	}

	// `cdcaudit alerts` lists them: one per flagged transaction, none twice
	// across the SIGKILL.
	out, stderr, code := runCLI(t, "alerts", "--data-dir", r.dataDir, "--kind", "direct_db", "--format", "json")
	var listed []struct {
		ID       string   `json:"id"`
		Sessions []string `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(out), &listed); code != 0 || err != nil {
		t.Fatalf("alerts --kind direct_db: exit %d %v: %s%s", code, err, stderr, out)
	}
	var ids []string
	for _, a := range listed {
		ids = append(ids, a.ID)
	}
	slices.Sort(ids)
	want := []string{"direct_db/" + rawEvent.ID, "direct_db/" + one(t, evs, whileDown, "res_partner", "update").ID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("alerts --kind direct_db: %v, want %v", ids, want)
	}

	// A replay decides from the stored sessions only: the same flag and
	// candidates for the same commit, the sessions long gone.
	book, err := dbsessions.ReadBook(func(fn func(k, v []byte) error) error { return store.LoadState(dbsessions.Bucket, fn) })
	if err != nil {
		t.Fatal(err)
	}
	for _, xid := range []uint32{raw, whileDown} {
		stored := one(t, evs, xid, "res_partner", "update")
		replayed := &audit.Event{CommitLSN: stored.commitLSN, Ordinal: stored.ordinal, CommitTime: stored.CommitTime,
			Schema: "public", Table: "res_partner", Op: audit.OpUpdate, Actor: audit.Actor{UserVia: "none"}}
		dbsessions.NewFlagger(book).Flag(stored.commitLSN, stored.CommitTime, []*audit.Event{replayed})
		want := actorOf(t, stored).Candidates.Sessions
		var got []string
		if replayed.Actor.Candidates != nil {
			got = replayed.Actor.Candidates.Sessions
		}
		if !slices.Contains(replayed.Flags, dbsessions.FlagDirectDB) || !slices.Equal(got, want) {
			t.Errorf("replay of %s: flags %v sessions %v; stored %v %v", stored.ID, replayed.Flags, got, stored.FlagList, want)
		}
	}
}
