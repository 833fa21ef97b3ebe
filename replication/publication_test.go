package replication

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// changes returns every row change received as "op schema.table first-column",
// e.g. "insert public.t 1" (a delete shows its key when the old tuple has one).
func (c *testConsumer) changes(t *testing.T) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	rels := map[uint32]string{}
	var out []string
	first := func(td *pglogrepl.TupleData) string {
		if td == nil || len(td.Columns) == 0 {
			return "-"
		}
		return string(td.Columns[0].Data)
	}
	for _, m := range c.msgs {
		switch m.data[0] {
		case 'R', 'I', 'U', 'D', 'T':
		default:
			continue
		}
		msg, err := pglogrepl.Parse(m.data)
		if err != nil {
			t.Fatal(err)
		}
		switch v := msg.(type) {
		case *pglogrepl.RelationMessage:
			rels[v.RelationID] = v.Namespace + "." + v.RelationName
		case *pglogrepl.InsertMessage:
			out = append(out, "insert "+rels[v.RelationID]+" "+first(v.Tuple))
		case *pglogrepl.UpdateMessage:
			out = append(out, "update "+rels[v.RelationID]+" "+first(v.NewTuple))
		case *pglogrepl.DeleteMessage:
			out = append(out, "delete "+rels[v.RelationID]+" "+first(v.OldTuple))
		case *pglogrepl.TruncateMessage:
			var names []string
			for _, id := range v.RelationIDs {
				names = append(names, rels[id])
			}
			out = append(out, "truncate "+strings.Join(names, ","))
		}
	}
	return out
}

func (c *testConsumer) has(t *testing.T, change string) bool {
	return slices.Contains(c.changes(t), change)
}

// Writes the application runs on tables without a usable replica identity
// never fail: not at start, not for tables created while cdcaudit runs, not
// after it stopped. What is captured of them: inserts (and truncates).
// Tables with a primary key created while it runs have their first insert
// captured, and their updates once the keeper lists them; --tables filters
// the stream, so a matching new table is captured from its first insert.
func TestStreamNeverBreaksApplicationWrites(t *testing.T) {
	t.Parallel()
	dsn, _ := newDB(t)
	exec(t, dsn, `
		CREATE TABLE app_nopk (v text);
		CREATE TABLE app_nothing (id int PRIMARY KEY, v text);
		ALTER TABLE app_nothing REPLICA IDENTITY NOTHING;
		INSERT INTO app_nopk VALUES ('a'); INSERT INTO app_nothing VALUES (1, 'a');`)
	log, logs := testLogger(t)
	cfg, start := prepare(t, dsn, Config{Logger: log, Tables: []string{"public.app_*", "public.t"}, CatalogInterval: 200 * time.Millisecond})
	if !strings.Contains(logs.String(), "public.app_nopk (no primary key, REPLICA IDENTITY DEFAULT)") ||
		!strings.Contains(logs.String(), "public.app_nothing (REPLICA IDENTITY NOTHING)") {
		t.Fatalf("Prepare did not warn naming the tables whose updates are not captured:\n%s", logs)
	}
	c := newConsumer()
	r := stream(t, cfg, start, c)

	mustWrite := func(when string, sqls ...string) {
		t.Helper()
		for _, sql := range sqls {
			if err := tryExec(t, dsn, sql); err != nil {
				t.Fatalf("%s: the application's %q failed: %v", when, sql, err)
			}
		}
	}
	mustWrite("while running",
		"UPDATE app_nopk SET v = 'b'", "DELETE FROM app_nopk",
		"UPDATE app_nothing SET v = 'b'", "DELETE FROM app_nothing")

	// Tables created while it runs.
	mustWrite("while running, new tables",
		"CREATE TABLE app_new_nopk (v text)",
		"INSERT INTO app_new_nopk VALUES ('first')",
		"UPDATE app_new_nopk SET v = 'b'", "DELETE FROM app_new_nopk",
		"CREATE TABLE app_new_nothing (id int PRIMARY KEY, v text)",
		"ALTER TABLE app_new_nothing REPLICA IDENTITY NOTHING",
		"INSERT INTO app_new_nothing VALUES (7, 'first')",
		"UPDATE app_new_nothing SET v = 'b'", "DELETE FROM app_new_nothing",
		"CREATE TABLE app_keyed (id int PRIMARY KEY, v text)",
		"INSERT INTO app_keyed VALUES (10, 'first')",
		"CREATE TABLE other_keyed (id int PRIMARY KEY)",
		"INSERT INTO other_keyed VALUES (20)")
	waitFor(t, 10*time.Second, "the first inserts of the new tables", func() bool {
		return c.has(t, "insert public.app_new_nopk first") && c.has(t, "insert public.app_new_nothing 7") && c.has(t, "insert public.app_keyed 10")
	})
	// The new keyed table is listed for updates and deletes (the stream's
	// Relation message wakes the keeper); from then on they are captured.
	waitFor(t, 10*time.Second, "public.app_keyed in the changes publication", func() bool {
		return strings.Contains(pubTables(t, dsn, "cdcaudit_changes"), "public.app_keyed")
	})
	mustWrite("while running", "UPDATE app_keyed SET v = 'second' WHERE id = 10", "INSERT INTO app_keyed VALUES (11, 'x')", "DELETE FROM app_keyed WHERE id = 11")
	waitFor(t, 10*time.Second, "the update and delete of the new keyed table", func() bool {
		return c.has(t, "update public.app_keyed 10") && c.has(t, "delete public.app_keyed 11")
	})
	// Out of scope: filtered in the stream.
	for _, ch := range c.changes(t) {
		if strings.Contains(ch, "other_keyed") {
			t.Fatalf("a table outside --tables reached the consumer: %q", ch)
		}
	}

	// A listed table that loses its replica identity leaves the list.
	mustWrite("while running", "ALTER TABLE app_keyed REPLICA IDENTITY NOTHING")
	waitFor(t, 10*time.Second, "public.app_keyed to leave the changes publication", func() bool {
		return !strings.Contains(pubTables(t, dsn, "cdcaudit_changes"), "public.app_keyed")
	})
	mustWrite("after its identity changed", "UPDATE app_keyed SET v = 'third'")
	if !strings.Contains(logs.String(), "NO LONGER captured") {
		t.Fatalf("leaving the list was not logged:\n%s", logs)
	}

	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	// After it stopped: old tables, and tables created now.
	mustWrite("after cdcaudit stopped",
		"INSERT INTO app_nopk VALUES ('c')", "UPDATE app_nopk SET v = 'd'", "DELETE FROM app_nopk",
		"INSERT INTO app_nothing VALUES (2, 'c')", "UPDATE app_nothing SET v = 'd'", "DELETE FROM app_nothing",
		"CREATE TABLE app_late (v text)", "INSERT INTO app_late VALUES ('while stopped')",
		"UPDATE app_late SET v = 'b'", "DELETE FROM app_late")

	// Restarted from where it stopped: the table created while it was
	// stopped is captured from its first insert.
	c2 := newConsumer()
	stream(t, cfg, c.position(), c2)
	waitFor(t, 10*time.Second, "the first insert of the table created while stopped", func() bool {
		return c2.has(t, "insert public.app_late while stopped")
	})
}

// An installation made by an older cdcaudit has a slot and one publication;
// the changes publication is created after the slot. pgoutput (before
// PostgreSQL 18) cannot decode WAL from before a publication existed with
// it named: the stream gets past that WAL with the insert publication
// alone, then captures updates again.
func TestStreamUpgradedInstallation(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	exec(t, dsn, `
		CREATE TABLE keyed (id int PRIMARY KEY, v text);
		CREATE PUBLICATION cdcaudit FOR ALL TABLES;`)
	exec(t, dsn, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot)
	old := confirmedFlush(t, dsn, slot)
	// Written while the old cdcaudit was stopped: its publication still
	// publishes updates.
	exec(t, dsn, "INSERT INTO keyed VALUES (1, 'a'); UPDATE keyed SET v = 'old' WHERE id = 1")

	log, logs := testLogger(t)
	var mu sync.Mutex
	var gap []Coverage // update/delete coverage of all tables, ended and begun again
	cfg := Config{DSN: dsn, Slot: slot, Logger: log, OnCoverage: func(c Coverage) {
		mu.Lock()
		defer mu.Unlock()
		if c.Table == "*" && c.Ops == "update, delete" {
			gap = append(gap, c)
		}
	}}
	if _, _, err := Prepare(context.Background(), cfg, old); err != nil {
		t.Fatal(err)
	}
	c := newConsumer()
	stream(t, cfg, old, c)
	waitFor(t, 20*time.Second, "the changes written before the upgrade", func() bool {
		return c.has(t, "insert public.keyed 1") && c.has(t, "update public.keyed 1")
	})
	exec(t, dsn, "UPDATE keyed SET v = 'new' WHERE id = 1; INSERT INTO keyed VALUES (2, 'b'); DELETE FROM keyed WHERE id = 2")
	waitFor(t, 20*time.Second, "updates and deletes after the upgrade", func() bool {
		return c.has(t, "delete public.keyed 2") && strings.Count(strings.Join(c.changes(t), "\n"), "update public.keyed 1") == 2
	})
	if !strings.Contains(logs.String(), "insert publication alone") {
		t.Fatalf("the fallback was not logged:\n%s", logs)
	}
	// The window without updates is recorded: from the slot's position to
	// where both publications apply.
	mu.Lock()
	defer mu.Unlock()
	if len(gap) != 2 || gap[0].Captured || gap[0].LSN != old || !gap[1].Captured || gap[1].LSN <= old {
		t.Fatalf("coverage records of the upgrade window: %+v", gap)
	}
}

// --tables globs: a table created while cdcaudit runs, or while it is
// stopped, whose name matches is captured from its first insert; one that
// does not match is not captured.
func TestStreamNewTableMatchingGlobFromFirstInsert(t *testing.T) {
	t.Parallel()
	dsn, _ := newDB(t)
	exec(t, dsn, "CREATE TABLE sale_order (id int PRIMARY KEY)")
	log, _ := testLogger(t)
	cfg, start := prepare(t, dsn, Config{Logger: log, Tables: []string{"public.sale_*"}})
	c := newConsumer()
	r := stream(t, cfg, start, c)
	exec(t, dsn, "CREATE TABLE sale_line (id int PRIMARY KEY); INSERT INTO sale_line VALUES (1)")
	exec(t, dsn, "CREATE TABLE stock_move (id int PRIMARY KEY); INSERT INTO stock_move VALUES (2)")
	exec(t, dsn, "INSERT INTO sale_order VALUES (3)")
	waitFor(t, 10*time.Second, "the first insert of sale_line and the insert after it", func() bool {
		return c.has(t, "insert public.sale_line 1") && c.has(t, "insert public.sale_order 3")
	})
	if c.has(t, "insert public.stock_move 2") {
		t.Fatal("a table outside --tables was captured")
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	// Created while stopped: captured after the restart, from the checkpoint.
	exec(t, dsn, "CREATE TABLE sale_quote (id int PRIMARY KEY); INSERT INTO sale_quote VALUES (4)")
	if _, _, err := Prepare(context.Background(), cfg, c.position()); err != nil {
		t.Fatal(err)
	}
	c2 := newConsumer()
	stream(t, cfg, c.position(), c2)
	exec(t, dsn, "INSERT INTO sale_order VALUES (5)")
	waitFor(t, 10*time.Second, "the insert after the restart", func() bool { return c2.has(t, "insert public.sale_order 5") })
	if !c2.has(t, "insert public.sale_quote 4") {
		t.Fatalf("the first insert of a table created while stopped was lost: %v", c2.changes(t))
	}
}

// The residual risk, as documented: a listed table that loses its primary
// key while cdcaudit is stopped makes the application's UPDATEs on it fail
// until cdcaudit runs again (Prepare drops it from the list at once) or a
// DBA drops it from the changes publication.
func TestListedTableLosesKeyWhileStopped(t *testing.T) {
	t.Parallel()
	dsn, _ := newDB(t)
	exec(t, dsn, "CREATE TABLE keyed (id int CONSTRAINT keyed_pk PRIMARY KEY, v text); INSERT INTO keyed VALUES (1, 'a')")
	cfg, _ := prepare(t, dsn, Config{})
	if got := pubTables(t, dsn, "cdcaudit_changes"); !strings.Contains(got, "public.keyed") {
		t.Fatalf("changes publication: %q", got)
	}
	exec(t, dsn, "ALTER TABLE keyed DROP CONSTRAINT keyed_pk")
	if err := tryExec(t, dsn, "UPDATE keyed SET v = 'b'"); err == nil || !strings.Contains(err.Error(), "55000") {
		t.Fatalf("UPDATE while cdcaudit is stopped: %v (documented to fail until cdcaudit runs again)", err)
	}
	if _, _, err := Prepare(context.Background(), cfg, 0); err != nil {
		t.Fatal(err)
	}
	if got := pubTables(t, dsn, "cdcaudit_changes"); strings.Contains(got, "public.keyed") {
		t.Fatalf("still listed after Prepare: %q", got)
	}
	if err := tryExec(t, dsn, "UPDATE keyed SET v = 'c'"); err != nil {
		t.Fatalf("UPDATE after cdcaudit started again: %v", err)
	}
}

// The keeper's lock requests and an application's DDL can wait for each
// other (it adds tables a, b, c in one statement while the application
// locks c, then a — as a restore adding foreign keys does). The keeper must
// be the one that gives up, never the application's statement; the tables
// it could not lock are listed at a later pass.
func TestKeeperNeverDeadlocksTheApplication(t *testing.T) {
	t.Parallel()
	dsn, _ := newDB(t)
	exec(t, dsn, "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY)")
	cfg, _ := prepare(t, dsn, Config{})
	exec(t, dsn, "ALTER PUBLICATION cdcaudit_changes DROP TABLE a, b, c")
	ctx := context.Background()
	connect := func() *pgx.Conn {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	other, app, keeperConn := connect(), connect(), connect()

	otherTx, err := other.Begin(ctx) // holds b: the keeper stops there, holding a
	if err != nil {
		t.Fatal(err)
	}
	if _, err := otherTx.Exec(ctx, "LOCK TABLE b IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	cfg, err = cfg.normalize()
	if err != nil {
		t.Fatal(err)
	}
	k := newKeeper(&cfg)
	synced := make(chan error, 1)
	go func() { synced <- k.sync(ctx, keeperConn) }()
	time.Sleep(300 * time.Millisecond)

	appTx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := appTx.Exec(ctx, "LOCK TABLE c IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	locked := make(chan error, 1)
	go func() {
		_, err := appTx.Exec(ctx, "LOCK TABLE a IN ACCESS EXCLUSIVE MODE")
		locked <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := otherTx.Commit(ctx); err != nil { // b free: the keeper goes on to c
		t.Fatal(err)
	}
	if err := <-locked; err != nil {
		t.Fatalf("the application's statement failed: %v", err)
	}
	if err := appTx.Commit(ctx); err != nil {
		t.Fatalf("the application's transaction failed: %v", err)
	}
	if err := <-synced; err != nil {
		t.Fatalf("keeper: %v", err)
	}
	if err := k.sync(ctx, keeperConn); err != nil {
		t.Fatal(err)
	}
	listed := query[string](t, dsn, "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = 'cdcaudit_changes'")
	if listed != "a,b,c,t" {
		t.Errorf("changes publication lists %s, want a,b,c,t", listed)
	}
}

// Inheritance (Odoo's ir_actions and its ir_act_* children): each table is
// listed on its own. A parent listed after its child is no error, and a
// parent never brings along a child whose UPDATEs would then fail.
func TestKeeperListsInheritanceParentsAndChildren(t *testing.T) {
	t.Parallel()
	dsn, _ := newDB(t)
	cfg, _ := prepare(t, dsn, Config{CatalogInterval: 200 * time.Millisecond})
	exec(t, dsn, `CREATE TABLE parent (id int, name text);
		CREATE TABLE child (extra text) INHERITS (parent); ALTER TABLE child ADD PRIMARY KEY (id);
		CREATE TABLE loose (note text) INHERITS (parent);
		INSERT INTO loose VALUES (1, 'x', 'y')`)
	k, conn := testKeeper(t, dsn, cfg)
	if err := k.sync(context.Background(), conn); err != nil { // child only
		t.Fatal(err)
	}
	exec(t, dsn, "ALTER TABLE parent ADD PRIMARY KEY (id)")
	// Then its parent, once a sync a poll interval later finds it still usable.
	if err := k.sync(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	if listed := changesTables(t, dsn); listed != "child,t" {
		t.Fatalf("right after parent became usable, the changes publication lists %s, want child,t", listed)
	}
	time.Sleep(cfg.CatalogInterval)
	if err := k.sync(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	listed := query[string](t, dsn, "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = 'cdcaudit_changes'")
	if listed != "child,parent,t" {
		t.Errorf("changes publication lists %s, want child,parent,t", listed)
	}
	if err := tryExec(t, dsn, "UPDATE loose SET note = 'z'"); err != nil {
		t.Errorf("an UPDATE of a child without a key fails: %v", err)
	}
}

// A migration that creates a table with a key and then sets REPLICA
// IDENTITY NOTHING: a sync between the two statements must not list the
// table, or the application's next UPDATE of it fails.
func TestKeeperSyncBetweenCreateAndIdentityNothing(t *testing.T) {
	t.Parallel()
	dsn, _ := newDB(t)
	cfg, _ := prepare(t, dsn, Config{CatalogInterval: 200 * time.Millisecond})
	k, conn := testKeeper(t, dsn, cfg)
	if err := k.sync(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	exec(t, dsn, "CREATE TABLE migrated (id int PRIMARY KEY, v text)")
	// Between the two statements, two syncs close together (a wake after a
	// tick): a second sighting that soon lists nothing either.
	for range 2 {
		if err := k.sync(context.Background(), conn); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, dsn, "ALTER TABLE migrated REPLICA IDENTITY NOTHING; INSERT INTO migrated VALUES (1, 'a')")
	if err := tryExec(t, dsn, "UPDATE migrated SET v = 'b'"); err != nil {
		t.Fatalf("the application's UPDATE after its migration failed: %v", err)
	}
	for range 2 {
		if err := k.sync(context.Background(), conn); err != nil {
			t.Fatal(err)
		}
	}
	if err := tryExec(t, dsn, "UPDATE migrated SET v = 'c'"); err != nil {
		t.Fatalf("UPDATE after later syncs failed: %v", err)
	}
	// A table that stays usable is listed at the second sync.
	exec(t, dsn, "CREATE TABLE keyed (id int PRIMARY KEY)")
	for i, want := range []string{"t", "t", "keyed,t"} {
		if i == 2 {
			time.Sleep(cfg.CatalogInterval)
		}
		if err := k.sync(context.Background(), conn); err != nil {
			t.Fatal(err)
		}
		if listed := changesTables(t, dsn); listed != want {
			t.Fatalf("after sync %d the changes publication lists %s, want %s", i+1, listed, want)
		}
	}
}

// testKeeper is a keeper of cfg's publication with a connection of its
// own, for tests that run its syncs one by one.
func testKeeper(t *testing.T, dsn string, cfg Config) (*keeper, *pgx.Conn) {
	t.Helper()
	cfg, err := cfg.normalize()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return newKeeper(&cfg), conn
}

// changesTables lists the tables of the changes publication, by name.
func changesTables(t *testing.T, dsn string) string {
	t.Helper()
	return query[string](t, dsn, "SELECT coalesce(string_agg(tablename, ',' ORDER BY tablename), '') FROM pg_publication_tables WHERE pubname = 'cdcaudit_changes'")
}
