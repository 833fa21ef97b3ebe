package replication

import (
	"context"
	"slices"
	"testing"
)

func TestCatalogPrimaryKey(t *testing.T) {
	t.Parallel()
	dsn, db := newDB(t)
	exec(t, dsn, `CREATE TABLE composite (a int, b int, c int, PRIMARY KEY (b, a));
		CREATE TABLE nokey (a int);`)
	oid := func(name string) uint32 { return query[uint32](t, dsn, "SELECT $1::regclass::oid", name) }
	ctx := context.Background()
	cat := NewCatalog(dsn)
	defer cat.Close()

	pk, err := cat.PrimaryKey(ctx, oid("composite"))
	if err != nil || !slices.Equal(pk, []string{"b", "a"}) {
		t.Fatalf("composite: %v, %v", pk, err)
	}
	if pk, err := cat.PrimaryKey(ctx, oid("nokey")); err != nil || pk != nil {
		t.Fatalf("no key: %v, %v", pk, err)
	}

	// Its connection is killed: the next question reconnects.
	exec(t, dsn, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'cdcaudit' AND pid <> pg_backend_pid()`, db)
	if pk, err := cat.PrimaryKey(ctx, oid("composite")); err != nil || !slices.Equal(pk, []string{"b", "a"}) {
		t.Fatalf("after terminate: %v, %v", pk, err)
	}
}
