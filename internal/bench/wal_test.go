package main

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

// The bench's own server settings that the WAL figures depend on.
func TestMain(m *testing.M) {
	pgtest.Main(m, pgtest.Options{Settings: map[string]string{"full_page_writes": "on", "autovacuum": "off"}})
}

// FULL logs each updated row's old image; DEFAULT logs nothing of it when
// the key is unchanged. Inserts log the same either way.
func TestWorkloadWALOfFullAndDefault(t *testing.T) {
	ctx := context.Background()
	const rows = 300
	wal := map[string]workloadWAL{}
	for _, id := range []string{"full", "default"} {
		dsn, _ := pgtest.NewDB(t)
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, table+identityDDL("sale_order_line", id)); err != nil {
			t.Fatal(err)
		}
		last, w, err := workload(ctx, pgtest.Shared(t), conn, rows, 100)
		if err != nil {
			t.Fatal(err)
		}
		var updated int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM sale_order_line WHERE state = 'sale'").Scan(&updated); err != nil || updated != rows || last == 0 {
			t.Fatalf("%s: %d rows updated (%v), last LSN %d", id, updated, err, last)
		}
		wal[id] = w
	}
	full, def := wal["full"], wal["default"]
	t.Logf("FULL %+v, DEFAULT %+v", full, def)
	if d := full.inserts.withoutImages() - def.inserts.withoutImages(); d < -rows*10 || d > rows*10 {
		t.Errorf("inserts: FULL %d bytes of WAL, DEFAULT %d: more than 10 bytes per insert apart", full.inserts.withoutImages(), def.inserts.withoutImages())
	}
	// The old row is about 120 bytes of the 15 columns.
	if extra := (full.updates.withoutImages() - def.updates.withoutImages()) / rows; extra < 60 {
		t.Errorf("updates: FULL logs %d bytes more per update than DEFAULT; want the old row's (≥ 60)", extra)
	}
}

func TestPgbenchWALOfFullAndDefault(t *testing.T) {
	ctx := context.Background()
	const tx = 200
	wal := map[string]walSpan{}
	for _, id := range []string{"full", "default"} {
		w, err := pgbenchWAL(ctx, pgtest.Shared(t), "pgbench_test_"+id, id, tx)
		if err != nil {
			t.Fatal(err)
		}
		// Each transaction's first change of a page since the checkpoint
		// logs the whole page.
		if w.FPIBytes <= 0 || w.FPIBytes >= w.Bytes {
			t.Errorf("%s: %d bytes of page images in %d bytes of WAL", id, w.FPIBytes, w.Bytes)
		}
		wal[id] = w
	}
	t.Logf("FULL %+v, DEFAULT %+v", wal["full"], wal["default"])
	// FULL adds the old rows of pgbench_accounts (about 100 bytes), tellers
	// and branches to each transaction.
	if extra := (wal["full"].withoutImages() - wal["default"].withoutImages()) / tx; extra < 50 {
		t.Errorf("pgbench: FULL logs %d bytes more per transaction than DEFAULT; want ≥ 50", extra)
	}
}
