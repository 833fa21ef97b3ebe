package pipeline

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"strings"
	"testing"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

// The first start records the configured source with the store's
// identity, and every row event and snapshot record carries it; a start
// with another source is refused before it connects. A store made before
// sources adopts the source at its next start; a store of another database
// is refused and adopts nothing.
func TestStoreRecordsItsSource(t *testing.T) {
	dsn, conn := newDB(t)
	exec(t, conn, "CREATE TABLE item (id int PRIMARY KEY, name text); INSERT INTO item VALUES (1, 'before')")
	cfg := func(dir, slot, source string) Config {
		return Config{Replication: replication.Config{DSN: dsn, Slot: slot, Publication: "src"},
			DataDir: dir, Source: source, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	// run runs the pipeline until the slot confirmed the server's WAL
	// after change (SQL) was made.
	run := func(c Config, change string) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, c) }()
		waitConfirmed(t, conn, c.Replication.Slot, currentLSN(t, conn), done)
		if change != "" {
			exec(t, conn, change)
			waitConfirmed(t, conn, c.Replication.Slot, currentLSN(t, conn), done)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// sources reads the store: its recorded source and its events' sources.
	sources := func(dir string) (recorded string, events map[string]map[string]int) {
		t.Helper()
		st, err := sink.OpenReadOnly(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		events = map[string]map[string]int{}
		if err := st.Scan(nil, nil, func(_, rec []byte) error {
			r, err := audit.ParseRecord(rec)
			if err != nil {
				return err
			}
			if r.Source != "" && !strings.Contains(string(rec), `,"database":"`+r.Database+`","source":"`+r.Source+`","schema":`) {
				t.Errorf("source member out of place: %s", rec)
			}
			if events[r.Source] == nil {
				events[r.Source] = map[string]int{}
			}
			events[r.Source][r.Op]++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return st.Source(), events
	}

	dir := t.TempDir()
	run(cfg(dir, "src", "erp_a"), "INSERT INTO item VALUES (2, 'after'); UPDATE item SET name = 'x'; DELETE FROM item WHERE id = 1")
	recorded, events := sources(dir)
	if want := map[string]int{"snapshot": 1, "insert": 1, "update": 2, "delete": 1}; recorded != "erp_a" || len(events) != 1 || !maps.Equal(events["erp_a"], want) {
		t.Fatalf("store: source %q, events by source %v", recorded, events)
	}
	err := Run(context.Background(), cfg(dir, "src", "erp_b"))
	want := "the store in " + dir + " belongs to source erp_a, not erp_b: a store's source never changes (use --source erp_a, or a new --data-dir)"
	if err == nil || err.Error() != want {
		t.Fatalf("another source:\n got %v\nwant %s", err, want)
	}

	// Made before sources: events without one, then the source adopted.
	old := t.TempDir()
	run(cfg(old, "src_old", ""), "UPDATE item SET name = 'y'")
	run(cfg(old, "src_old", "erp_c"), "UPDATE item SET name = 'z'")
	recorded, events = sources(old)
	if recorded != "erp_c" || events[""]["update"] != 1 || events["erp_c"]["update"] != 1 {
		t.Fatalf("adopted: source %q, events by source %v", recorded, events)
	}

	// A store of another database adopts nothing.
	other := t.TempDir()
	st, err := sink.Open(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetIdentity(sink.Identity{SystemID: "1", Database: "elsewhere", Slot: "src_other"}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := Run(context.Background(), cfg(other, "src_other", "erp_d")); err == nil || !strings.Contains(err.Error(), `belongs to database "elsewhere"`) {
		t.Fatalf("a store of another database: %v", err)
	}
	if recorded, _ := sources(other); recorded != "" {
		t.Fatalf("a store of another database adopted source %q", recorded)
	}
}
