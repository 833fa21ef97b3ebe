package pgtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
)

var (
	shared   *Cluster
	dbSerial atomic.Int64
)

// Main starts one cluster for a test package, runs its tests and removes the
// cluster. Call it from TestMain. A package that cannot get a server fails
// loudly rather than skipping: the suite proves nothing without one.
func Main(m *testing.M, opts Options) {
	c, err := Start(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest: cannot start PostgreSQL:", err)
		os.Exit(1)
	}
	shared = c
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "pgtest: server log tail (%s):\n%s\n", c.LogFile, c.LogTail(4000))
	}
	c.Stop()
	os.Exit(code)
}

// Shared returns the package's cluster started by Main.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if shared == nil {
		t.Fatal("pgtest: no cluster; call pgtest.Main from TestMain")
	}
	return shared
}

// NewDB creates a fresh database on the package's cluster for this test and
// returns its DSN. Replication slots created in it are dropped at cleanup.
func NewDB(t testing.TB) (dsn string, name string) {
	t.Helper()
	c := Shared(t)
	name = fmt.Sprintf("t%d_%s", dbSerial.Add(1), sanitize(t.Name()))
	if len(name) > 60 {
		name = name[:60]
	}
	ctx := context.Background()
	if err := c.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		// Slots pin WAL and block DROP DATABASE: drop them first.
		c.Exec(ctx, "postgres", `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, name)
		c.Exec(ctx, "postgres", `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, name)
		c.Exec(ctx, "postgres", `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`)
	})
	return c.DSN(name), name
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
