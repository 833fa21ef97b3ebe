// Package pipeline wires the stages together: replication stream → decoder →
// encoding → group-committed store, and reports the durable position back to
// the stream so the slot is confirmed only up to what is stored.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/anchor"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/backup"
	"github.com/cdcaudit/cdcaudit/decoder"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/rules"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
	"github.com/cdcaudit/cdcaudit/snapshot"
)

// Config is what Run needs.
type Config struct {
	Replication replication.Config
	DataDir     string
	// Source names the database's trail (config.DefaultSource): every
	// event carries it, and the store records it and refuses another.
	// Empty: events carry none (a store's recorded source is kept).
	Source  string
	Logger  *slog.Logger
	Metrics Metrics // may be nil
	// Store, when set, is the store of DataDir (which may then be left
	// empty), opened by the caller: Run writes to it and leaves it open, so
	// that readers in the same process (sink.Store.Query) follow the trail
	// while it grows. Otherwise Run opens DataDir itself.
	Store *sink.Store
	// ReadPace paces the reads of the data-dir socket (export, events,
	// sessions) as the API's are paced (readpace.Pacer); nil: unpaced.
	ReadPace backup.Pacer

	// Profile names the application profile: auto (or ""), odoo, generic
	// (read from ProfileFile) or none.
	Profile     string
	ProfileFile string
	// Redact adds columns whose values are never stored, for any profile;
	// with RedactKey they are replaced by an HMAC instead of "[redacted]".
	Redact    []profile.ColumnRule
	RedactKey []byte
	// Sessions: idle after (default 5m), ended after (default 7 days) of
	// inactivity; GeoIPPath an optional .mmdb for country/city.
	IdleAfter, SessionLifetime time.Duration
	GeoIPPath                  string
	// DirectDB, when set, flags the changes no application user made
	// while a database session outside the application was open
	// (dbsessions.Flagger); with an application profile only.
	DirectDB DirectDB
	// AnchorFile, when set, is appended every signed anchor of the chain
	// head (they are logged either way).
	AnchorFile string
	// AnchorSyslog, when set, is a syslog server's address (udp://host:514,
	// tcp://host:601, unix:///dev/log) anchors are sent to as well.
	AnchorSyslog string
	// Snapshot is snapshot.ModeInitial (the default, also ""): on a fresh
	// start copy the published tables matching SnapshotTables (all when
	// empty) as snapshot records; or snapshot.ModeNever: only the profile's
	// users, models and sessions tables.
	Snapshot       string
	SnapshotTables []string
	// Retention, when enabled, prunes expired events in the background.
	Retention sink.Retention
	// Rules turns the suspicious-activity rules of the stream on or off.
	Rules rules.Config
	// SessionSignals, when set, is news of sessions from outside the
	// stream (the watched session store, cdcaudit's own terminations):
	// applied to the session tracker on the stream's goroutine, between
	// transactions (before each one, and when idle within the status
	// interval), and persisted with the next batch like the stream's.
	SessionSignals <-chan sessions.Signal
	// OnTracker, when set, is given the session tracker once attribution
	// starts (at start, or when profile auto settles on Odoo): its methods
	// are safe for concurrent use (session policies read it).
	OnTracker func(*sessions.Tracker)
	// Control adds requests to the data-dir socket (backup.Server.Handle),
	// by verb: e.g. end_session.
	Control map[string]backup.Handler
	// Sources run beside the stream for as long as it runs, each given the
	// StateSink through which it stores what it finds (see Source).
	Sources []Source
	// Alerts tunes the alerts raised from the stream (package alerts);
	// Directory defaults to Odoo's with the Odoo profile.
	Alerts alerts.StageOptions
}

// chunkEvents is how many events of one transaction are handed to the store
// at once: a huge transaction is stored in chunks, so memory stays bounded
// whatever its size. A crash mid-transaction is safe: the checkpoint only
// moves at the commit, the transaction is replayed, and the chunks already
// stored are recognised by their ids.
const chunkEvents = 2000

// chunkBytes bounds a chunk by the size of its values as well: a chunk is
// handed on before it would grow past it (it holds one bigger event alone).
const chunkBytes = 16 << 20

// hugeEvent: an event whose values take this much is encoded and stored
// with each copy of its values released before the next is made (flushTx):
// the message it came in, the decoded values, the record, the store's page.
// So one huge value costs about twice its size in memory, not five times.
const hugeEvent = 16 << 20

// Run streams changes into the store in cfg.DataDir until ctx is cancelled
// (then it stores what it has, confirms it and returns nil) or a fatal error.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg.Replication.Logger = log
	if cfg.Metrics != nil && cfg.Replication.Observer == nil {
		cfg.Replication.Observer = cfg.Metrics // before WithDefaults puts a no-op there
	}
	rc, err := cfg.Replication.WithDefaults()
	if err != nil {
		return err
	}
	cfg.Replication = rc
	store := cfg.Store
	if store == nil {
		if store, err = sink.Open(cfg.DataDir); err != nil {
			return err
		}
		defer store.Close()
	} else if cfg.DataDir == "" {
		cfg.DataDir = store.Dir()
	} else if filepath.Clean(cfg.DataDir) != filepath.Clean(store.Dir()) {
		return fmt.Errorf("the store given is in %s, not in the data directory %s", store.Dir(), cfg.DataDir)
	}
	anchors, control, closeChain, err := chainServices(cfg, store, log)
	if err != nil {
		return err
	}
	defer closeChain()

	if cfg.Source != "" {
		if err := store.CheckSource(cfg.Source); err != nil {
			return err // before connecting
		}
	}
	checkpoint := store.Checkpoint()
	// Every connection, from the first, must reach the store's server and
	// database: another one is refused, never taken for a gap.
	if have, ok, err := store.Identity(); err != nil {
		return err
	} else if ok {
		cfg.Replication.Server = replication.Identity{SystemID: have.SystemID, Database: have.Database}
	}
	since := &coveredSince{}
	if err := since.load(store); err != nil {
		return err
	}
	coverage := &coverageRecords{log: log, since: since}
	cfg.Replication.OnCoverage = coverage.add
	ident, start, exported, err := prepare(ctx, cfg, checkpoint, log)
	defer exported.Release() // imported (or not wanted) by then
	if err != nil {
		if ctx.Err() != nil && !replication.IsFatal(err) {
			log.Info("stopped before streaming began")
			return nil
		}
		return err
	}
	if err := checkIdentity(store, ident, cfg.Replication.Slot, cfg.Source); err != nil {
		return err
	}
	cfg.Replication.Server = ident
	log.Info("streaming", "database", ident.Database, "slot", cfg.Replication.Slot,
		"checkpoint", audit.FormatLSN(checkpoint), "start", audit.FormatLSN(start), "data_dir", cfg.DataDir)

	enrich, err := newEnricher(ctx, cfg, store, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if cfg.Metrics != nil {
		cfg.Metrics.SessionsFrom(enrich.sessionFigures)
		cfg.Metrics.SessionDetailFrom(enrich.sessionDetail)
		// The backlog is known from the start (the slot has confirmed
		// start; the server has written XLogPos): the stream's own
		// messages carry only the position of what they hold while it
		// catches up.
		cfg.Metrics.Confirmed(start)
		cfg.Metrics.ServerWALEnd(ident.XLogPos)
	}
	catalog := replication.NewCatalog(cfg.Replication.DSN).Expect(ident)
	defer catalog.Close()

	defer enrich.close()
	// Stop in two steps: on cancellation first make what was received
	// durable, then stop the stream, whose last status update confirms it.
	// A store that fails stops the stream at once (storeFailed).
	streamCtx, stopStream := context.WithCancel(context.Background())
	defer stopStream()
	dec := decoder.New(ident.Database, catalog)
	dec.SetSource(cfg.Source)
	c := newConsumer(dec, store, cfg, log, anchors)
	c.enrich = enrich
	if c.images, err = newImageCache(store, dec, cfg.RedactKey, cfg.DataDir); err != nil {
		return err
	}
	c.images.secret = enrich.redact.Secret
	c.images.coveredSince = since.of
	c.stopStream = stopStream
	c.database, c.source = ident.Database, cfg.Source
	defer c.close()
	snaps, stopSnapshot, err := startSnapshot(ctx, cfg, store, c, exported, checkpoint, log)
	if err != nil {
		return err
	}
	defer stopSnapshot()
	serveControl(control, cfg, store, snaps, log)
	if err := recordGap(ctx, store, c.writer, checkpoint, start, log); err != nil {
		return err
	}
	if err := coverage.attach(c.writer); err != nil {
		return err
	}
	// After the gap record: a cut placed at the head first would take its place.
	stopRetention, err := startRetention(cfg, store, log)
	if err != nil {
		return err
	}
	defer stopRetention()
	stopSources := startSources(cfg.Sources, stateSink(c.writer), log)
	defer stopSources()
	go func() {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			c.writer.Flush(fctx)
			cancel()
			stopStream()
		case <-c.writer.Failed():
			c.storeFailed()
		case <-streamCtx.Done():
		}
	}()
	err = replication.Stream(streamCtx, cfg.Replication, start, c)
	stopSources() // their last writes go before the writer closes
	// Retention stops before a slot_lost record is placed at the head.
	stopRetention()
	c.images.release() // a transaction may have been cut short: the store is closed below
	if replication.IsFatal(err) {
		recordSlotLoss(cfg, store, c.writer, log)
	}
	if recs := enrich.settle(); len(recs) > 0 && (err == nil || ctx.Err() != nil) {
		// Session activity that was held back (written at most once a minute)
		// is written before a clean stop.
		if serr := c.writer.Submit(context.Background(), sink.Batch{State: recs}); err == nil && serr != nil {
			err = serr
		}
	}
	if cerr := c.writer.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if werr := c.writer.Err(); werr != nil {
		return storeError(store, werr) // whatever the stream made of it
	}
	if err != nil && ctx.Err() != nil && !replication.IsFatal(err) {
		err = nil // a shutdown, not a failure
	}
	if err == nil || replication.IsFatal(err) {
		publishHead(anchors, store, "stopped")
	}
	return err
}

// startSources runs each source on a goroutine of its own; the function
// returned cancels them and waits until all have returned (it may be called
// more than once).
func startSources(sources []Source, state StateSink, log *slog.Logger) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, src := range sources {
		wg.Go(func() {
			if err := src(ctx, state); err != nil && ctx.Err() == nil {
				log.Error("a source beside the stream stopped", "source", i, "err", err) // the error says which
			}
		})
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// storeError says what a failed store write is: the store, its file, and
// "disk full" when it is.
func storeError(store *sink.Store, err error) error {
	what := "cannot write to the store"
	if errors.Is(err, syscall.ENOSPC) {
		what = "disk full: cannot write to the store"
	}
	return fmt.Errorf("%s %s: %w", what, filepath.Join(store.Dir(), sink.FileName), err)
}

// prepare runs replication.Prepare, waiting with capped backoff while the
// database cannot be reached at all (not started yet, restarting): a
// sidecar may well start first. Everything else — a refused login, a
// missing privilege, a bad configuration — fails at once.
func prepare(ctx context.Context, cfg Config, checkpoint uint64, log *slog.Logger) (replication.Identity, uint64, *replication.Exported, error) {
	delay := 250 * time.Millisecond
	for {
		// The slot's snapshot is exported for the initial snapshot.
		ident, start, exported, err := replication.PrepareExport(ctx, cfg.Replication, checkpoint, cfg.Snapshot != snapshot.ModeNever)
		if err == nil || replication.IsFatal(err) || !unreachable(err) || ctx.Err() != nil {
			return ident, start, exported, err
		}
		log.Warn("database not reachable yet; retrying", "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return ident, start, nil, err
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// unreachable tells a server that is not there (yet) from one that answered.
func unreachable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "57P03" // cannot_connect_now: starting up or shutting down
	}
	var ce *pgconn.ConnectError
	return errors.As(err, &ce)
}

// checkIdentity refuses a store that belongs to another server or database:
// mixing two histories would make the checkpoint meaningless.
func checkIdentity(store *sink.Store, ident replication.Identity, slot, source string) error {
	have, ok, err := store.Identity()
	if err != nil {
		return err
	}
	if !ok {
		return store.SetIdentity(sink.Identity{SystemID: ident.SystemID, Database: ident.Database, Slot: slot, Source: source})
	}
	if have.SystemID != ident.SystemID || have.Database != ident.Database {
		return fmt.Errorf("the store belongs to database %q on system %s, not %q on system %s: use another --data-dir",
			have.Database, have.SystemID, ident.Database, ident.SystemID)
	}
	if source != "" {
		return store.ClaimSource(source) // a store made before sources adopts it
	}
	return nil
}

// consumer implements replication.Consumer and decoder.Handler.
type consumer struct {
	dec    *decoder.Decoder
	store  *sink.Store
	writer storeWriter
	m      Metrics
	log    *slog.Logger
	notify chan struct{}

	enrich     *enricher
	images     *imageCache
	tx         *decoder.Tx // the last begun
	stopStream func()
	snapActive bool // a snapshot was in progress when the transaction began
	failOnce   sync.Once
	txEvents   []*audit.Event // of the transaction in progress, not yet encoded
	txBytes    int            // the size of their values
	batch      sink.Batch
	bodies     bodies     // the records of batch are carved from its chunks
	terms      termChunks // and their terms
	msgStart   uint64     // WAL start of the message being decoded
	txCounts   []tableRun // event counts of the transaction in progress
	lastAnchor time.Time  // of the writer goroutine

	// Transactions received and not yet durable, oldest first, with the
	// event counts of the committed ones: the lag metrics count them, and
	// events_total counts their events once the store has them, so a replay
	// is never counted twice. Guarded by pendMu (the writer goroutine pops).
	pendMu    sync.Mutex
	pending   []pendingTx
	pendRuns  []tableRun
	durCounts map[tableOp]int // scratch of the writer goroutine

	anchorQ    chan struct{}
	anchorDone chan struct{}

	database  string
	source    string // the trail's name (Config.Source), on snapshot records too
	txOrdinal uint32 // the highest ordinal of the transaction in progress
	snap      snapshotFeed
}

type tableOp struct {
	schema, table string
	op            audit.Op
}

// tableRun counts consecutive events of one table and operation.
type tableRun struct {
	k tableOp
	n int
}

type pendingTx struct {
	first      uint64 // WAL start of its Begin (the transaction's first record)
	end        uint64 // its end LSN, once its Commit was received; 0 before
	commitTime time.Time
	runs       int  // its event counts: the next runs of pendRuns
	marker     bool // cdcaudit's own: it hands over snapshot chunks
}

func newConsumer(dec *decoder.Decoder, store *sink.Store, cfg Config, log *slog.Logger, anchors *anchor.Publisher) *consumer {
	c := &consumer{
		dec: dec, store: store, m: cfg.Metrics, log: log,
		notify:    make(chan struct{}, 1),
		durCounts: make(map[tableOp]int),
	}
	c.writer = sink.NewWriter(store, sink.WriterOptions{Queue: 4096, OnCommit: c.committed, Release: c.released})
	c.anchorQ, c.anchorDone = make(chan struct{}, 1), make(chan struct{})
	go c.publishAnchors(anchors, store)
	return c
}

// committed is the writer's OnCommit: a group of batches is durable.
func (c *consumer) committed(ci sink.CommitInfo) {
	if ci.Stored > 0 && time.Since(c.lastAnchor) >= anchorEvery {
		select { // published off this goroutine: see publishAnchors
		case c.anchorQ <- struct{}{}:
		default:
		}
		c.lastAnchor = time.Now()
	}
	if c.m != nil {
		c.m.BatchCommitted(ci.Stored, ci.Duplicates, ci.Bytes, ci.Duration, ci.Checkpoint, ci.LastCommitTime)
		// The flags of the events this commit stored: what the store holds,
		// whatever a replay of the same events would now make of them.
		for f, n := range ci.Flags {
			c.m.AddFlagged(f, n)
		}
		c.m.StoreSize(c.store.Size())
		c.countDurable(ci.Checkpoint)
	}
	if c.snap.src != nil {
		c.snap.delivered(ci.Checkpoint)
	}
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// released is the writer's Release: the store is done with a batch.
func (c *consumer) released(b sink.Batch) {
	c.bodies.released(b)
	if c.images != nil {
		c.images.released(b)
	}
	releaseHuge(b)
}

// storeFailed reports a failed store write, once, as what it is, and stops
// the stream before it can take the failure for a lost connection: nothing
// more is stored or confirmed, and a restart resumes from the checkpoint.
func (c *consumer) storeFailed() {
	c.failOnce.Do(func() {
		c.log.Error("the store failed: stopping; nothing after the last stored transaction is confirmed",
			"checkpoint", audit.FormatLSN(c.writer.Durable()), "err", storeError(c.store, c.writer.Err()))
		if c.stopStream != nil {
			c.stopStream()
		}
	})
}

// publishAnchors publishes the chain head when the writer asks: on a
// goroutine of its own, so that a syslog server or anchor file that hangs
// never holds up the store's commits.
func (c *consumer) publishAnchors(anchors *anchor.Publisher, store *sink.Store) {
	defer close(c.anchorDone)
	for range c.anchorQ {
		publishHead(anchors, store, "chain head")
	}
}

func (c *consumer) close() {
	close(c.anchorQ)
	<-c.anchorDone
}

// Handle implements replication.Consumer.
func (c *consumer) Handle(ctx context.Context, walStart uint64, data []byte) error {
	c.msgStart = walStart
	err := c.dec.Decode(ctx, walStart, data, c)
	if errors.Is(err, decoder.ErrUnknownMessage) {
		return fmt.Errorf("%w: %v", replication.ErrSkippable, err)
	}
	if err == nil && data[0] == 'R' {
		// A table's description, before its first change: its secret
		// columns are decided now (and profile auto may settle).
		return c.enrich.relation(ctx, c.tx, data)
	}
	return err
}

// Position implements replication.Consumer: the durable position, and
// whether anything received is not durable yet. The stream asks at least
// once per status interval: between transactions, session signals are
// applied then and their state submitted.
func (c *consumer) Position() (uint64, bool) {
	if !c.dec.InTransaction() && c.enrich.signals() {
		if recs := c.enrich.state(); len(recs) > 0 {
			if err := c.writer.Submit(context.Background(), sink.Batch{State: recs}); err != nil && c.writer.Err() != nil {
				c.storeFailed()
			}
		}
	}
	return c.writer.Durable(), c.dec.InTransaction() || c.writer.Pending() > 0
}

// AdvanceIdle implements replication.Consumer.
func (c *consumer) AdvanceIdle(lsn uint64) {
	if err := c.writer.Submit(context.Background(), sink.Batch{Checkpoint: lsn}); err != nil {
		if c.writer.Err() != nil {
			c.storeFailed()
			return
		}
		c.log.Error("cannot store idle checkpoint", "err", err)
	}
}

// Notify implements replication.Consumer.
func (c *consumer) Notify() <-chan struct{} { return c.notify }

// Reset implements replication.Consumer.
func (c *consumer) Reset(ctx context.Context) (uint64, error) {
	c.dec.Reset()
	c.batch = sink.Batch{}
	c.bodies.dropped()
	clear(c.txEvents) // a huge value's decoded copy must not outlive it
	c.txEvents, c.txBytes = c.txEvents[:0], 0
	c.enrich.reset()
	c.snap.reset()
	c.dropPartial()
	c.images.release() // before waiting for the writer
	if err := c.writer.Flush(ctx); err != nil {
		if c.writer.Err() != nil {
			c.storeFailed()
		}
		return 0, err
	}
	c.images.reset()
	return c.writer.Durable(), nil
}

// Begin implements decoder.Handler: from now on the transaction is lag.
func (c *consumer) Begin(tx *decoder.Tx) error {
	c.enrich.signals() // their state goes with this transaction's batch
	c.tx = tx
	c.txOrdinal = 0
	c.snapActive = c.snap.src != nil && c.snap.src.Active()
	if c.m == nil {
		return nil
	}
	c.m.ServerWALEnd(tx.CommitLSN) // the server has written at least that far
	c.pendMu.Lock()
	c.pending = append(c.pending, pendingTx{first: c.msgStart, commitTime: tx.CommitTime})
	if len(c.pending) == 1 {
		c.m.Pending(c.msgStart, tx.CommitTime)
	}
	c.pendMu.Unlock()
	return nil
}

// Event implements decoder.Handler.
func (c *consumer) Event(tx *decoder.Tx, e *audit.Event) error {
	c.txOrdinal = max(c.txOrdinal, e.Ordinal)
	size := valuesLen(e)
	if len(c.txEvents) >= chunkEvents || (len(c.txEvents) > 0 && c.txBytes+size > chunkBytes) {
		if err := c.flushTx(tx, 0); err != nil {
			return err
		}
	}
	// The record's last image first: a reconstructed before-image is
	// attributed and redacted like one the server sent.
	keep, err := c.images.apply(e)
	if err != nil {
		return fmt.Errorf("record images: %w", err)
	}
	if !keep {
		return nil
	}
	c.enrich.observe(e)
	if err := c.images.record(e); err != nil {
		return fmt.Errorf("record images: %w", err)
	}
	if e.BeforeSource == audit.BeforeReconstructed {
		size = valuesLen(e)
	}
	c.txEvents = append(c.txEvents, e)
	c.txBytes += size
	if e.Op == audit.OpSnapshot {
		return nil // not a change: not in events_total
	}
	if k, n := (tableOp{e.Schema, e.Table, e.Op}), len(c.txCounts); n > 0 && c.txCounts[n-1].k == k {
		c.txCounts[n-1].n++
	} else {
		c.txCounts = append(c.txCounts, tableRun{k, 1})
	}
	return nil
}

// valuesLen is the size of an event's encoded values.
func valuesLen(e *audit.Event) int {
	n := 0
	for _, r := range [...]audit.Row{e.Key, e.Before, e.After} {
		for i := range r {
			n += len(r[i].Value)
		}
	}
	return n
}

// Message implements decoder.Handler: logical messages feed attribution;
// they are not row events.
func (c *consumer) Message(tx *decoder.Tx, m decoder.Message) error {
	if c.snap.marker(m) {
		return nil // hands over a snapshot chunk; not attribution
	}
	if tx != nil {
		c.enrich.message(m)
	}
	return nil
}

// Commit implements decoder.Handler.
func (c *consumer) Commit(tx *decoder.Tx) error {
	marker := len(c.snap.markers) > 0
	chunks, err := c.feedChunks(tx)
	if err != nil {
		return err
	}
	if len(chunks) > 0 {
		// Told once the checkpoint covers them (a replay re-registers).
		c.snap.submitted(tx.EndLSN, chunks)
	}
	c.received(tx, marker)
	c.batch.CommitTime = tx.CommitTime
	if err := c.flushTx(tx, tx.EndLSN); err != nil {
		return err
	}
	c.enrich.endTx()
	return nil
}

// received records the end and the event counts of the transaction whose
// Commit arrived, to be counted once the store has it (countDurable).
func (c *consumer) received(tx *decoder.Tx, marker bool) {
	if c.m == nil {
		return
	}
	c.pendMu.Lock()
	if n := len(c.pending); n > 0 && c.pending[n-1].end == 0 {
		c.pending[n-1].end, c.pending[n-1].runs = tx.EndLSN, len(c.txCounts)
		c.pending[n-1].marker = marker
		c.pendRuns = append(c.pendRuns, c.txCounts...)
	}
	c.pendMu.Unlock()
	c.txCounts = c.txCounts[:0]
}

// countDurable, on the writer goroutine after a store commit, counts the
// events and transactions that the durable checkpoint now covers and
// reports the oldest transaction still waiting to the lag metrics.
func (c *consumer) countDurable(checkpoint uint64) {
	txs := 0
	c.pendMu.Lock()
	for len(c.pending) > 0 && c.pending[0].end != 0 && c.pending[0].end <= checkpoint {
		for _, r := range c.pendRuns[:c.pending[0].runs] {
			c.durCounts[r.k] += r.n
		}
		c.pendRuns = c.pendRuns[c.pending[0].runs:]
		if !c.pending[0].marker {
			txs++
		}
		c.pending = c.pending[1:]
	}
	c.publishPending()
	c.pendMu.Unlock()
	for k, n := range c.durCounts {
		c.m.AddEvents(k.schema, k.table, k.op.String(), n)
		delete(c.durCounts, k)
	}
	c.m.AddTransactions(txs)
}

// dropPartial forgets the transaction being received when the connection
// broke: it will be received again, and counted then.
func (c *consumer) dropPartial() {
	c.txCounts = c.txCounts[:0]
	if c.m == nil {
		return
	}
	c.pendMu.Lock()
	if n := len(c.pending); n > 0 && c.pending[n-1].end == 0 {
		c.pending = c.pending[:n-1]
	}
	c.publishPending()
	c.pendMu.Unlock()
}

// publishPending reports the oldest pending transaction; pendMu is held.
func (c *consumer) publishPending() {
	if len(c.pending) == 0 {
		c.m.Pending(0, time.Time{})
		return
	}
	c.m.Pending(c.pending[0].first, c.pending[0].commitTime)
}

// flushTx attributes and encodes the events of tx received so far and
// hands them, with the state they changed, to the store. checkpoint is the
// transaction's end LSN at its commit, 0 for a chunk of a huge transaction.
func (c *consumer) flushTx(tx *decoder.Tx, checkpoint uint64) error {
	c.enrich.attribute(tx, c.txEvents)
	if checkpoint != 0 {
		c.enrich.committed(tx)
	}
	huge := false
	// Only a chunk whose values reach hugeEvent can hold a huge event; the
	// events of the others are not measured again.
	mayBeHuge := c.txBytes >= hugeEvent
	c.batch.Events = slices.Grow(c.batch.Events, len(c.txEvents))
	for i, e := range c.txEvents {
		var body []byte
		n := 0
		if mayBeHuge {
			n = valuesLen(e) // after redaction, which can shrink it
		}
		if n >= hugeEvent {
			// Hand the garbage (the message the value came in, the previous
			// huge event) back first, then make the record in one exactly
			// sized buffer: no copy by growing, none to make room for the seal.
			huge = true
			debug.FreeOSMemory()
			body = e.AppendBody(make([]byte, 0, audit.SealedLen(n+64<<10)))
			c.txEvents[i] = nil // its decoded values are garbage now
		} else {
			body = c.bodies.encode(e) // with room for the store to seal it in place
		}
		terms := c.terms.of(e) // what the store indexes the event by, from the event rather than its record
		c.batch.Events = append(c.batch.Events, sink.Encoded{Key: e.StoreKey(), Body: body, Snapshot: e.Op == audit.OpSnapshot, Terms: terms})
	}
	clear(c.txEvents)
	c.txEvents, c.txBytes = c.txEvents[:0], 0
	c.batch.State = c.enrich.state()
	if checkpoint != 0 {
		// A chunk's progress is stored with its rows and the checkpoint.
		c.batch.State = append(c.batch.State, c.snap.state...)
		c.snap.state = nil
	}
	if huge {
		// The decoded values go back before the store copies the record
		// into its pages (and the record and the pages in releaseHuge).
		debug.FreeOSMemory()
	}
	if err := c.submit(checkpoint); err != nil {
		return err
	}
	if checkpoint != 0 {
		// At the commit nothing keeps the decoder's events any more: the
		// batch holds their records and terms, made from memory of its
		// own; attribution and the images copy what they keep. (A chunk of
		// a huge transaction is flushed while the decoder hands over the
		// next event: not then.)
		c.dec.Recycle()
	}
	return nil
}

// releaseHuge is the writer's Release: once a huge record is stored, its
// body and the store's pages for it are garbage; hand them back at once,
// before the next huge value arrives. (The writer's group still points at
// the body until Release returns: the reference is dropped here.)
func releaseHuge(b sink.Batch) {
	huge := false
	for i := range b.Events {
		if len(b.Events[i].Body) >= hugeEvent {
			b.Events[i].Body, huge = nil, true
		}
	}
	if huge {
		debug.FreeOSMemory()
	}
}

func (c *consumer) submit(checkpoint uint64) error {
	c.batch.Checkpoint = checkpoint
	c.batch.Images = c.images.take()
	if err := c.writer.Submit(context.Background(), c.batch); err != nil {
		if c.writer.Err() != nil {
			c.storeFailed()
		}
		c.bodies.dropped()
		return err
	}
	c.bodies.submitted(&c.batch)
	c.batch = sink.Batch{Events: make([]sink.Encoded, 0, min(2*len(c.batch.Events)+8, chunkEvents))}
	return nil
}
