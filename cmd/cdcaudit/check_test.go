package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

// TestCheckAgainstAServer runs `cdcaudit check` against a real server: a
// ready database passes, a table without a usable REPLICA IDENTITY warns
// and an unreachable server fails.
func TestCheckAgainstAServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	cl := erpServer(t, `CREATE TABLE ok_table (id int PRIMARY KEY, v text);
		CREATE TABLE no_key (v text);`)
	ctx := context.Background()
	dsn := cl.DSN("erp")

	// A published table with REPLICA IDENTITY DEFAULT and a key: no
	// warning (cdcaudit fills its before-images); the choice is explained.
	out, errOut, code := runCLI(t, nil, "check", "--dsn", dsn, "--tables", "public.ok_table")
	if code != 0 || !strings.Contains(out, "OK ") || strings.Contains(out, "replica_identity       public.ok_table") ||
		!strings.Contains(out, "1 table has (public.ok_table) REPLICA IDENTITY DEFAULT or USING INDEX: cdcaudit fills their before-images") || strings.Contains(out, "FAIL") {
		t.Errorf("ready server: exit %d\n%s\n%s", code, out, errOut)
	}
	// With every table (DSN from the environment), the one without a key
	// warns that its updates and deletes are not captured, with its fix (it
	// is kept out of the changes publication: the application's writes
	// never fail).
	out, errOut, code = runCLI(t, map[string]string{"CDCAUDIT_DSN": dsn}, "check")
	if code != 0 || !strings.Contains(out, "WARN") || !strings.Contains(out, "public.no_key: no primary key, REPLICA IDENTITY DEFAULT: its UPDATEs and DELETEs are NOT captured") ||
		!strings.Contains(out, "fix: ALTER TABLE public.no_key REPLICA IDENTITY FULL;") {
		t.Errorf("table without a key: exit %d\n%s\n%s", code, out, errOut)
	}
	// Fixed: ready.
	if err := cl.Exec(ctx, "erp", `ALTER TABLE no_key REPLICA IDENTITY FULL; ALTER TABLE ok_table REPLICA IDENTITY FULL;`); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCLI(t, map[string]string{"CDCAUDIT_DSN": dsn}, "check")
	if code != 0 || !strings.Contains(out, "Ready: every check passed.") {
		t.Errorf("fixed: exit %d\n%s\n%s", code, out, errOut)
	}

	// The docker-compose init script: as the unprivileged cdcaudit role, on a
	// database prepared by it, with tables created afterwards, check passes.
	initSQL, err := os.ReadFile("../../deploy/postgres/init/10-cdcaudit.sql")
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.CreateDatabase(ctx, "compose"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Exec(ctx, "compose", string(initSQL)); err != nil {
		t.Fatalf("deploy/postgres/init/10-cdcaudit.sql: %v", err)
	}
	if err := cl.Exec(ctx, "compose", `CREATE TABLE res_partner (id serial PRIMARY KEY, name varchar);
		CREATE TABLE res_groups_users_rel (gid int, uid int, PRIMARY KEY (gid, uid));
		CREATE TABLE made_from_select AS SELECT 1 AS x;`); err != nil {
		t.Fatal(err)
	}
	// Tables with a primary key keep DEFAULT (cdcaudit fills their
	// before-images: no extra WAL); one without gets FULL, its only identity.
	idents := map[string]string{}
	conn, err := pgx.Connect(ctx, cl.DSN("compose"))
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := conn.Query(ctx, `SELECT relname::text, relreplident::text FROM pg_class WHERE relname IN ('res_partner', 'res_groups_users_rel', 'made_from_select')`)
	var name, ident string
	if _, err := pgx.ForEachRow(rows, []any{&name, &ident}, func() error { idents[name] = ident; return nil }); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if idents["res_partner"] != "d" || idents["res_groups_users_rel"] != "d" || idents["made_from_select"] != "f" {
		t.Errorf("replica identities after the compose trigger: %v, want DEFAULT (d) with a key, FULL (f) without", idents)
	}
	composeDSN := strings.Replace(cl.DSN("compose"), "postgres@", "cdcaudit:cdcaudit@", 1)
	out, errOut, code = runCLI(t, nil, "check", "--dsn", composeDSN)
	t.Logf("compose check:\n%s", out)
	if code != 0 || strings.Contains(out, "WARN") || !strings.Contains(out, `publication "cdcaudit_changes" lists 3 tables`) {
		t.Errorf("compose database: exit %d\n%s\n%s", code, out, errOut)
	}
	// A DBA takes a listed table's replica identity away: the compose
	// trigger drops it from the changes publication in the same
	// transaction, so the application's next UPDATE does not fail, even
	// with no cdcaudit running.
	if err := cl.Exec(ctx, "compose", `INSERT INTO res_partner (name) VALUES ('a');
		ALTER TABLE res_partner REPLICA IDENTITY NOTHING;
		UPDATE res_partner SET name = 'b';
		ALTER TABLE res_groups_users_rel REPLICA IDENTITY DEFAULT;
		ALTER TABLE res_groups_users_rel DROP CONSTRAINT res_groups_users_rel_pkey;
		INSERT INTO res_groups_users_rel VALUES (1, 1);
		UPDATE res_groups_users_rel SET uid = 2;`); err != nil {
		t.Errorf("compose database: an UPDATE after its table lost its replica identity: %v", err)
	}
	// A table the trigger did not list (created while it was disabled): the
	// unprivileged role cannot add it; check says so, with the fix.
	if err := cl.Exec(ctx, "compose", `ALTER EVENT TRIGGER cdcaudit_prepare_new_table DISABLE;
		CREATE TABLE late (id int PRIMARY KEY);
		ALTER EVENT TRIGGER cdcaudit_prepare_new_table ENABLE;`); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCLI(t, nil, "check", "--dsn", composeDSN)
	if code != 0 || !strings.Contains(out, `publication "cdcaudit_changes" does not list public.late yet`) ||
		!strings.Contains(out, `fix: as a superuser or the tables' owner: ALTER PUBLICATION "cdcaudit_changes" ADD TABLE ONLY public.late;`) {
		t.Errorf("compose database, a table not listed: exit %d\n%s\n%s", code, out, errOut)
	}

	out, errOut, code = runCLI(t, nil, "check", "--dsn", "postgres://nobody:pw@127.0.0.1:1/erp?connect_timeout=2")
	if code != exitFail || !strings.Contains(out, "FAIL") || strings.Contains(out+errOut, ":pw@") {
		t.Errorf("unreachable server: exit %d\n%s\n%s", code, out, errOut)
	}
}

// erpServer starts a throwaway server with a database "erp" holding ddl;
// it is stopped when the test ends.
func erpServer(t *testing.T, ddl string) *pgtest.Cluster {
	t.Helper()
	cl, err := pgtest.Start(pgtest.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Stop)
	ctx := context.Background()
	if err := cl.CreateDatabase(ctx, "erp"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Exec(ctx, "erp", ddl); err != nil {
		t.Fatal(err)
	}
	return cl
}

// With databases, check checks each database with its own slot.
func TestCheckDatabases(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	cl := erpServer(t, `CREATE TABLE t (id int PRIMARY KEY);`)
	if err := cl.CreateDatabase(context.Background(), "erp2"); err != nil {
		t.Fatal(err)
	}
	file := writeConfig(t, "databases:\n  - dsn: "+cl.DSN("erp")+"\n  - dsn: "+cl.DSN("erp2")+"\n    slot: second\n")
	out, errOut, code := runCLI(t, nil, "check", "--config", file)
	if code != 0 || !strings.Contains(out, "(slot cdcaudit_erp, publication cdcaudit)") || !strings.Contains(out, "(slot second, publication cdcaudit)") ||
		strings.Count(out, "Checking ") != 2 {
		t.Errorf("check of two databases: exit %d\n%s\n%s", code, out, errOut)
	}
}
