package demo

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/pipeline"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

// A demo plays the Odoo workload against cdcaudit and shows every change
// it stores, once and in commit order: inserts, updates and deletes,
// attributed ones, and a psql edit flagged; after Stop the store holds
// exactly what was shown, and its chain verifies.
func TestDemoShowsWhatItStores(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	dir := t.TempDir()
	d, err := Start(context.Background(), Options{
		DataDir: dir,
		Daemon: func(dsn, dataDir string) pipeline.Config {
			return pipeline.Config{Replication: replication.Config{DSN: dsn}, DataDir: dataDir, Profile: "odoo",
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		},
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	if d.DataDir != dir || d.Temporary || d.DSN == "" {
		t.Errorf("DataDir %s (temporary %v), DSN %q", d.DataDir, d.Temporary, d.DSN)
	}
	var r recorder
	var mu sync.Mutex
	var stopped []error
	d.Play(25, Watcher{Show: r.show, Warn: func(err error) { t.Logf("workload: %v", err) },
		Stopped: func(err error) { mu.Lock(); stopped = append(stopped, err); mu.Unlock() }})

	seen := func() (ops map[audit.Op]bool, attributed, bypass bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		ops = map[audit.Op]bool{}
		for _, e := range r.events {
			ops[e.Op] = true
			attributed = attributed || e.Actor.UserID != nil && e.Actor.SessionID != ""
			bypass = bypass || slices.Contains(e.Flags, "orm_bypass")
		}
		return ops, attributed, bypass
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		ops, attributed, bypass := seen()
		if ops[audit.OpInsert] && ops[audit.OpUpdate] && ops[audit.OpDelete] && attributed && bypass {
			break
		}
		select {
		case <-d.Done():
			t.Fatalf("cdcaudit stopped: %v", d.Stop().Err)
		default:
		}
		if time.Now().After(deadline) {
			d.Stop()
			t.Fatalf("after 2 minutes: ops %v, attributed %v, orm_bypass %v", ops, attributed, bypass)
		}
	}

	sum := d.Stop()
	if sum.Err != nil || !sum.CaughtUp || len(stopped) > 0 {
		t.Fatalf("Stop: %+v; stopped early: %v", sum, stopped)
	}
	ids := r.ids()
	if sum.Stored == 0 || sum.Stored != sum.Shown || sum.Shown != uint64(len(ids)) || sum.Transactions == 0 {
		t.Errorf("stored %d, shown %d (%d seen), %d transactions", sum.Stored, sum.Shown, len(ids), sum.Transactions)
	}
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Error("events shown out of commit order, or twice")
	}
	st, err := sink.OpenReadOnly(dir) // closed by Stop: free for others
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res, err := st.Verify(context.Background(), nil)
	if err != nil || res.Events != sum.Stored || res.HeadHash.String() != sum.Head {
		t.Errorf("verify: %+v, %v; summary %+v", res, err, sum)
	}
}
