package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

// twinTables makes the same table twice: d with REPLICA IDENTITY DEFAULT,
// f with FULL. big is stored out of line uncompressed: every value of more
// than about 2 kB is TOASTed.
func twinTables(t *testing.T, conn *pgx.Conn, extra string) {
	t.Helper()
	for _, name := range []string{"d", "f"} {
		exec(t, conn, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, n int, s text, num numeric, b bool, j jsonb,
			ts timestamptz, raw bytea, arr int[], big text, password text, write_uid int, write_date timestamp)`, name))
		exec(t, conn, "ALTER TABLE "+name+" ALTER COLUMN big SET STORAGE EXTERNAL")
	}
	exec(t, conn, "ALTER TABLE f REPLICA IDENTITY FULL")
	if extra != "" {
		exec(t, conn, extra)
	}
}

// both runs a statement on d and on f, in one transaction.
func both(t *testing.T, conn *pgx.Conn, stmts ...string) {
	t.Helper()
	var sql []string
	for _, s := range stmts {
		sql = append(sql, strings.ReplaceAll(s, "$T", "d"), strings.ReplaceAll(s, "$T", "f"))
	}
	exec(t, conn, "BEGIN; "+strings.Join(sql, "; ")+"; COMMIT")
}

// runImages runs the pipeline with cfg until the slot is confirmed at lsn.
func runImages(t *testing.T, cfg Config, conn *pgx.Conn, lsn uint64) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	waitConfirmed(t, conn, cfg.Replication.Slot, lsn, done)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("pipeline: %v", err)
	}
}

// waitConfirmed waits until the slot is confirmed at or past lsn by an
// active stream, failing when the pipeline stops first (done).
func waitConfirmed(t testing.TB, conn *pgx.Conn, slot string, lsn uint64, done chan error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		select {
		case err := <-done:
			t.Fatalf("pipeline stopped early: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		var s string
		err := conn.QueryRow(context.Background(), `SELECT coalesce(s.confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots s
			JOIN pg_stat_replication r ON r.pid = s.active_pid
			WHERE s.slot_name = $1 AND r.state IN ('streaming', 'catchup')`, slot).Scan(&s)
		if v, _ := audit.ParseLSN(s); err == nil && v >= lsn {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("pipeline did not catch up in 5 minutes")
		}
	}
}

// storedRecords reads every row event of the store in dir.
func storedRecords(t *testing.T, dir string) []*audit.Record {
	t.Helper()
	st, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var recs []*audit.Record
	err = st.Scan(nil, nil, func(_, rec []byte) error {
		r, err := audit.ParseRecord(rec)
		recs = append(recs, r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func ofTable(recs []*audit.Record, table string) []*audit.Record {
	var out []*audit.Record
	for _, r := range recs {
		if r.Table == table {
			out = append(out, r)
		}
	}
	return out
}

// storedImages returns the images of a table, by their key's JSON.
func storedImages(t *testing.T, dir, table string) map[string]*sink.Image {
	t.Helper()
	st, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := map[string]*sink.Image{}
	err = st.ForEachImage(table, func(k []byte, im *sink.Image) error {
		out[string(k)] = cloneImage(im)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cloneImage copies an image that ForEachImage lends.
func cloneImage(im *sink.Image) *sink.Image {
	c := *im
	c.Cols = slices.Clone(im.Cols)
	for i := range c.Cols {
		c.Cols[i].Value = bytes.Clone(c.Cols[i].Value)
	}
	return &c
}

func idKey(id int) string {
	return string(sink.AppendImageKey(nil, audit.Row{{Name: "id", Value: []byte(fmt.Sprint(id))}}))
}

// sameChange compares what an update or delete says of a record on the
// DEFAULT table with what its FULL twin says.
func sameChange(t *testing.T, d, f *audit.Record) {
	t.Helper()
	for _, m := range []struct {
		name string
		a, b json.RawMessage
	}{{"key", d.Key, f.Key}, {"before", d.Before, f.Before}, {"after", d.After, f.After}, {"changed", d.Changed, f.Changed},
		{"unchanged_toast", d.UnchangedToast, f.UnchangedToast}, {"redacted", d.Redacted, f.Redacted}, {"flags", d.Flags, f.Flags}} {
		if !bytes.Equal(m.a, m.b) {
			t.Errorf("%s %s (xid %d): %s differs:\nDEFAULT %s\nFULL    %s", d.Op, d.ID, d.XID, m.name, short(m.a), short(m.b))
		}
	}
}

func short(b []byte) string {
	if len(b) > 600 {
		return string(b[:300]) + fmt.Sprintf("…(%d bytes)…", len(b)) + string(b[len(b)-200:])
	}
	return string(b)
}

// TestReconstructedBeforeImages: on a REPLICA IDENTITY DEFAULT table, every
// update and delete of a record seen since capture began says exactly what
// its FULL twin says — before, after, changed, unchanged_toast, redacted and
// flags (orm_bypass) — for every column type, a TOASTed value left
// unchanged, a secret column, a key change, deletes; a record never seen is
// before_source unknown; a truncate drops the table's images; the FULL
// twin keeps none; the store holds no secret value in the clear. With and
// without a redaction key.
func TestReconstructedBeforeImages(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		t.Run(map[bool]string{false: "placeholder", true: "hmac"}[keyed], func(t *testing.T) {
			testReconstruction(t, keyed)
		})
	}
}

func testReconstruction(t *testing.T, keyed bool) {
	dsn, conn := newDB(t)
	twinTables(t, conn, "CREATE TABLE tr (id int PRIMARY KEY, v text)")
	cfg := Config{
		Replication: replication.Config{DSN: dsn, Slot: "img", Publication: "img"},
		DataDir:     t.TempDir(),
		Profile:     "odoo",  // write_uid/write_date: orm_bypass
		Snapshot:    "never", // row 100 stays a record never seen
		Redact:      []profile.ColumnRule{{Table: "public.*", Column: "password"}},
	}
	if keyed {
		cfg.RedactKey = []byte("0123456789abcdef0123456789abcdef")
	}
	// Row 100 exists before capture begins: never seen.
	both(t, conn, `INSERT INTO $T (id, n, s, password, write_uid, write_date) VALUES (100, 1, 'old', 'pw-never-seen', 1, '2020-01-01')`)
	runImages(t, cfg, conn, currentLSN(t, conn)) // creates the slot
	bigA := `(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 300) g)`
	bigB := `(SELECT string_agg(md5((g * 7)::text), '') FROM generate_series(1, 400) g)`
	both(t, conn,
		`INSERT INTO $T VALUES (1, 1, 'one', 1.50, true, NULL, '2026-01-02 03:04:05.123456+00', '\x00ff', '{1,2}', `+bigA+`, 'secret-pw-1', 2, '2026-01-01 10:00:00'),
			(2, 2, 'two', NULL, false, '{"k": "v"}', NULL, NULL, NULL, NULL, 'secret-pw-2', 2, '2026-01-01 10:00:00'),
			(3, 3, 'three', 0, NULL, NULL, NULL, NULL, '{}', `+bigB+`, NULL, NULL, NULL),
			(4, 4, 'four', 4, true, '[1, 2]', now(), '\x', '{4}', 'small', 'secret-pw-4', 2, '2026-01-01 10:00:00'),
			(5, 5, 'five', 5, true, '5', now(), NULL, NULL, `+bigA+`, NULL, 2, '2026-01-01 10:00:00')`)
	exec(t, conn, "INSERT INTO tr SELECT g, 'v' FROM generate_series(1, 10) g")
	// Raw SQL changing every type, write_date left alone: orm_bypass.
	both(t, conn, `UPDATE $T SET n = n + 1, s = 'uno', num = 2.50, b = NOT b, j = '{"a": [1, 2]}', ts = ts + interval '1 day',
		raw = '\x0102', arr = '{3,4}' WHERE id = 1`)
	// The big value left unchanged: the server sends it as unchanged TOAST.
	both(t, conn, `UPDATE $T SET n = 7 WHERE id = 1`)
	both(t, conn, `UPDATE $T SET big = big || 'x' WHERE id = 1`)
	// The ORM's write: stamped, not a bypass.
	both(t, conn, `UPDATE $T SET s = 'orm', write_uid = 3, write_date = now() AT TIME ZONE 'UTC' WHERE id = 2`)
	// Secrets: changed, unchanged, to NULL and back.
	both(t, conn, `UPDATE $T SET password = 'secret-pw-2b' WHERE id = 2`)
	both(t, conn, `UPDATE $T SET password = 'secret-pw-2b', n = 20 WHERE id = 2`)
	both(t, conn, `UPDATE $T SET password = NULL WHERE id = 2`, `UPDATE $T SET password = 'secret-pw-2c' WHERE id = 2`)
	// SQL NULL to JSON null, and a no-op update.
	both(t, conn, `UPDATE $T SET j = 'null'::jsonb WHERE id = 3`, `UPDATE $T SET n = n WHERE id = 3`)
	// Key changes: the image moves; the TOASTed value comes along.
	both(t, conn, `UPDATE $T SET id = 1003 WHERE id = 3`)
	both(t, conn, `UPDATE $T SET n = 33 WHERE id = 1003`)
	both(t, conn, `UPDATE $T SET id = 3003, s = 'moved again' WHERE id = 1003`)
	// Several changes of one record in one transaction, then deletes.
	both(t, conn, `INSERT INTO $T (id, n, big) VALUES (6, 6, `+bigB+`)`, `UPDATE $T SET n = 60 WHERE id = 6`,
		`UPDATE $T SET s = 'six' WHERE id = 6`, `DELETE FROM $T WHERE id = 5`)
	both(t, conn, `DELETE FROM $T WHERE id = 4`)
	// Never seen since capture began.
	both(t, conn, `UPDATE $T SET n = 101 WHERE id = 100`)
	exec(t, conn, "UPDATE tr SET v = 'w' WHERE id = 1")
	exec(t, conn, "TRUNCATE tr")
	exec(t, conn, "INSERT INTO tr VALUES (42, 'after the truncate')")
	runImages(t, cfg, conn, currentLSN(t, conn))

	recs := storedRecords(t, cfg.DataDir)
	ds, fs := ofTable(recs, "d"), ofTable(recs, "f")
	if len(ds) != len(fs) || len(ds) < 20 {
		t.Fatalf("%d events on d, %d on f", len(ds), len(fs))
	}
	var reconstructed, bypass int
	for i := range ds {
		d, f := ds[i], fs[i]
		if d.Op != f.Op || !bytes.Equal(d.Key, f.Key) {
			t.Fatalf("event %d: %s %s on d, %s %s on f", i, d.Op, d.Key, f.Op, f.Key)
		}
		switch d.Op {
		case "update", "delete":
			if f.BeforeSource != "wal" {
				t.Errorf("FULL %s %s: before_source %q, want wal", f.Op, f.Key, f.BeforeSource)
			}
			if string(d.Key) == `{"id":100}` {
				if d.BeforeSource != "unknown" || string(d.Changed) != "null" || string(d.Before) != "null" {
					t.Errorf("never-seen record: before_source %q, before %s, changed %s; want unknown, null, null", d.BeforeSource, d.Before, d.Changed)
				}
				continue
			}
			if d.BeforeSource != "reconstructed" {
				t.Errorf("DEFAULT %s %s: before_source %q, want reconstructed", d.Op, d.Key, d.BeforeSource)
			}
			reconstructed++
			if strings.Contains(string(d.Flags), "orm_bypass") {
				bypass++
			}
			sameChange(t, d, f)
		default:
			if d.BeforeSource != "" {
				t.Errorf("%s carries before_source %q", d.Op, d.BeforeSource)
			}
		}
	}
	if reconstructed < 15 || bypass == 0 {
		t.Errorf("%d reconstructed, %d orm_bypass: the workload did not exercise them", reconstructed, bypass)
	}
	// The TOASTed value left unchanged is in before and after.
	toastSeen := false
	for _, r := range ds {
		if r.Op == "update" && string(r.Key) == `{"id":1}` && strings.Contains(string(r.After), `"n":7`) && !toastSeen {
			toastSeen = true
			if string(r.UnchangedToast) != "[]" || !strings.Contains(string(r.Before), `"big":"c4ca4238`) ||
				!strings.Contains(string(r.After), `"big":"c4ca4238`) || string(r.Changed) != `["n"]` {
				t.Errorf("unchanged TOAST: unchanged_toast %s changed %s, before/after without big", r.UnchangedToast, r.Changed)
			}
		}
		if r.Op == "update" && string(r.Key) == `{"id":2}` && string(r.Changed) == `["password"]` {
			t.Logf("secret change on DEFAULT: before %s", short(r.Before))
		}
		if r.Op == "update" && strings.Contains(string(r.After), `"password":`) && strings.Contains(string(r.Changed), "password") {
			want := `"password":"[redacted]"`
			if keyed {
				want = `"password":"hmac-sha256:`
			}
			if !strings.Contains(string(r.Before), want) && !strings.Contains(string(r.Before), `"password":null`) {
				t.Errorf("secret change: before %s, want %s", short(r.Before), want)
			}
		}
	}

	// Images: deleted records and the truncated table have none; the key
	// changes moved theirs.
	imgs := storedImages(t, cfg.DataDir, "public.d")
	for _, id := range []int{1, 2, 3003, 6, 100} {
		if imgs[idKey(id)] == nil {
			t.Errorf("no image of d %d", id)
		}
	}
	for _, id := range []int{3, 1003, 4, 5} {
		if imgs[idKey(id)] != nil {
			t.Errorf("d %d has an image: deleted or moved records must have none", id)
		}
	}
	if im := imgs[idKey(1)]; im != nil {
		for _, c := range im.Cols {
			if c.Name == "password" && c.Kind != sink.ColToken {
				t.Errorf("password kept as %d, want a token", c.Kind)
			}
		}
	}
	// The FULL twin needs none: the server sends its before-images.
	if f := storedImages(t, cfg.DataDir, "public.f"); len(f) != 0 {
		t.Errorf("the FULL table f has %d images", len(f))
	}
	if tr := storedImages(t, cfg.DataDir, "public.tr"); len(tr) != 1 || tr[idKey(42)] == nil {
		t.Errorf("tr has %d images after its truncate and one insert, want that one", len(tr))
	}
	// No secret value anywhere in the file, in events or images.
	raw, err := os.ReadFile(filepath.Join(cfg.DataDir, sink.FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"secret-pw-1", "secret-pw-2", "secret-pw-4", "pw-never-seen"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the store file holds %q in the clear", secret)
		}
	}
}

const childEnv = "CDCAUDIT_IMAGES_CHILD"

// runChild is the pipeline in a process of its own, for SIGKILL: the
// parent passes DSN, slot and data dir in the environment.
func runChild() {
	v := strings.Split(os.Getenv(childEnv), "\n")
	err := Run(context.Background(), Config{
		Replication: replication.Config{DSN: v[0], Slot: v[1], Publication: v[1]},
		DataDir:     v[2],
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Profile:     "none",
		Snapshot:    "never", // the twins' symmetry: no snapshot of one and not the other
	})
	fmt.Fprintln(os.Stderr, "child stopped:", err)
	os.Exit(3)
}

// startChild starts runChild on slot and dir: kill it with SIGKILL.
func startChild(t *testing.T, dsn, slot, dir string) *osexec.Cmd {
	t.Helper()
	child := osexec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"="+strings.Join([]string{dsn, slot, dir}, "\n"))
	child.Stderr = os.Stderr
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	return child
}

// TestImagesAcrossSIGKILL: the pipeline is killed (no clean stop) while a
// workload with a transaction larger than a chunk streams; after a restart
// every reconstructed before-image still equals the FULL twin's, and the
// images equal the records' last rows.
func TestImagesAcrossSIGKILL(t *testing.T) {
	dsn, conn := newDB(t)
	twinTables(t, conn, "")
	cfg := imagesConfig(t, dsn, "kill")
	dir := cfg.DataDir
	runImages(t, cfg, conn, currentLSN(t, conn))

	both(t, conn, `INSERT INTO $T (id, n, s, big) SELECT g, g, 's' || g, CASE WHEN g % 500 = 0 THEN repeat(md5(g::text), 100) END
		FROM generate_series(1, 6000) g`)
	child := startChild(t, dsn, "kill", dir)
	// A transaction of 3 × 6000 changes per table (chunks of 2000), small
	// ones around it; the kill lands while they stream.
	for round := range 3 {
		both(t, conn, fmt.Sprintf(`UPDATE $T SET n = n + 1, s = s || '%d' WHERE id %% 3 = %d`, round, round))
		both(t, conn, fmt.Sprintf(`UPDATE $T SET id = id + 100000 WHERE id %% 997 = %d`, round))
	}
	both(t, conn, `UPDATE $T SET n = -n`, `UPDATE $T SET s = 'big tx'`, `UPDATE $T SET n = n * 2 WHERE id % 2 = 0`)
	time.Sleep(300 * time.Millisecond)
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	if st, err := sink.OpenReadOnly(dir); err == nil {
		_, _, n := st.Head()
		t.Logf("killed with %d events stored, checkpoint %s", n, audit.FormatLSN(st.Checkpoint()))
		st.Close()
	}
	both(t, conn, `DELETE FROM $T WHERE id % 5 = 0`, `UPDATE $T SET n = 0 WHERE id % 7 = 0`)
	runImages(t, cfg, conn, currentLSN(t, conn))

	recs := storedRecords(t, dir)
	ds, fs := ofTable(recs, "d"), ofTable(recs, "f")
	if len(ds) != len(fs) {
		count := func(rs []*audit.Record) map[string]int {
			m := map[string]int{}
			for _, r := range rs {
				m[r.Op]++
			}
			return m
		}
		t.Fatalf("%d events on d %v, %d on f %v", len(ds), count(ds), len(fs), count(fs))
	}
	bad := 0
	for i := range ds {
		if ds[i].Op == "update" || ds[i].Op == "delete" {
			if ds[i].BeforeSource != "reconstructed" && bad < 5 {
				t.Errorf("%s %s %s: before_source %s", ds[i].ID, ds[i].Op, ds[i].Key, ds[i].BeforeSource)
				bad++
			}
			if !bytes.Equal(ds[i].Before, fs[i].Before) || !bytes.Equal(ds[i].Changed, fs[i].Changed) || !bytes.Equal(ds[i].After, fs[i].After) {
				if bad++; bad < 5 {
					sameChange(t, ds[i], fs[i])
				}
			}
		}
	}
	// The images are the table's rows as they are now.
	rows, err := conn.Query(context.Background(), "SELECT id, n, s FROM d")
	if err != nil {
		t.Fatal(err)
	}
	live := map[string][2]string{}
	var id, n int
	var s string
	_, err = pgx.ForEachRow(rows, []any{&id, &n, &s}, func() error {
		live[idKey(id)] = [2]string{fmt.Sprint(n), string(audit.AppendString(nil, s))}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if f := storedImages(t, dir, "public.f"); len(f) != 0 {
		t.Errorf("the FULL table f has %d images", len(f))
	}
	imgs := storedImages(t, dir, "public.d")
	if len(imgs) != len(live) {
		t.Errorf("%d images, %d rows", len(imgs), len(live))
	}
	wrong := 0
	for k, want := range live {
		im := imgs[k]
		if im == nil || im.Partial() || string(im.Cols[1].Value) != want[0] || string(im.Cols[2].Value) != want[1] {
			if wrong++; wrong < 5 {
				t.Errorf("image of %x: %+v, want n=%s s=%s", k, im, want[0], want[1])
			}
		}
	}
	if !slices.ContainsFunc(ds, func(r *audit.Record) bool { return r.Op == "update" }) {
		t.Fatal("no updates")
	}
}

// fullStreamDigest is the SHA-256 of the records TestFullTableEventsUnchanged
// stores, as cdcaudit wrote them when it still kept images of FULL tables
// (commit 0fab694): not keeping them must not change one byte of an event.
const fullStreamDigest = "dbdecd1019bb3d9e7ccc59e2c36890cc4ea5ce3ff738cfa61d6020b69e7802a5"

// TestFullTableEventsUnchanged: a REPLICA IDENTITY FULL table's inserts,
// updates (an unchanged TOASTed value, a key change), deletes and a
// TRUNCATE, through the consumer as the stream hands them over, store
// exactly the records they did when the table's images were kept, and
// leave no image.
func TestFullTableEventsUnchanged(t *testing.T) {
	c := benchConsumer(t)
	ctx := context.Background()
	var m pgoutput
	lsn := uint64(0x1000000)
	handle := func(data []byte) {
		t.Helper()
		if err := c.Handle(ctx, lsn, data); err != nil {
			t.Fatal(err)
		}
		lsn += 64
	}
	at := time.Date(2026, 12, 3, 11, 30, 0, 0, time.UTC)
	xid := uint32(1000)
	tx := func(changes func()) {
		xid++
		at = at.Add(time.Second)
		final := lsn + 1<<20
		handle(m.begin(final, at, xid))
		changes()
		handle(m.commit(final, final+40, at))
		lsn = final + 40
	}
	handle(m.relation(16400))
	tx(func() {
		for id := 1; id <= 20; id++ {
			handle(m.start('I').u32(16400).u8('N').row(id, false).b)
		}
	})
	tx(func() {
		for id := 1; id <= 10; id++ {
			handle(m.start('U').u32(16400).u8('O').row(id, false).u8('N').row(id, true).b)
		}
	})
	tx(func() {
		// The new tuple leaves "name" out as an unchanged TOASTed value:
		// the decoder takes it from the old row.
		m.start('U').u32(16400).u8('O').row(11, false).u8('N').row(11, true)
		name := []byte("Product 11 — \"Widget\", size L")
		i := bytes.LastIndex(m.b, name)
		m.b = append(append(m.b[:i-5], 'u'), m.b[i+len(name):]...)
		handle(m.b)
		// A key change: 12 becomes 1012.
		m.start('U').u32(16400).u8('O').row(12, false).u8('N').row(1012, true)
		handle(m.b)
		for id := 13; id <= 15; id++ {
			handle(m.start('D').u32(16400).u8('O').row(id, false).b)
		}
	})
	tx(func() { handle(m.start('T').u32(1).u8(0).u32(16400).b) })
	tx(func() { handle(m.start('I').u32(16400).u8('N').row(7, false).b) })
	if err := c.writer.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c.images.release()

	h := sha256.New()
	n := 0
	if err := c.store.Scan(nil, nil, func(_, rec []byte) error {
		r, err := audit.ParseRecord(rec)
		if err != nil {
			return err
		}
		if r.Table == "sale_order_line" {
			n++
			// The event's own JSON: the chain's hashes start from a genesis
			// record of the store's own.
			body, _, ok := bytes.Cut(rec, []byte(`,"prev_hash":`))
			if !ok {
				return fmt.Errorf("record without its hash: %s", rec)
			}
			h.Write(body)
			if r.Op == "update" && string(r.Key) == `{"id":11}` && (!bytes.Contains(r.After, []byte(`"name":"Product 11 `)) || string(r.UnchangedToast) != "[]") {
				t.Errorf("the unchanged TOASTed name is not taken from the old row: %s", rec)
			}
			h.Write([]byte{'\n'})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 20+10+5+1+1 {
		t.Fatalf("%d events stored", n)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != fullStreamDigest {
		t.Errorf("the FULL table's records differ from what they were: digest %s, want %s", got, fullStreamDigest)
	}
	imgs := 0
	if err := c.store.ForEachImage("public.sale_order_line", func([]byte, *sink.Image) error { imgs++; return nil }); err != nil {
		t.Fatal(err)
	}
	if imgs != 0 {
		t.Errorf("%d images of a FULL table stored", imgs)
	}
}

// changeOf finds the one update of table's record id whose after-image has
// n = n.
func changeOf(t *testing.T, recs []*audit.Record, table string, id, n int) *audit.Record {
	t.Helper()
	var found *audit.Record
	for _, r := range ofTable(recs, table) {
		if r.Op == "update" && string(r.Key) == fmt.Sprintf(`{"id":%d}`, id) && bytes.Contains(r.After, []byte(fmt.Sprintf(`"n":%d,`, n))) {
			if found != nil {
				t.Fatalf("two updates of %s %d to n = %d", table, id, n)
			}
			found = r
		}
	}
	if found == nil {
		t.Fatalf("no update of %s %d to n = %d", table, id, n)
	}
	return found
}

// TestImagesAcrossIdentityChanges: a table's images follow its REPLICA
// IDENTITY as the stream's Relation messages give it, change by change. A
// FULL table keeps none (it needs none). A DEFAULT table made FULL and then
// DEFAULT again reconstructs nothing from an image older than its FULL
// spell: a record changed while FULL would get a wrong before-image. Its
// records say "unknown" until their first change under DEFAULT, and are
// reconstructed from the next. Both when the FULL spell begins in a new
// process and when it begins in the running one.
func TestImagesAcrossIdentityChanges(t *testing.T) {
	dsn, conn := newDB(t)
	exec(t, conn, `CREATE TABLE t (id int PRIMARY KEY, n int, s text); CREATE TABLE u (id int PRIMARY KEY, n int, s text);
		ALTER TABLE u REPLICA IDENTITY FULL`)
	cfg := imagesConfig(t, dsn, "ident")
	runImages(t, cfg, conn, currentLSN(t, conn)) // creates the slot
	exec(t, conn, "INSERT INTO t SELECT g, 0, 's' FROM generate_series(1, 3) g; INSERT INTO u SELECT g, 0, 's' FROM generate_series(1, 2) g")
	exec(t, conn, "UPDATE t SET n = 1 WHERE id = 1")
	exec(t, conn, "UPDATE u SET n = 1 WHERE id = 1")
	exec(t, conn, "DELETE FROM u WHERE id = 2")
	runImages(t, cfg, conn, currentLSN(t, conn))
	if imgs := storedImages(t, cfg.DataDir, "public.u"); len(imgs) != 0 {
		t.Errorf("the FULL table u has %d images", len(imgs))
	}
	if imgs := storedImages(t, cfg.DataDir, "public.t"); len(imgs) != 3 {
		t.Errorf("the DEFAULT table t has %d images, want 3", len(imgs))
	}

	// While the pipeline is stopped: a FULL spell that begins in the next
	// process.
	exec(t, conn, "ALTER TABLE t REPLICA IDENTITY FULL")
	exec(t, conn, "UPDATE t SET n = 2 WHERE id = 1") // never in t's images
	exec(t, conn, "ALTER TABLE t REPLICA IDENTITY DEFAULT")
	exec(t, conn, "UPDATE t SET n = 3 WHERE id = 1")  // unknown: the image says n = 1
	exec(t, conn, "UPDATE t SET n = 4 WHERE id = 1")  // reconstructed: n = 3
	exec(t, conn, "UPDATE t SET n = 10 WHERE id = 2") // unknown: not changed since FULL
	// u, FULL since it was made, becomes DEFAULT.
	exec(t, conn, "ALTER TABLE u REPLICA IDENTITY DEFAULT")
	exec(t, conn, "UPDATE u SET n = 2 WHERE id = 1") // unknown
	exec(t, conn, "UPDATE u SET n = 3 WHERE id = 1") // reconstructed: n = 2
	// A second FULL spell of t, in the same process as the first: the
	// images of the DEFAULT spell between must go too.
	exec(t, conn, "ALTER TABLE t REPLICA IDENTITY FULL")
	exec(t, conn, "UPDATE t SET n = 5 WHERE id = 1")
	exec(t, conn, "DELETE FROM t WHERE id = 3")
	exec(t, conn, "ALTER TABLE t REPLICA IDENTITY DEFAULT")
	exec(t, conn, "UPDATE t SET n = 6 WHERE id = 1") // unknown: the image says n = 4
	exec(t, conn, "UPDATE t SET n = 7 WHERE id = 1") // reconstructed: n = 6
	// And within one transaction: FULL and back.
	exec(t, conn, `BEGIN; ALTER TABLE t REPLICA IDENTITY FULL; UPDATE t SET n = 8 WHERE id = 1;
		ALTER TABLE t REPLICA IDENTITY DEFAULT; UPDATE t SET n = 9 WHERE id = 1; COMMIT`) // unknown: the image says n = 7
	runImages(t, cfg, conn, currentLSN(t, conn))

	recs := storedRecords(t, cfg.DataDir)
	for _, c := range []struct {
		table     string
		id, n     int
		source    string
		beforeHas string
	}{
		{"t", 1, 1, "reconstructed", `"n":0,`},
		{"t", 1, 2, "wal", `"n":1,`},
		{"t", 1, 3, "unknown", ""},
		{"t", 1, 4, "reconstructed", `"n":3,`},
		{"t", 2, 10, "unknown", ""},
		{"u", 1, 1, "wal", `"n":0,`},
		{"u", 1, 2, "unknown", ""},
		{"u", 1, 3, "reconstructed", `"n":2,`},
		{"t", 1, 5, "wal", `"n":4,`},
		{"t", 1, 6, "unknown", ""},
		{"t", 1, 7, "reconstructed", `"n":6,`},
		{"t", 1, 8, "wal", `"n":7,`},
		{"t", 1, 9, "unknown", ""},
	} {
		r := changeOf(t, recs, c.table, c.id, c.n)
		if r.BeforeSource != c.source || !bytes.Contains(r.Before, []byte(c.beforeHas)) {
			t.Errorf("%s %d to n = %d: before_source %s, before %s; want %s with %s", c.table, c.id, c.n, r.BeforeSource, r.Before, c.source, c.beforeHas)
		}
		if c.source == "unknown" && (string(r.Before) != "null" || string(r.Changed) != "null") {
			t.Errorf("%s %d to n = %d: unknown, yet before %s, changed %s", c.table, c.id, c.n, r.Before, r.Changed)
		}
	}
	// What is left: the images written since the last FULL spell.
	imgs := storedImages(t, cfg.DataDir, "public.t")
	if im := imgs[idKey(1)]; len(imgs) != 1 || im == nil || string(im.Cols[1].Value) != "9" {
		t.Errorf("t's images: %d, of 1: %+v; want one, n = 9", len(imgs), im)
	}
	if imgs := storedImages(t, cfg.DataDir, "public.u"); len(imgs) != 1 || imgs[idKey(1)] == nil {
		t.Errorf("u's images: %d, want record 1's", len(imgs))
	}
}

// A change streamed without a key (a FULL table whose primary key was
// dropped) is not recorded in the images: those kept before it go, so
// that once the key is back no update is rebuilt from an image older than
// that change.
func TestImagesAcrossAKeylessSpell(t *testing.T) {
	dsn, conn := newDB(t)
	exec(t, conn, "CREATE TABLE k (id int PRIMARY KEY, n int, s text)")
	cfg := imagesConfig(t, dsn, "keyless")
	runImages(t, cfg, conn, currentLSN(t, conn)) // creates the slot
	exec(t, conn, "INSERT INTO k SELECT g, 0, 's' FROM generate_series(1, 2) g")
	exec(t, conn, "UPDATE k SET n = 1 WHERE id = 1") // reconstructed: n = 0
	exec(t, conn, "ALTER TABLE k REPLICA IDENTITY FULL; ALTER TABLE k DROP CONSTRAINT k_pkey")
	exec(t, conn, "UPDATE k SET n = 2 WHERE id = 1") // no key: not in the images
	// Streamed while k has no key (the key of a FULL table is the
	// catalog's when the change is decoded).
	runImages(t, cfg, conn, currentLSN(t, conn))
	exec(t, conn, "ALTER TABLE k ADD PRIMARY KEY (id); ALTER TABLE k REPLICA IDENTITY DEFAULT")
	exec(t, conn, "UPDATE k SET n = 3 WHERE id = 1") // unknown: the image says n = 1
	exec(t, conn, "UPDATE k SET n = 4 WHERE id = 1") // reconstructed: n = 3
	runImages(t, cfg, conn, currentLSN(t, conn))
	recs := storedRecords(t, cfg.DataDir)
	for _, c := range []struct {
		n         int
		source    string
		beforeHas string
	}{{1, "reconstructed", `"n":0,`}, {3, "unknown", ""}, {4, "reconstructed", `"n":3,`}} {
		r := changeOf(t, recs, "k", 1, c.n)
		if r.BeforeSource != c.source || !bytes.Contains(r.Before, []byte(c.beforeHas)) {
			t.Errorf("k 1 to n = %d: before_source %s, before %s; want %s with %s", c.n, r.BeforeSource, r.Before, c.source, c.beforeHas)
		}
	}
}

// A table created while cdcaudit runs has its inserts captured before it
// joins the changes publication; an update made before then is never
// streamed. The image its insert left is older than that update: the
// first update after the table is listed must not be rebuilt from it.
func TestImagesOlderThanCoverageRebuildNothing(t *testing.T) {
	dsn, conn := newDB(t)
	exec(t, conn, "CREATE TABLE t (id int PRIMARY KEY)")
	logs := &lockedLog{}
	cfg := imagesConfig(t, dsn, "coverage")
	cfg.Replication.CatalogInterval = 2 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	waitConfirmed(t, conn, "coverage", currentLSN(t, conn), done)
	exec(t, conn, "CREATE TABLE n (id int PRIMARY KEY, v int); INSERT INTO n VALUES (1, 0)")
	exec(t, conn, "UPDATE n SET v = 1 WHERE id = 1") // not listed yet: never streamed
	for deadline := time.Now().Add(time.Minute); !logs.has(`captured from now on" table=public.n`); {
		if time.Now().After(deadline) {
			t.Fatalf("n was never listed:\n%s", logs.b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	exec(t, conn, "UPDATE n SET v = 2 WHERE id = 1") // unknown: the image says v = 0
	exec(t, conn, "UPDATE n SET v = 3 WHERE id = 1") // reconstructed: v = 2
	waitConfirmed(t, conn, "coverage", currentLSN(t, conn), done)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	recs := storedRecords(t, cfg.DataDir)
	for _, c := range []struct {
		v         int
		source    string
		beforeHas string
	}{{2, "unknown", ""}, {3, "reconstructed", `"v":2`}} {
		var r *audit.Record
		for _, x := range recs {
			if x.Table == "n" && x.Op == "update" && bytes.Contains(x.After, []byte(fmt.Sprintf(`"v":%d`, c.v))) {
				r = x
			}
		}
		if r == nil {
			t.Fatalf("no update of n to v = %d among %d records", c.v, len(recs))
		}
		if r.BeforeSource != c.source || !bytes.Contains(r.Before, []byte(c.beforeHas)) {
			t.Errorf("n to v = %d: before_source %s, before %s; want %s with %s", c.v, r.BeforeSource, r.Before, c.source, c.beforeHas)
		}
	}
}

// Images are keyed by the key's values: once other columns form the key,
// the same values find another row's image, which must rebuild nothing.
func TestImagesAfterTheKeyColumnsChange(t *testing.T) {
	dsn, conn := newDB(t)
	exec(t, conn, "CREATE TABLE kc (id int PRIMARY KEY, code int NOT NULL UNIQUE, v text)")
	cfg := imagesConfig(t, dsn, "keycols")
	runImages(t, cfg, conn, currentLSN(t, conn))                           // creates the slot
	exec(t, conn, "INSERT INTO kc VALUES (5, 77, 'five'), (9, 5, 'nine')") // images keyed 5 and 9
	runImages(t, cfg, conn, currentLSN(t, conn))
	exec(t, conn, "ALTER TABLE kc REPLICA IDENTITY USING INDEX kc_code_key")
	exec(t, conn, "UPDATE kc SET v = 'nine again' WHERE id = 9") // key code = 5: finds id 5's image
	runImages(t, cfg, conn, currentLSN(t, conn))
	for _, r := range storedRecords(t, cfg.DataDir) {
		if r.Table == "kc" && r.Op == "update" && r.BeforeSource != "unknown" {
			t.Errorf("the update after the key columns changed: before_source %s, before %s; want unknown", r.BeforeSource, r.Before)
		}
	}
}

// imagesConfig is the pipeline of the image tests: no profile, no
// snapshot, slot and publications named slot, a fresh data dir.
func imagesConfig(t *testing.T, dsn, slot string) Config {
	return Config{
		Replication: replication.Config{DSN: dsn, Slot: slot, Publication: slot},
		DataDir:     t.TempDir(),
		Profile:     "none",
		Snapshot:    "never",
	}
}

// lockedLog is a log the pipeline writes while the test reads it.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Contains(l.b.Bytes(), []byte(s))
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestFullTableSnapshotWithConcurrentWriter: a REPLICA IDENTITY FULL
// table is copied while writers update, move, delete and insert its
// records: its images are kept while the copy runs (a row read before a
// change the stream already showed must be dropped), so that every key
// has at most one snapshot record and the snapshot records followed by the
// stream's events give exactly the table's content; once the copy is
// complete, its images go.
func TestFullTableSnapshotWithConcurrentWriter(t *testing.T) {
	dsn, conn := newDB(t)
	const rows = 30_000
	exec(t, conn, `CREATE TABLE big (id int PRIMARY KEY, n int8, s text); ALTER TABLE big REPLICA IDENTITY FULL`)
	exec(t, conn, `INSERT INTO big SELECT g, g, 'r' || g FROM generate_series(1, $1::int) g`, rows)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var txs atomic.Int64
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wc := connect(t, dsn)
			rng := rand.New(rand.NewPCG(uint64(w), 8))
			next := 1_000_000 * (w + 1)
			for {
				select {
				case <-stop:
					return
				default:
				}
				var sql []string
				for range 3 {
					id := 1 + rng.IntN(rows)
					switch rng.IntN(10) {
					case 0:
						sql = append(sql, fmt.Sprintf("DELETE FROM big WHERE id = %d", id))
					case 1:
						next++
						sql = append(sql, fmt.Sprintf("UPDATE big SET id = %d, s = 'moved' WHERE id = %d", next, id))
					case 2:
						next++
						sql = append(sql, fmt.Sprintf("INSERT INTO big VALUES (%d, 0, 'new')", next))
					default:
						sql = append(sql, fmt.Sprintf("UPDATE big SET n = n + 1, s = 'w%d' WHERE id = %d", w, id))
					}
				}
				if _, err := wc.Exec(context.Background(), "BEGIN; "+strings.Join(sql, "; ")+"; COMMIT"); err != nil {
					t.Error(err)
					return
				}
				txs.Add(1)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // the writers are busy when the slot is made
	logs := &lockedLog{}
	cfg := Config{
		Replication: replication.Config{DSN: dsn, Slot: "fullsnap", Publication: "fullsnap"},
		DataDir:     t.TempDir(),
		Profile:     "none",
		Logger:      slog.New(slog.NewTextHandler(logs, nil)),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	deadline := time.Now().Add(5 * time.Minute)
	for !logs.has("snapshot complete") {
		select {
		case err := <-done:
			t.Fatalf("pipeline stopped early: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the snapshot did not complete in 5 minutes")
		}
	}
	time.Sleep(300 * time.Millisecond) // changes after the copy, images not kept
	close(stop)
	wg.Wait()
	exec(t, conn, "UPDATE big SET s = 'last' WHERE id = (SELECT min(id) FROM big)")
	waitConfirmed(t, conn, cfg.Replication.Slot, currentLSN(t, conn), done)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	if txs.Load() < 20 {
		t.Fatalf("the writers committed only %d transactions", txs.Load())
	}

	// The table as the records tell it, key → "n s".
	got := map[string]string{}
	snaps := map[string]int{}
	value := func(r json.RawMessage) (string, string) {
		var v struct {
			ID int             `json:"id"`
			N  json.RawMessage `json:"n"`
			S  json.RawMessage `json:"s"`
		}
		if err := json.Unmarshal(r, &v); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(v.ID), string(v.N) + " " + string(v.S)
	}
	recs := ofTable(storedRecords(t, cfg.DataDir), "big")
	for _, r := range recs {
		switch r.Op {
		case "snapshot", "insert", "update":
			if r.Op == "snapshot" {
				snaps[string(r.Key)]++
			}
			if r.Op == "update" {
				if r.BeforeSource != "wal" {
					t.Fatalf("update %s: before_source %s", r.ID, r.BeforeSource)
				}
				old, _ := value(r.Before)
				delete(got, old)
			}
			id, v := value(r.After)
			got[id] = v
		case "delete":
			id, _ := value(r.Before)
			delete(got, id)
		}
	}
	for k, n := range snaps {
		if n > 1 {
			t.Fatalf("key %s has %d snapshot records", k, n)
		}
	}
	want := map[string]string{}
	dbRows, err := conn.Query(context.Background(), "SELECT id, to_json(n)::text, to_json(s)::text FROM big")
	if err != nil {
		t.Fatal(err)
	}
	var id int
	var n, s string
	if _, err := pgx.ForEachRow(dbRows, []any{&id, &n, &s}, func() error {
		want[fmt.Sprint(id)] = n + " " + s
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			if bad++; bad <= 10 {
				t.Errorf("key %s: the records say %q, the table has %q", k, g, w)
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("the records tell %d rows, the table has %d", len(got), len(want))
	}
	if imgs := storedImages(t, cfg.DataDir, "public.big"); len(imgs) != 0 {
		t.Errorf("%d images of the FULL table left after its snapshot", len(imgs))
	}
	t.Logf("%d writer transactions, %d snapshot records, %d events", txs.Load(), len(snaps), len(recs))
}

// TestImagesIdentityFlipsAcrossSIGKILL: the DEFAULT twin d is switched to
// FULL and back again and again while its records change, and the
// pipeline is killed (SIGKILL) and restarted several times meanwhile.
// Whatever d's events say of a before-image — "wal" while it was FULL,
// "reconstructed" — must equal what its FULL twin f says; "unknown" is
// honest and allowed. A before-image rebuilt from an image older than a
// FULL spell would differ.
func TestImagesIdentityFlipsAcrossSIGKILL(t *testing.T) {
	dsn, conn := newDB(t)
	twinTables(t, conn, "")
	cfg := imagesConfig(t, dsn, "flip")
	dir := cfg.DataDir
	runImages(t, cfg, conn, currentLSN(t, conn))
	both(t, conn, `INSERT INTO $T (id, n, s) SELECT g, g, 's' || g FROM generate_series(1, 3000) g`)

	child := startChild(t, dsn, "flip", dir)
	rng := rand.New(rand.NewPCG(8, 8))
	full := false
	for round := range 24 {
		if rng.IntN(3) == 0 {
			full = !full
			exec(t, conn, "ALTER TABLE d REPLICA IDENTITY "+map[bool]string{false: "DEFAULT", true: "FULL"}[full])
		}
		// Most records a few times each round, some not at all: some
		// are changed while FULL and next while DEFAULT, some not.
		m := 2 + rng.IntN(5)
		both(t, conn, fmt.Sprintf(`UPDATE $T SET n = n + 1, s = s || '%d' WHERE id %% %d = %d`, round, m, rng.IntN(m)))
		both(t, conn, fmt.Sprintf(`UPDATE $T SET n = -n WHERE id %% 7 = %d`, rng.IntN(7)))
		if round%5 == 4 {
			both(t, conn, fmt.Sprintf(`DELETE FROM $T WHERE id %% 50 = %d`, rng.IntN(50)),
				fmt.Sprintf(`INSERT INTO $T (id, n, s) SELECT g, 0, 'new' FROM generate_series(%d, %d) g`, 10000+round*100, 10000+round*100+49))
		}
		if round%6 == 5 {
			time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond)
			child.Process.Signal(syscall.SIGKILL)
			child.Wait()
			child = startChild(t, dsn, "flip", dir)
		}
	}
	time.Sleep(200 * time.Millisecond)
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	runImages(t, cfg, conn, currentLSN(t, conn))

	recs := storedRecords(t, dir)
	ds, fs := ofTable(recs, "d"), ofTable(recs, "f")
	if len(ds) != len(fs) {
		t.Fatalf("%d events on d, %d on f", len(ds), len(fs))
	}
	sources := map[string]int{}
	bad := 0
	for i := range ds {
		d, f := ds[i], fs[i]
		if d.Op != f.Op || !bytes.Equal(d.Key, f.Key) {
			t.Fatalf("event %d: %s %s on d, %s %s on f", i, d.Op, d.Key, f.Op, f.Key)
		}
		if d.Op != "update" && d.Op != "delete" {
			continue
		}
		sources[d.BeforeSource]++
		if d.BeforeSource == "unknown" {
			continue
		}
		if !bytes.Equal(d.Before, f.Before) || !bytes.Equal(d.After, f.After) || !bytes.Equal(d.Changed, f.Changed) {
			if bad++; bad <= 5 {
				sameChange(t, d, f)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d before-images of d differ from f's", bad)
	}
	t.Logf("d's updates and deletes by before_source: %v", sources)
	if sources["wal"] == 0 || sources["reconstructed"] == 0 || sources["unknown"] == 0 {
		t.Errorf("the workload did not exercise every before_source: %v", sources)
	}
	if imgs := storedImages(t, dir, "public.f"); len(imgs) != 0 {
		t.Errorf("the FULL table f has %d images", len(imgs))
	}
}
