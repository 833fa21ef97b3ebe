package replication

import (
	"context"
	"strings"
	"testing"
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
		CREATE TABLE public.sale_log (id int, at date) PARTITION BY RANGE (at);
		CREATE TABLE public.sale_log_2024 PARTITION OF public.sale_log FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		CREATE UNLOGGED TABLE public.sale_scratch (id int);`)
	log, _ := testLogger(t)
	ctx := context.Background()
	pubTables := func(pub string) string {
		return query[string](t, dsn, `SELECT string_agg(n.nspname || '.' || c.relname, ' ' ORDER BY 1)
			FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
			JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname = $1`, pub)
	}

	cfg := Config{DSN: dsn, Slot: slot + "_f", Publication: "filtered", Logger: log,
		Tables: []string{"public.sale_*", "*.res_users"}, Exclude: []string{"public.sale_line"}}
	if _, _, err := Prepare(ctx, cfg, 0); err != nil {
		t.Fatal(err)
	}
	want := "other.res_users public.res_users public.sale_log public.sale_order"
	if got := pubTables("filtered"); got != want {
		t.Fatalf("publication tables %q, want %q", got, want)
	}

	// A new matching table joins the list on the next Prepare.
	exec(t, dsn, "CREATE TABLE public.sale_report (id int PRIMARY KEY)")
	if _, _, err := Prepare(ctx, cfg, 0); err != nil {
		t.Fatal(err)
	}
	want = "other.res_users public.res_users public.sale_log public.sale_order public.sale_report"
	if got := pubTables("filtered"); got != want {
		t.Fatalf("after a new table: %q, want %q", got, want)
	}

	// Exclude alone: every table but those.
	cfg2 := Config{DSN: dsn, Slot: slot + "_e", Publication: "excl", Logger: log, Exclude: []string{"public.sale_*", "other.*"}}
	if _, _, err := Prepare(ctx, cfg2, 0); err != nil {
		t.Fatal(err)
	}
	if got, want := pubTables("excl"), "public.res_users public.stock_move"; got != want {
		t.Fatalf("exclude only: %q, want %q", got, want)
	}

	// Filters against a FOR ALL TABLES publication: refused.
	exec(t, dsn, "CREATE PUBLICATION everything FOR ALL TABLES")
	cfg3 := Config{DSN: dsn, Slot: slot + "_a", Publication: "everything", Logger: log, Tables: []string{"public.*"}}
	_, _, err := Prepare(ctx, cfg3, 0)
	if !IsFatal(err) || !strings.Contains(err.Error(), "FOR ALL TABLES") {
		t.Fatalf("filters on a FOR ALL TABLES publication: %v", err)
	}

	// Filters that match nothing: refused, not an empty audit.
	cfg4 := Config{DSN: dsn, Slot: slot + "_n", Publication: "none", Logger: log, Tables: []string{"public.nosuch_*"}}
	if _, _, err := Prepare(ctx, cfg4, 0); !IsFatal(err) || !strings.Contains(err.Error(), "no table matches") {
		t.Fatalf("no match: %v", err)
	}

	// Unqualified patterns are a configuration error.
	if _, _, err := Prepare(ctx, Config{DSN: dsn, Tables: []string{"sale_order"}}, 0); err == nil || !strings.Contains(err.Error(), "schema-qualified") {
		t.Fatalf("unqualified pattern: %v", err)
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
	if !IsFatal(err) || !strings.Contains(err.Error(), "LOST") {
		t.Fatalf("slot ahead of the checkpoint: %v", err)
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
	if _, _, err := Prepare(ctx, missing, ahead); !IsFatal(err) || !strings.Contains(err.Error(), "does not exist") {
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
