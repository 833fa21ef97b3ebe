package localpg

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// A server started for the demo: logical decoding on, the settings given,
// a database of its own, and nothing of it left after Stop.
func TestStartCreateDatabaseStop(t *testing.T) {
	c, err := Start(Options{Settings: map[string]string{"work_mem": "'8MB'"}})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			c.Stop()
		}
	}()
	ctx := context.Background()
	if err := c.CreateDatabase(ctx, "odoo"); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, "odoo", "CREATE TABLE item (id int PRIMARY KEY); INSERT INTO item VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.DSN("odoo"))
	if err != nil {
		t.Fatal(err)
	}
	var db, walLevel, workMem, fsync string
	var n int
	err = conn.QueryRow(ctx, "SELECT current_database(), current_setting('wal_level'), current_setting('work_mem'), current_setting('fsync'), (SELECT count(*)::int FROM item)").
		Scan(&db, &walLevel, &workMem, &fsync, &n)
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if db != "odoo" || walLevel != "logical" || workMem != "8MB" || fsync != "off" || n != 1 {
		t.Fatalf("database %s, wal_level %s, work_mem %s, fsync %s, %d rows", db, walLevel, workMem, fsync, n)
	}

	c.Stop()
	stopped = true
	if _, err := os.Stat(c.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data directory outlived Stop: %v", err)
	}
	if conn, err := pgx.Connect(ctx, c.DSN("odoo")); err == nil {
		conn.Close(ctx)
		t.Error("the server still answers after Stop")
	}
}

// CDCAUDIT_PG_BINDIR names where the binaries are; a directory without
// them is refused by name rather than passed over.
func TestBinDirFromTheEnvironment(t *testing.T) {
	empty := t.TempDir()
	t.Setenv("CDCAUDIT_PG_BINDIR", empty)
	if _, err := BinDir(); !errors.Is(err, ErrNoServer) || !strings.Contains(err.Error(), empty) {
		t.Fatalf("BinDir with CDCAUDIT_PG_BINDIR=%s (empty): %v", empty, err)
	}
	os.Unsetenv("CDCAUDIT_PG_BINDIR")
	found, err := BinDir()
	if err != nil {
		t.Fatalf("no server found: %v", err)
	}
	t.Setenv("CDCAUDIT_PG_BINDIR", found)
	if got, err := BinDir(); err != nil || got != found {
		t.Fatalf("BinDir with CDCAUDIT_PG_BINDIR=%s: %q, %v", found, got, err)
	}
}
