package pipeline

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

// The first start records the configured source with the store's
// identity, and every row event and snapshot record carries it; a start
// with another source is refused before it connects.
func TestStoreRecordsItsSource(t *testing.T) {
	dsn, conn := newDB(t)
	exec(t, conn, "CREATE TABLE item (id int PRIMARY KEY, name text); INSERT INTO item VALUES (1, 'before')")
	dir := t.TempDir()
	cfg := func(source string) Config {
		return Config{Replication: replication.Config{DSN: dsn, Slot: "src", Publication: "src"},
			DataDir: dir, Source: source, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg("erp_a")) }()
	waitConfirmed(t, conn, "src", currentLSN(t, conn), done)
	exec(t, conn, "INSERT INTO item VALUES (2, 'after'); UPDATE item SET name = 'x'; DELETE FROM item WHERE id = 1")
	waitConfirmed(t, conn, "src", currentLSN(t, conn), done)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st, err := sink.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, ok, err := st.Identity()
	ops := map[string]int{}
	if err := st.Scan(nil, nil, func(_, rec []byte) error {
		r, err := audit.ParseRecord(rec)
		if err != nil {
			return err
		}
		if r.Source != "erp_a" || !strings.Contains(string(rec), `,"source":"erp_a","schema":`) {
			t.Errorf("event without its source: %s", rec)
		}
		ops[r.Op]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if ops["snapshot"] != 1 || ops["insert"] != 1 || ops["update"] != 2 || ops["delete"] != 1 {
		t.Errorf("events stored: %v", ops)
	}
	if !ok || err != nil || id.Source != "erp_a" || id.Database == "" || id.Slot != "src" {
		t.Fatalf("identity after the first start: %+v %v %v", id, ok, err)
	}

	err = Run(context.Background(), cfg("erp_b"))
	want := "the store in " + dir + " belongs to source erp_a, not erp_b: a store's source never changes (use --source erp_a, or a new --data-dir)"
	if err == nil || err.Error() != want {
		t.Fatalf("another source:\n got %v\nwant %s", err, want)
	}
}
