// Package demo is the machinery of `cdcaudit demo`: a throwaway PostgreSQL
// (internal/localpg) holding an Odoo 18 database in miniature
// (internal/odoosim), cdcaudit run on it as the daemon runs, admin, alice,
// bob and carol working in it the way Odoo does, and every event shown as
// soon as it is durable, read from the store as any reader of it reads it.
// What is said to the user, and how an event looks, is the command's.
package demo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/localpg"
	"github.com/cdcaudit/cdcaudit/internal/odoosim"
	"github.com/cdcaudit/cdcaudit/internal/pipeline"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Database is the name of the demo's database.
const Database = "odoo"

// Options say how to start a demo.
type Options struct {
	// DataDir is the store's directory; "" makes a new temporary one, kept
	// at the end (Demo.Temporary).
	DataDir string
	// Daemon is cdcaudit's configuration for the demo database (dsn) and
	// the store's directory, as `cdcaudit run` would make it; Start adds
	// the store it opened.
	Daemon func(dsn, dataDir string) pipeline.Config
	// Logf reports PostgreSQL's set-up (an installation; may be nil).
	Logf func(format string, args ...any)
}

// Watcher is told what happens while the demo plays.
type Watcher struct {
	// Show is given every event once it is durable in the store, in commit
	// order, from a goroutine of its own.
	Show func(*audit.Event)
	// Warn is told of a request of the workload that failed; it goes on.
	Warn func(error)
	// Stopped is told why the workload or the showing of events stopped
	// early (not when Stop stops them).
	Stopped func(error)
}

// Demo is a running demo: PostgreSQL with the demo database and cdcaudit
// streaming it into the store.
type Demo struct {
	DSN       string // of the demo database, for the user's own changes
	PSQL      string // the psql of the server's installation; "" when it has none
	DataDir   string // the store's directory (absolute)
	Temporary bool   // DataDir was made for the demo

	cluster      *localpg.Cluster
	store        *sink.Store
	stopPipeline context.CancelFunc
	pipeDone     chan struct{} // closed when pipeline.Run returned
	pipeErr      error         // what it returned, once pipeDone is closed

	tail         *tail
	stopTail     context.CancelFunc
	tailDone     chan struct{}
	work         *workload
	stopWorkload context.CancelFunc
	workloadDone chan struct{}
}

// Summary is what a demo leaves.
type Summary struct {
	Stored       uint64 // events in the store
	Head         string // the hash at the chain's head; "" for a store without events
	Shown        uint64 // events shown
	Transactions uint64 // the transactions they came in
	// CaughtUp is false when the workload's last transaction did not reach
	// the store within 20s of the workload's end: it stays in the slot.
	CaughtUp bool
	Err      error // why cdcaudit failed, if it did
}

// Start starts PostgreSQL, creates the demo database, opens the store and
// starts cdcaudit on them, and returns once cdcaudit streams (its slot
// exists), so that nothing the demo does afterwards is missed. When ctx
// ends first it cleans up and returns ctx's error.
func Start(ctx context.Context, o Options) (*Demo, error) {
	cluster, err := localpg.Start(localpg.Options{Logf: o.Logf})
	if err != nil {
		return nil, fmt.Errorf("cannot start PostgreSQL: %w", err)
	}
	d := &Demo{cluster: cluster, DSN: cluster.DSN(Database), DataDir: o.DataDir}
	if err := d.start(ctx, o); err != nil {
		d.cleanUp()
		return nil, err
	}
	return d, nil
}

func (d *Demo) start(ctx context.Context, o Options) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	err := d.cluster.CreateDatabase(setupCtx, Database)
	if err == nil {
		err = d.cluster.Exec(setupCtx, Database, odoosim.Schema)
	}
	cancel()
	if err != nil {
		return fmt.Errorf("cannot create the demo database: %w", err)
	}
	if psql := filepath.Join(d.cluster.BinDir, "psql"); fileExists(psql) {
		d.PSQL = psql
	}

	if d.DataDir == "" {
		if d.DataDir, err = os.MkdirTemp("", "cdcaudit-demo-"); err != nil {
			return err
		}
		d.Temporary = true
	}
	if abs, err := filepath.Abs(d.DataDir); err == nil {
		d.DataDir = abs
	}
	if d.store, err = sink.Open(d.DataDir); err != nil {
		return fmt.Errorf("cdcaudit could not start: %w", err)
	}
	cfg := o.Daemon(d.DSN, d.DataDir)
	cfg.Store = d.store
	rc, err := cfg.Replication.WithDefaults()
	if err != nil {
		return fmt.Errorf("cdcaudit could not start: %w", err)
	}
	pctx, stop := context.WithCancel(context.Background())
	d.stopPipeline, d.pipeDone = stop, make(chan struct{})
	go func() {
		d.pipeErr = pipeline.Run(pctx, cfg)
		close(d.pipeDone)
	}()
	return waitForSlot(ctx, d.DSN, rc.Slot, d.pipeDone, &d.pipeErr)
}

// Play starts showing events (w.Show) and the workload: rate requests per
// second (0: none beyond everyone logging in once; the user makes the
// changes), until Stop.
func (d *Demo) Play(rate float64, w Watcher) {
	tctx, stopTail := context.WithCancel(context.Background())
	d.tail, d.stopTail, d.tailDone = newTail(d.store, w.Show), stopTail, make(chan struct{})
	go func() {
		defer close(d.tailDone)
		if err := d.tail.follow(tctx, 50*time.Millisecond); err != nil {
			w.Stopped(fmt.Errorf("cannot read the store: %w", err))
		}
	}()
	wctx, stopWorkload := context.WithCancel(context.Background())
	d.stopWorkload, d.workloadDone = stopWorkload, make(chan struct{})
	d.work = &workload{dsn: d.DSN, rate: rate, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 42))}
	go func() {
		defer close(d.workloadDone)
		if err := d.work.run(wctx, w.Warn); err != nil && wctx.Err() == nil {
			w.Stopped(fmt.Errorf("workload stopped: %w", err))
		}
	}()
}

// Store is the store cdcaudit writes, for readers of it (the HTTP API). It
// is closed by Stop.
func (d *Demo) Store() *sink.Store { return d.store }

// Done is closed when cdcaudit stopped by itself: it failed (Stop says why).
func (d *Demo) Done() <-chan struct{} { return d.pipeDone }

// Counts returns how many events were shown so far, and of how many
// transactions.
func (d *Demo) Counts() (events, txs uint64) {
	if d.tail == nil {
		return 0, 0
	}
	return d.tail.counts()
}

// Stop stops the workload, lets its last transaction reach the store,
// stops cdcaudit, shows the events stored until then and stops PostgreSQL.
// The store is kept.
func (d *Demo) Stop() Summary {
	sum := Summary{CaughtUp: true}
	if d.stopWorkload != nil {
		d.stopWorkload()
		<-d.workloadDone
	}
	stuck := false
	select {
	case <-d.pipeDone:
	default:
		// Let the workload's last transaction reach the store before
		// cdcaudit stops: the tail shows it once it is durable.
		if d.work != nil && d.work.hasXID.Load() {
			sum.CaughtUp = d.tail.waitXID(d.work.lastXID.Load(), 20*time.Second)
		}
		d.stopPipeline()
		select {
		case <-d.pipeDone:
		case <-time.After(2 * time.Minute):
			stuck = true
		}
	}
	if stuck {
		sum.Err = errors.New("the pipeline did not stop within 2 minutes")
	} else {
		sum.Err = d.pipeErr
	}
	if d.tail != nil {
		d.stopTail()
		<-d.tailDone
		if err := d.tail.poll(); err != nil && sum.Err == nil {
			sum.Err = fmt.Errorf("cannot read the store: %w", err)
		}
		sum.Shown, sum.Transactions = d.tail.counts()
	}
	if _, head, n := d.store.Head(); n > 0 {
		sum.Stored, sum.Head = n, head.String()
	}
	if stuck {
		d.cluster.Stop() // the store stays open: something still writes to it
		return sum
	}
	d.cleanUp()
	return sum
}

// cleanUp closes the store (once cdcaudit no longer writes to it) and
// stops PostgreSQL, removing its files.
func (d *Demo) cleanUp() {
	if d.stopPipeline != nil {
		d.stopPipeline()
		select {
		case <-d.pipeDone:
		case <-time.After(2 * time.Minute):
			d.cluster.Stop() // the store stays open: something still writes to it
			return
		}
	}
	if d.store != nil {
		d.store.Close()
	}
	d.cluster.Stop()
}

// waitForSlot waits until cdcaudit has created its replication slot, or
// stopped (done closed: *runErr says why).
func waitForSlot(ctx context.Context, dsn, slot string, done <-chan struct{}, runErr *error) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := pgx.Connect(qctx, dsn)
		if err == nil {
			var n int
			err = conn.QueryRow(qctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&n)
			conn.Close(context.Background())
			if err == nil && n > 0 {
				cancel()
				return nil
			}
		}
		cancel()
		select {
		case <-done:
			err := *runErr
			if err == nil {
				err = errors.New("stopped before it started streaming")
			}
			return fmt.Errorf("cdcaudit could not start: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("the replication slot was not created within 2 minutes")
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
