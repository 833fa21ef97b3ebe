package replication

import (
	"context"
	"slices"
	"strings"
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

func TestCatalogPartitionRootAndExpectedServer(t *testing.T) {
	t.Parallel()
	dsn, db := newDB(t)
	exec(t, dsn, `CREATE TABLE log (id int, at date) PARTITION BY RANGE (at);
		CREATE TABLE log_2024 PARTITION OF log FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		CREATE TABLE plain (id int)`)
	oid := func(name string) uint32 { return query[uint32](t, dsn, "SELECT $1::regclass::oid", name) }
	ctx := context.Background()
	sys := query[string](t, dsn, "SELECT system_identifier::text FROM pg_control_system()")

	cat := NewCatalog(dsn).Expect(Identity{SystemID: sys, Database: db})
	defer cat.Close()
	if root, err := cat.PartitionRoot(ctx, oid("log_2024")); err != nil || root != "public.log" {
		t.Fatalf("partition: %q, %v", root, err)
	}
	if root, err := cat.PartitionRoot(ctx, oid("plain")); err != nil || root != "" {
		t.Fatalf("plain table: %q, %v", root, err)
	}

	// Expecting another system: nothing is answered, the mismatch is named.
	other := NewCatalog(dsn).Expect(Identity{SystemID: "1", Database: db})
	defer other.Close()
	if _, err := other.PrimaryKey(ctx, oid("plain")); !IsFatal(err) || !strings.Contains(err.Error(), "of PostgreSQL system "+sys) {
		t.Fatalf("another system: %v", err)
	}
}
