package replication

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

func TestPrepareCreatesPublicationAndSlotIdempotently(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	db := slot
	exec(t, dsn, "CREATE TABLE a (id int PRIMARY KEY)")
	log, _ := testLogger(t)
	cfg := Config{DSN: dsn, Slot: slot, Logger: log}
	ctx := context.Background()

	ident, start, err := Prepare(ctx, cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ident.Database != db || ident.SystemID == "" || ident.Timeline < 1 || ident.XLogPos == 0 {
		t.Fatalf("identity %+v", ident)
	}
	if all := query[bool](t, dsn, "SELECT puballtables FROM pg_publication WHERE pubname = 'cdcaudit'"); !all {
		t.Fatal("publication is not FOR ALL TABLES")
	}
	if p := query[string](t, dsn, "SELECT plugin FROM pg_replication_slots WHERE slot_name = $1", slot); p != "pgoutput" {
		t.Fatalf("plugin %q", p)
	}
	if c := confirmedFlush(t, dsn, slot); start != c || start == 0 {
		t.Fatalf("start %s, slot confirmed at %s", lsnString(start), lsnString(c))
	}

	exec(t, dsn, "INSERT INTO a VALUES (1)")
	_, start2, err := Prepare(ctx, cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	if start2 != start {
		t.Fatalf("second Prepare: start %s, want the slot's unchanged %s", lsnString(start2), lsnString(start))
	}
	if n := query[int](t, dsn, "SELECT count(*)::int FROM pg_replication_slots WHERE database = current_database()"); n != 1 {
		t.Fatalf("%d slots", n)
	}
}

// pubTables lists the tables a publication names, sorted.
func pubTables(t *testing.T, dsn, pub string) string {
	t.Helper()
	return query[string](t, dsn, `SELECT coalesce(string_agg(n.nspname || '.' || c.relname, ' ' ORDER BY 1), '')
		FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
		JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname = $1`, pub)
}

// pubOps is a publication's FOR ALL TABLES flag and operations, e.g. "all insert truncate".
func pubOps(t *testing.T, dsn, pub string) string {
	t.Helper()
	return query[string](t, dsn, `SELECT CASE WHEN puballtables THEN 'all' ELSE 'list' END
		|| CASE WHEN pubinsert THEN ' insert' ELSE '' END || CASE WHEN pubupdate THEN ' update' ELSE '' END
		|| CASE WHEN pubdelete THEN ' delete' ELSE '' END || CASE WHEN pubtruncate THEN ' truncate' ELSE '' END
		FROM pg_publication WHERE pubname = $1`, pub)
}

func TestPrepareTableFilters(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	exec(t, dsn, `
		CREATE SCHEMA other;
		CREATE TABLE public.sale_order (id int PRIMARY KEY);
		CREATE TABLE public.sale_line (id int PRIMARY KEY);
		CREATE TABLE public.res_users (id int PRIMARY KEY);
		CREATE TABLE other.res_users (id int PRIMARY KEY);
		CREATE TABLE public.stock_move (id int PRIMARY KEY);
		CREATE TABLE public.sale_nopk (id int);
		CREATE TABLE public.sale_log (id int, at date) PARTITION BY RANGE (at);
		CREATE TABLE public.sale_log_2024 PARTITION OF public.sale_log FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		ALTER TABLE public.sale_log_2024 REPLICA IDENTITY FULL;
		CREATE UNLOGGED TABLE public.sale_scratch (id int);`)
	log, logs := testLogger(t)
	ctx := context.Background()

	cfg := Config{DSN: dsn, Slot: slot + "_f", Publication: "filtered", Logger: log,
		Tables: []string{"public.sale_*", "*.res_users"}, Exclude: []string{"public.sale_line"}}
	if _, _, err := Prepare(ctx, cfg, 0); err != nil {
		t.Fatal(err)
	}
	// Inserts and truncates: every table, filtered in the stream.
	if got := pubOps(t, dsn, "filtered"); got != "all insert truncate" {
		t.Fatalf("insert publication: %q", got)
	}
	// Updates and deletes: the matching tables with a usable replica
	// identity, partitions by their own name (their root matched).
	if got := pubOps(t, dsn, "filtered_changes"); got != "list update delete" {
		t.Fatalf("changes publication: %q", got)
	}
	want := "other.res_users public.res_users public.sale_log_2024 public.sale_order"
	if got := pubTables(t, dsn, "filtered_changes"); got != want {
		t.Fatalf("changes publication tables %q, want %q", got, want)
	}
	// run warns at start, naming the tables whose updates are not captured.
	if !strings.Contains(logs.String(), "NOT captured") || !strings.Contains(logs.String(), "public.sale_nopk (no primary key, REPLICA IDENTITY DEFAULT)") {
		t.Fatalf("no warning naming public.sale_nopk:\n%s", logs)
	}

	// A new matching table joins the list on the next Prepare.
	exec(t, dsn, "CREATE TABLE public.sale_report (id int PRIMARY KEY)")
	if _, _, err := Prepare(ctx, cfg, 0); err != nil {
		t.Fatal(err)
	}
	want = "other.res_users public.res_users public.sale_log_2024 public.sale_order public.sale_report"
	if got := pubTables(t, dsn, "filtered_changes"); got != want {
		t.Fatalf("after a new table: %q, want %q", got, want)
	}

	// Exclude alone: every table but those.
	cfg2 := Config{DSN: dsn, Slot: slot + "_e", Publication: "excl", Logger: log, Exclude: []string{"public.sale_*", "other.*"}}
	if _, _, err := Prepare(ctx, cfg2, 0); err != nil {
		t.Fatal(err)
	}
	if got, want := pubTables(t, dsn, "excl_changes"), "public.res_users public.stock_move"; got != want {
		t.Fatalf("exclude only: %q, want %q", got, want)
	}

	// Unqualified patterns are a configuration error.
	if _, _, err := Prepare(ctx, Config{DSN: dsn, Tables: []string{"sale_order"}}, 0); err == nil || !strings.Contains(err.Error(), "schema-qualified") {
		t.Fatalf("unqualified pattern: %v", err)
	}
}

// An installation made by an older cdcaudit has one publication publishing
// every operation (FOR ALL TABLES, or FOR TABLE with --tables): Prepare
// migrates it, so updates of tables without a replica identity stop failing.
func TestPrepareMigratesOldPublications(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	exec(t, dsn, `
		CREATE TABLE keyed (id int PRIMARY KEY, v text);
		CREATE TABLE loose (v text);
		INSERT INTO keyed VALUES (1, 'a'); INSERT INTO loose VALUES ('a');
		CREATE PUBLICATION cdcaudit FOR ALL TABLES;
		CREATE PUBLICATION filtered FOR TABLE keyed, loose;`)
	// What the old publications do to the application:
	if err := tryExec(t, dsn, "UPDATE loose SET v = 'b'"); err == nil || !strings.Contains(err.Error(), "55000") {
		t.Fatalf("before the migration, an UPDATE of a table without replica identity: %v (the test expects it to fail)", err)
	}
	// check says so.
	fs, err := Check(context.Background(), Config{DSN: dsn, Slot: slot})
	if err != nil {
		t.Fatal(err)
	}
	mustFix(t, fs, "fail", "publication", "UPDATE and DELETE fail in the application on public.loose (no usable replica identity)",
		`start `+"`cdcaudit run`"+` (it migrates the publication), or: ALTER PUBLICATION "cdcaudit" SET (publish = 'insert, truncate');`)
	log, logs := testLogger(t)
	var covered []Coverage
	cfg := Config{DSN: dsn, Slot: slot, Logger: log, OnCoverage: func(c Coverage) { covered = append(covered, c) }}
	if _, _, err := Prepare(context.Background(), cfg, 0); err != nil {
		t.Fatal(err)
	}
	if got := pubOps(t, dsn, "cdcaudit"); got != "all insert truncate" {
		t.Fatalf("migrated publication: %q", got)
	}
	if got := pubTables(t, dsn, "cdcaudit_changes"); got != "public.keyed" {
		t.Fatalf("changes publication: %q", got)
	}
	if !strings.Contains(logs.String(), "publication migrated") {
		t.Fatalf("the migration was not logged:\n%s", logs)
	}
	// Coverage is recorded: inserts of all tables and updates of keyed, with an LSN.
	var all, keyed bool
	for _, c := range covered {
		all = all || c.Table == "*" && c.Ops == "insert, truncate" && c.Captured && c.LSN != 0
		keyed = keyed || c.Table == "public.keyed" && c.Ops == "update, delete" && c.Captured && c.LSN != 0 && !c.Time.IsZero()
	}
	if !all || !keyed {
		t.Fatalf("coverage records: %+v", covered)
	}

	// The FOR TABLE publication an older cdcaudit made for --tables.
	cfgF := Config{DSN: dsn, Slot: slot + "_f", Publication: "filtered", Logger: log, Tables: []string{"public.*"}}
	if _, _, err := Prepare(context.Background(), cfgF, 0); err != nil {
		t.Fatal(err)
	}
	if got := pubOps(t, dsn, "filtered"); got != "all insert truncate" {
		t.Fatalf("migrated FOR TABLE publication: %q", got)
	}
	// Neither publication makes the application's writes fail any more.
	for _, sql := range []string{"UPDATE loose SET v = 'b'", "DELETE FROM loose", "UPDATE keyed SET v = 'b'", "DELETE FROM keyed"} {
		if err := tryExec(t, dsn, sql); err != nil {
			t.Fatalf("after the migration: %s: %v", sql, err)
		}
	}
}

// Prepare creates the publications before the slot; when the slot cannot
// be created (no free slot), it must not leave them behind.
func TestPrepareNoFreeSlotLeavesNoPublication(t *testing.T) {
	t.Parallel()
	c, err := pgtest.Start(pgtest.Options{Settings: map[string]string{"max_replication_slots": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	dsn := c.DSN("postgres")
	exec(t, dsn, "CREATE TABLE a (id int PRIMARY KEY)")
	exec(t, dsn, "SELECT pg_create_physical_replication_slot('taken')")
	log, _ := testLogger(t)
	_, _, err = Prepare(context.Background(), Config{DSN: dsn, Slot: "cdcaudit", Logger: log}, 0)
	if err == nil {
		t.Fatal("Prepare succeeded with no free slot")
	}
	if n := query[int](t, dsn, "SELECT count(*)::int FROM pg_publication"); n != 0 {
		t.Fatalf("%d publications left behind after: %v", n, err)
	}
}

func TestPrepareComparesCheckpointWithSlot(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	exec(t, dsn, "CREATE TABLE a (id int PRIMARY KEY)")
	log, _ := testLogger(t)
	ctx := context.Background()
	cfg := Config{DSN: dsn, Slot: slot, Logger: log}
	_, created, err := Prepare(ctx, cfg, 0)
	if err != nil {
		t.Fatal(err)
	}

	// The slot moves on without us: the store's checkpoint is now behind it.
	exec(t, dsn, "INSERT INTO a SELECT generate_series(1, 100)")
	exec(t, dsn, "SELECT pg_replication_slot_advance($1, pg_current_wal_lsn())", slot)
	ahead := confirmedFlush(t, dsn, slot)
	if ahead <= created {
		t.Fatal("slot did not advance")
	}
	_, _, err = Prepare(ctx, cfg, created)
	if !IsFatal(err) || !strings.Contains(err.Error(), "LOST") || !strings.Contains(err.Error(), "restart with --accept-gap") {
		t.Fatalf("slot ahead of the checkpoint: %v (the message must name the flag --accept-gap)", err)
	}
	accept := cfg
	accept.AcceptGap = true
	// Start where the slot is: the caller records the gap up to there.
	if _, start, err := Prepare(ctx, accept, created); err != nil || start != ahead {
		t.Fatalf("slot ahead with AcceptGap: start %s, want the slot's %s, err %v", lsnString(start), lsnString(ahead), err)
	}

	// Slot behind the checkpoint: fine, start at the checkpoint.
	if _, start, err := Prepare(ctx, cfg, ahead+1000); err != nil || start != ahead+1000 {
		t.Fatalf("slot behind: start %s, err %v", lsnString(start), err)
	}

	// The store has history but the slot is gone.
	missing := Config{DSN: dsn, Slot: slot + "_g", Logger: log}
	if _, _, err := Prepare(ctx, missing, ahead); !IsFatal(err) || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "--accept-gap") {
		t.Fatalf("missing slot: %v", err)
	}
	if n := query[int](t, dsn, "SELECT count(*)::int FROM pg_replication_slots WHERE slot_name = $1", slot+"_g"); n != 0 {
		t.Fatal("a missing slot was created without AcceptGap")
	}
	missing.AcceptGap = true
	if _, start, err := Prepare(ctx, missing, ahead); err != nil || start < ahead {
		t.Fatalf("missing slot with AcceptGap: start %s, err %v", lsnString(start), err)
	}
	if n := query[int](t, dsn, "SELECT count(*)::int FROM pg_replication_slots WHERE slot_name = $1", slot+"_g"); n != 1 {
		t.Fatal("AcceptGap did not create the slot")
	}
}

func TestPrepareRefusesRoleWithoutReplication(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	createRole(t, dsn, "prep_norepl", "")
	log, _ := testLogger(t)
	_, _, err := Prepare(context.Background(), Config{DSN: withUser(t, dsn, "prep_norepl"), Slot: slot, Logger: log}, 0)
	if !IsFatal(err) || !strings.Contains(err.Error(), "ALTER ROLE prep_norepl WITH REPLICATION") {
		t.Fatalf("got %v", err)
	}
}

// The compose set-up: a superuser made both publications (the changes one
// owned by cdcaudit's role) and owns the tables. The unprivileged role
// prepares and streams; a table it may not add is named in the log, and
// nothing fails.
func TestPrepareAsUnprivilegedRole(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	createRole(t, dsn, "prep_sidecar", "REPLICATION")
	exec(t, dsn, `
		CREATE TABLE listed (id int PRIMARY KEY);
		CREATE TABLE unlisted (id int PRIMARY KEY);
		CREATE PUBLICATION cdcaudit FOR ALL TABLES WITH (publish = 'insert, truncate');
		CREATE PUBLICATION cdcaudit_changes FOR TABLE listed WITH (publish = 'update, delete');
		ALTER PUBLICATION cdcaudit_changes OWNER TO prep_sidecar;`)
	log, logs := testLogger(t)
	if _, _, err := Prepare(context.Background(), Config{DSN: withUser(t, dsn, "prep_sidecar"), Slot: slot, Logger: log}, 0); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "cannot add tables to the changes publication") || !strings.Contains(logs.String(), "public.unlisted") {
		t.Fatalf("the table the role may not add is not named:\n%s", logs)
	}
	if got := pubTables(t, dsn, "cdcaudit_changes"); got != "public.listed" {
		t.Fatalf("changes publication: %q", got)
	}
	// The role owns the changes publication: it can drop a table that lost
	// its replica identity.
	exec(t, dsn, "ALTER TABLE listed REPLICA IDENTITY NOTHING")
	if _, _, err := Prepare(context.Background(), Config{DSN: withUser(t, dsn, "prep_sidecar"), Slot: slot, Logger: log}, 0); err != nil {
		t.Fatal(err)
	}
	if got := pubTables(t, dsn, "cdcaudit_changes"); got != "" {
		t.Fatalf("changes publication after listed lost its identity: %q", got)
	}
}

// PrepareExport with export creates the slot with EXPORT_SNAPSHOT and hands
// over its snapshot: importable (the rows as of the slot's start, not those
// written after) until Release, not after; streaming works meanwhile. An
// existing slot exports nothing.
func TestPrepareExportsTheSlotSnapshot(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	exec(t, dsn, "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a VALUES (1)")
	log, _ := testLogger(t)
	cfg := Config{DSN: dsn, Slot: slot, Logger: log}
	ctx := context.Background()
	_, start, exported, err := PrepareExport(ctx, cfg, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	if exported == nil || exported.Name == "" {
		t.Fatal("no exported snapshot from a new slot")
	}
	exec(t, dsn, "INSERT INTO a VALUES (2)")
	// The slot streams while the snapshot is held.
	c := newConsumer()
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Stream(sctx, cfg, start, c) }()
	deadline := time.Now().Add(time.Minute)
	for len(c.inserted(t)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := c.inserted(t); len(got) != 1 {
		t.Errorf("streamed inserts %v while the snapshot is held, want the one after the slot", got)
	}
	cancel()
	<-done

	count := func() (int, error) {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return 0, err
		}
		defer conn.Close(ctx)
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return 0, err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+exported.Name+"'"); err != nil {
			return 0, err
		}
		var n int
		err = tx.QueryRow(ctx, "SELECT count(*) FROM a").Scan(&n)
		return n, err
	}
	if n, err := count(); err != nil || n != 1 {
		t.Fatalf("the exported snapshot holds %d rows (err %v), want the 1 before the slot", n, err)
	}
	exported.Release()
	exported.Release() // harmless twice
	// Release closes the connection that holds it; its walsender ends a
	// moment later, and with it the snapshot.
	waitFor(t, 10*time.Second, "the snapshot to be gone after Release", func() bool {
		_, err := count()
		return err != nil && strings.Contains(err.Error(), "snapshot")
	})
	if _, _, again, err := PrepareExport(ctx, cfg, 0, true); err != nil || again != nil {
		t.Errorf("an existing slot: exported %v, err %v; want nothing", again, err)
	}
}
