package replication

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

func find(fs []Finding, check, contains string) (Finding, bool) {
	for _, f := range fs {
		if f.Check == check && strings.Contains(f.Message, contains) {
			return f, true
		}
	}
	return Finding{}, false
}

func mustFind(t *testing.T, fs []Finding, level, check, contains string) Finding {
	t.Helper()
	f, ok := find(fs, check, contains)
	if !ok || f.Level != level {
		t.Fatalf("no %s finding %q containing %q (got %+v); all findings:\n%s", level, check, contains, f, dump(fs))
	}
	return f
}

// mustFix is mustFind that also checks the finding's fix, exactly.
func mustFix(t *testing.T, fs []Finding, level, check, contains, fix string) {
	t.Helper()
	if f := mustFind(t, fs, level, check, contains); f.Fix != fix {
		t.Fatalf("%s finding %q: fix %q, want %q", level, check, f.Fix, fix)
	}
}

func dump(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "  %-4s %-22s %s | fix: %s\n", f.Level, f.Check, f.Message, f.Fix)
	}
	return b.String()
}

func TestCheck(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	exec(t, dsn, `
		CREATE TABLE nopk (a int);
		CREATE TABLE withpk (id int PRIMARY KEY, note text);
		CREATE TABLE fullrow (id int PRIMARY KEY); ALTER TABLE fullrow REPLICA IDENTITY FULL;
		CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY);
		CREATE TABLE "Mixed" (id int PRIMARY KEY);
		CREATE TABLE nothing (id int PRIMARY KEY); ALTER TABLE nothing REPLICA IDENTITY NOTHING;
		CREATE TABLE priced (id int PRIMARY KEY, net numeric, gross numeric GENERATED ALWAYS AS (net * 1.2) STORED);`)
	log, _ := testLogger(t)
	ctx := context.Background()
	cfg := Config{DSN: dsn, Slot: slot, Logger: log}

	fs, err := Check(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("findings:\n%s", dump(fs))
	mustFind(t, fs, "ok", "connection", "PostgreSQL 15")
	mustFind(t, fs, "ok", "wal_level", "logical")
	mustFind(t, fs, "ok", "replication_privilege", "postgres")
	mustFind(t, fs, "ok", "replication_connection", "")
	mustFind(t, fs, "ok", "max_replication_slots", "room for ours")
	mustFind(t, fs, "ok", "max_wal_senders", "")
	mustFind(t, fs, "ok", "slot", "does not exist yet")
	mustFind(t, fs, "ok", "publication", "does not exist yet")
	mustFix(t, fs, "warn", "replica_identity", "public.nopk: no primary key, REPLICA IDENTITY DEFAULT: its UPDATEs and DELETEs are NOT captured", "ALTER TABLE public.nopk REPLICA IDENTITY FULL;")
	// A table with a primary key and REPLICA IDENTITY NOTHING is called what it is.
	mustFix(t, fs, "warn", "replica_identity", "public.nothing: REPLICA IDENTITY NOTHING: its UPDATEs and DELETEs are NOT captured", "ALTER TABLE public.nothing REPLICA IDENTITY FULL;")
	if f, _ := find(fs, "replica_identity", "public.nothing"); strings.Contains(f.Message, "no primary key") {
		t.Fatalf("RI NOTHING table with a primary key reported as without one: %s", f.Message)
	}
	// Generated columns are not published: said, not silently lost.
	mustFind(t, fs, "warn", "generated_columns", "public.priced has generated columns (gross)")
	mustFind(t, fs, "ok", "changes_publication", "does not exist yet")
	// DEFAULT with a key is no warning: cdcaudit reconstructs before-images;
	// the choice is explained, FULL's cost named.
	def := mustFind(t, fs, "ok", "replica_identity", `3 tables have (public."Mixed", public.priced, public.withpk) REPLICA IDENTITY DEFAULT or USING INDEX: cdcaudit fills their before-images`)
	if !strings.Contains(def.Message, "before_source unknown") || !strings.Contains(def.Message, "more WAL") || def.Fix != "" {
		t.Errorf("the DEFAULT finding does not explain the choice: %s | %s", def.Message, def.Fix)
	}
	mustFind(t, fs, "ok", "replica_identity", "1 table has (public.fullrow) REPLICA IDENTITY FULL: the server sends whole before-images (more WAL")
	mustFind(t, fs, "warn", "unlogged_table", "public.scratch is UNLOGGED")
	for _, f := range fs {
		if f.Check == "replica_identity" && f.Level != "ok" && (strings.Contains(f.Message, "withpk") || strings.Contains(f.Message, "fullrow")) {
			t.Fatalf("a table with a usable identity warned: %s", f.Message)
		}
	}

	// Once prepared, a slot held by another process is a failure that
	// names the holder.
	cfg.Tables = []string{"public.withpk"}
	if _, _, err := Prepare(ctx, cfg, 0); err != nil {
		t.Fatal(err)
	}
	pid, release := holdSlot(t, dsn, slot, "cdcaudit")
	fs, err = Check(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustFix(t, fs, "fail", "slot_in_use", fmt.Sprintf("PID %d", pid), fmt.Sprintf("stop that process, or end it: SELECT pg_terminate_backend(%d);", pid))
	mustFind(t, fs, "ok", "slot", "pgoutput slot of this database")
	mustFind(t, fs, "ok", "publication", "exists FOR ALL TABLES, publishing inserts and truncates")
	mustFind(t, fs, "ok", "changes_publication", "lists 1 tables")
	mustFind(t, fs, "warn", "changes_guard", "no event trigger guards")
	// Only tables in scope are judged.
	if _, ok := find(fs, "replica_identity", "nopk"); ok {
		t.Fatalf("out-of-scope table reported:\n%s", dump(fs))
	}
	release()

	// The guard of deploy/postgres/init is recognised.
	initSQL, err := os.ReadFile("../deploy/postgres/init/10-cdcaudit.sql")
	if err != nil {
		t.Fatal(err)
	}
	guard := string(initSQL[bytes.Index(initSQL, []byte("CREATE FUNCTION cdcaudit_keep_changes_publication")):])
	exec(t, dsn, guard) // this test's publication is the default, cdcaudit
	if fs, err = Check(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	mustFind(t, fs, "ok", "changes_guard", "an event trigger drops a table from")
	exec(t, dsn, "DROP EVENT TRIGGER cdcaudit_keep_changes_publication; DROP FUNCTION cdcaudit_keep_changes_publication()")

	// A typo in a filter is pointed out.
	cfg.Tables = []string{"public.withpk", "public.wihtpk"}
	fs, err = Check(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustFind(t, fs, "warn", "table_filters", `"public.wihtpk" matches no table`)
	if _, ok := find(fs, "slot_in_use", ""); ok {
		t.Fatal("released slot still reported in use")
	}
}

func TestCheckRoleWithoutReplication(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	createRole(t, dsn, "check_norepl", "")
	log, _ := testLogger(t)
	fs, err := Check(context.Background(), Config{DSN: withUser(t, dsn, "check_norepl"), Slot: slot, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	mustFix(t, fs, "fail", "replication_privilege", "no REPLICATION attribute", "as a superuser: ALTER ROLE check_norepl WITH REPLICATION;")
	mustFix(t, fs, "fail", "publication", "only a superuser", "as a superuser: CREATE PUBLICATION \"cdcaudit\" FOR ALL TABLES WITH (publish = 'insert, truncate');")
}

func TestCheckUnreachableServer(t *testing.T) {
	t.Parallel()
	fs, err := Check(context.Background(), Config{DSN: "postgres://u:hunter2@127.0.0.1:1/x?sslmode=disable&connect_timeout=2"})
	if err != nil {
		t.Fatal(err)
	}
	f := mustFind(t, fs, "fail", "connection", "cannot connect")
	if strings.Contains(f.Message, "hunter2") {
		t.Fatalf("password in finding: %s", f.Message)
	}
}

// TestWALLevelReplica runs a cluster without logical decoding: check says
// so, Prepare and Stream refuse.
func TestWALLevelReplica(t *testing.T) {
	t.Parallel()
	c, err := pgtest.Start(pgtest.Options{Settings: map[string]string{"wal_level": "replica"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	dsn := c.DSN("postgres")
	log, _ := testLogger(t)
	cfg := Config{DSN: dsn, Logger: log}
	ctx := context.Background()

	fs, err := Check(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustFix(t, fs, "fail", "wal_level", "wal_level is replica", "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL")
	if _, _, err := Prepare(ctx, cfg, 0); !IsFatal(err) || !strings.Contains(err.Error(), "wal_level") {
		t.Fatalf("Prepare: %v", err)
	}
	r := stream(t, cfg, 0, newConsumer())
	if err := r.wait(t, 20e9); !IsFatal(err) || !strings.Contains(err.Error(), "wal_level") {
		t.Fatalf("Stream: %v", err)
	}
}

// An ERP's hundreds of DEFAULT tables make one finding, not a page of them.
func TestCheckGroupsKeyOnlyTables(t *testing.T) {
	t.Parallel()
	dsn, slot := newDB(t)
	for i := range 12 {
		exec(t, dsn, fmt.Sprintf("CREATE TABLE k%02d (id int PRIMARY KEY)", i))
	}
	fs, err := Check(context.Background(), Config{DSN: dsn, Slot: slot})
	if err != nil {
		t.Fatal(err)
	}
	f := mustFind(t, fs, "ok", "replica_identity", "12 tables have (public.k00, public.k01")
	if !strings.Contains(f.Message, "public.k09 and 2 more) REPLICA IDENTITY DEFAULT") {
		t.Errorf("the group does not say how many more: %s", f.Message)
	}
	n := 0
	for _, f := range fs {
		if f.Check == "replica_identity" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d replica_identity findings for 12 DEFAULT tables, want one:\n%s", n, dump(fs))
	}
}
