// Package snapshot copies audited tables into the trail as "snapshot"
// records: every row as it was at one moment, so the trail knows records
// that no change has touched since capture began.
//
// Tables are read in chunks in key order (COPY of a SELECT … ORDER BY key
// LIMIT n, text format), each value converted exactly as the stream's
// decoder converts pgoutput text. A chunk is handed to the stream by a
// marker: it is registered under a random id, then
// pg_logical_emit_message(true, 'cdcaudit.snapshot', id) is committed; the
// pipeline, when the stream delivers that transaction, takes the chunk and
// stores its rows as records of the marker transaction, with the chunk's
// progress, in one batch. So a chunk lands at a definite place in the
// stream: after every change its read saw, and the changes it did not see
// (its Visibility tells which) are reconciled by the images.
//
// The initial snapshot reads every chunk in the snapshot the replication
// slot exported when it was created (SET TRANSACTION SNAPSHOT): snapshot
// and stream then meet exactly. The exporting replication connection stays
// idle meanwhile, and each chunk imports its snapshot in a short
// transaction of its own, so the ERP's tables are never locked for longer
// than one chunk's read. After a restart, and for tables asked for later,
// each chunk is read in a REPEATABLE READ transaction of its own.
package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/decoder"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
)

// MarkerPrefix is the prefix of the logical messages that hand a chunk to
// the stream. It is not the attribution prefix "cdcaudit".
const MarkerPrefix = "cdcaudit.snapshot"

// StateBucket is the store's state bucket of snapshot progress.
const StateBucket = "snapshot"

// Chunk limits: a chunk is stored as ONE batch with its progress, and at
// most inFlight chunks wait for the stream at a time.
const (
	maxChunkRows  = 2000
	maxChunkBytes = 4 << 20
	inFlight      = 4
)

// progressEvery is how often a progress line is logged at most.
const progressEvery = 10 * time.Second

// Observer receives the snapshot's figures (metrics.Metrics).
type Observer interface {
	SnapshotRows(n int)
	SnapshotTables(pending, copying, done int)
	SnapshotRemaining(rows int64, eta time.Duration)
}

// Config is what a Snapshotter needs.
type Config struct {
	DSN         string
	Publication string
	// Initial: snapshot the published tables matching Tables (every one
	// when empty) on a fresh start. Otherwise only Always.
	Initial bool
	Tables  []string
	// Always are tables ("schema.table") loaded on a fresh start whatever
	// the mode: the application's users, models and sessions.
	Always   []string
	Logger   *slog.Logger
	Observer Observer // may be nil
	// Store writes state records durably, in order with the stream's
	// batches (the pipeline's writer).
	Store func(ctx context.Context, recs []sink.StateRecord) error
}

// Row is one row read: the stream's key columns and the whole row.
type Row struct {
	Key, After audit.Row
	// JSONNull lists the columns holding a json or jsonb null: encoded
	// like SQL NULL, they are not one (nil when there is none).
	JSONNull []int
}

// Chunk is one read of one table, waiting to be stored.
type Chunk struct {
	ID            string
	Schema, Table string
	Columns       []Column
	Rows          []Row
	ReadAt        *audit.Visibility
	// State is the table's progress once this chunk is stored: store it in
	// the same batch as the rows.
	State []sink.StateRecord

	job  *job
	last []string
	done bool
}

// Done reports whether the chunk ends its table's snapshot.
func (c *Chunk) Done() bool { return c.done }

// progress is a table's stored progress.
type progress struct {
	Last []string `json:"last"` // key (or ctid) text of the last row stored; null: none yet
	Rows int64    `json:"rows"`
	Done bool     `json:"done"`
}

// plan records that the snapshot of a store was planned (once).
type plan struct {
	Mode   string    `json:"mode"`
	Tables int       `json:"tables"`
	At     time.Time `json:"at"`
}

const planKey = "plan"

func tableKey(qualified string) string { return "table:" + qualified }

// job is one table to copy.
type job struct {
	name      string // schema.table
	progress         // as stored, then as delivered
	copying   bool
	estimate  int64
	requested bool // by Request: read chunk by chunk, never in the exported snapshot
}

// Snapshotter copies tables and hands their chunks to the stream.
type Snapshotter struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	jobs     []*job
	chunks   map[string]*Chunk // registered, not yet delivered
	requests chan []string
	slots    chan struct{} // one per chunk in flight
	started  time.Time     // of this run's copying
	copied   int64         // rows delivered in this run
	lastLog  time.Time
	complete bool // logged "snapshot complete" for the current jobs

	conn *pgx.Conn // reads the tables
	// The slot's exported snapshot, kept while the planned tables are
	// copied: each chunk imports it in a transaction of its own, so no lock
	// on the ERP's tables is held between chunks (a TRUNCATE or ALTER TABLE
	// of the application waits for one chunk, never for the whole copy).
	exported *replication.Exported
	txVis    *audit.Visibility // the exported snapshot's visibility
	markQ    chan *Chunk       // chunks whose markers are to be committed
	markErr  error             // the first marker that failed, until copyPending starts afresh
}

// New returns a Snapshotter; Start it, then Run it.
func New(cfg Config) *Snapshotter {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Snapshotter{cfg: cfg, log: cfg.Logger, chunks: make(map[string]*Chunk),
		requests: make(chan []string, 8), slots: make(chan struct{}, inFlight), markQ: make(chan *Chunk, inFlight)}
}

// LoadFunc reads a state bucket (sink.Store.LoadState).
type LoadFunc func(bucket string, fn func(k, v []byte) error) error

// Start reads the stored progress and, on a store never snapshotted, plans
// the snapshot: on a fresh start (the slot was just created, or the store
// holds nothing) the configured tables, and in any case the Always tables.
// With the snapshot the slot exported (nil: none), it opens the
// transaction that imports it and then releases it. Run does the copying.
func (s *Snapshotter) Start(ctx context.Context, load LoadFunc, fresh bool, exported *replication.Exported) (err error) {
	defer func() {
		if err != nil || s.exported != exported {
			exported.Release() // not (or no longer) needed
		}
	}()
	planned := false
	err = load(StateBucket, func(k, v []byte) error {
		key := string(k)
		if key == planKey {
			planned = true
			return nil
		}
		name, ok := strings.CutPrefix(key, "table:")
		if !ok {
			return nil
		}
		j := &job{name: name}
		if err := json.Unmarshal(v, &j.progress); err != nil {
			return fmt.Errorf("snapshot: progress of %s: %w", name, err)
		}
		s.jobs = append(s.jobs, j)
		return nil
	})
	if err != nil {
		return err
	}
	if s.conn, err = s.connect(ctx); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if planned {
		if exported != nil {
			s.log.Info("snapshot: this store was snapshotted before: the slot's exported snapshot is not used")
		}
		return nil
	}
	if exported != nil {
		// Imported once now, so that a snapshot that cannot be imported
		// fails the start rather than the first chunk.
		tx, err := importSnapshot(ctx, s.conn, exported.Name)
		if err != nil {
			return err
		}
		tx.Rollback(context.Background())
		s.exported = exported
	}
	var names []string
	mode := "profile" // the application's users, models and sessions only
	if s.cfg.Initial && fresh {
		mode = ModeInitial
		published, err := publishedTables(ctx, s.conn, s.cfg.Publication)
		if err != nil {
			return err
		}
		for _, t := range published {
			if len(s.cfg.Tables) == 0 || matchAny(s.cfg.Tables, t) {
				names = append(names, t)
			}
		}
	}
	for _, t := range s.cfg.Always {
		var exists bool
		if err := s.conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", t).Scan(&exists); err != nil {
			return fmt.Errorf("snapshot: looking up %s: %w", t, err)
		}
		if exists && !slices.Contains(names, t) {
			names = append(names, t)
		}
	}
	recs := []sink.StateRecord{{Bucket: StateBucket, Key: planKey, Value: mustJSON(plan{Mode: mode, Tables: len(names), At: time.Now().UTC()})}}
	for _, n := range names {
		j := &job{name: n}
		s.jobs = append(s.jobs, j)
		recs = append(recs, sink.StateRecord{Bucket: StateBucket, Key: tableKey(n), Value: mustJSON(j.progress)})
	}
	if err := s.cfg.Store(ctx, recs); err != nil {
		return fmt.Errorf("snapshot: storing the plan: %w", err)
	}
	s.log.Info("snapshot planned", "mode", mode, "tables", len(names), "exported_snapshot", s.exported != nil)
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func (s *Snapshotter) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(s.cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	cfg.RuntimeParams["application_name"] = "cdcaudit snapshot"
	cfg.RuntimeParams["standard_conforming_strings"] = "on"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("snapshot: connect: %w", err)
	}
	return conn, nil
}

func (s *Snapshotter) close() {
	s.dropExported()
	if s.conn != nil {
		s.conn.Close(context.Background())
		s.conn = nil
	}
}

// dropExported lets the slot's exported snapshot go (its connection closes).
func (s *Snapshotter) dropExported() {
	s.exported.Release()
	s.exported, s.txVis = nil, nil
}

func importSnapshot(ctx context.Context, conn *pgx.Conn, name string) (pgx.Tx, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("snapshot: begin: %w", err)
	}
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+literal(name)); err != nil {
		tx.Rollback(context.Background())
		return nil, fmt.Errorf("snapshot: importing the slot's snapshot %s: %w", name, err)
	}
	return tx, nil
}

// Run copies the planned tables not done yet, then the tables asked for
// by Request, until ctx ends. A failed read is retried (each chunk then in
// a transaction of its own) from the last chunk delivered.
func (s *Snapshotter) Run(ctx context.Context) {
	defer s.close()
	s.mu.Lock()
	s.started = time.Now()
	s.mu.Unlock()
	s.estimate(ctx)
	go s.sendMarkers(ctx)
	delay := time.Second
	for ctx.Err() == nil {
		err := s.copyPending(ctx)
		if err == nil {
			s.dropExported()
			select {
			case <-ctx.Done():
			case <-s.requests:
			}
			delay = time.Second
			continue
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Error("snapshot: reading failed; retrying from the last chunk stored", "err", err, "in", delay)
		s.close() // a broken transaction, connection: start afresh, chunk by chunk
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Minute)
	}
}

// copyPending copies every job not done.
func (s *Snapshotter) copyPending(ctx context.Context) error {
	for {
		if err := s.drain(ctx); err != nil {
			return err
		}
		// Nothing in flight: a failed marker is behind us.
		s.mu.Lock()
		err := s.markErr
		s.markErr = nil
		s.mu.Unlock()
		if err != nil {
			return err
		}
		j := s.next(false)
		if j == nil && s.exported != nil {
			// The planned tables are done: the exported snapshot has served.
			// (A table asked for later may not even exist in it.)
			s.dropExported()
		}
		if j == nil {
			j = s.next(true)
		}
		if j == nil {
			return nil
		}
		if err := s.copyTable(ctx, j); err != nil {
			return err
		}
	}
}

// next marks the first job not done (of the planned ones, or any) as
// being copied and returns it; nil when there is none.
func (s *Snapshotter) next(requested bool) *job {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		if !j.Done && (requested || !j.requested) {
			j.copying = true
			s.observe()
			return j
		}
	}
	return nil
}

// drain waits until no chunk is in flight: a table is (re)started from
// its stored progress only when that is all there is.
func (s *Snapshotter) drain(ctx context.Context) error {
	for i := 0; i < inFlight; i++ {
		if err := s.acquire(ctx); err != nil {
			for ; i > 0; i-- {
				<-s.slots
			}
			return err
		}
	}
	for i := 0; i < inFlight; i++ {
		<-s.slots
	}
	return nil
}

// acquire takes a slot for a chunk in flight, waiting for the stream to
// deliver an earlier one. It warns when the stream takes long.
func (s *Snapshotter) acquire(ctx context.Context) error {
	warn := time.NewTimer(time.Minute)
	defer warn.Stop()
	for {
		select {
		case s.slots <- struct{}{}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-warn.C:
			s.log.Warn("snapshot: the stream has not delivered a chunk for a minute; waiting (is the stream connected?)")
			warn.Reset(time.Minute)
		}
	}
}

func (s *Snapshotter) ensureConn(ctx context.Context) error {
	var err error
	if s.conn == nil {
		s.conn, err = s.connect(ctx)
	}
	return err
}

// copyTable reads j from its stored progress to its end, handing every
// chunk to the stream.
func (s *Snapshotter) copyTable(ctx context.Context, j *job) error {
	if err := s.ensureConn(ctx); err != nil {
		return err
	}
	t, ok, err := describe(ctx, s.conn, j.name)
	if err != nil {
		return err
	}
	if !ok {
		s.log.Warn("snapshot: table does not exist (any more): skipped", "table", j.name)
		return s.hand(ctx, &Chunk{Schema: t.Schema, Table: t.Name, job: j, last: j.Last, done: true}, j.Rows)
	}
	if j.Last == nil {
		s.log.Debug("snapshot: copying table", "table", j.name, "estimated_rows", t.Estimate, "key", keyNames(&t))
	} else {
		s.log.Info("snapshot: resuming table", "table", j.name, "rows_stored", j.Rows)
	}
	last, rows, limit := j.Last, j.Rows, maxChunkRows
	for {
		ch, cut, err := s.read(ctx, &t, last, limit)
		if err != nil {
			return err
		}
		ch.job = j
		rows += int64(len(ch.Rows))
		if err := s.hand(ctx, ch, rows); err != nil {
			return err
		}
		if ch.done {
			return nil
		}
		last = ch.last
		if cut {
			limit = max(1, len(ch.Rows))
		} else {
			limit = min(maxChunkRows, 2*limit)
		}
	}
}

func keyNames(t *table) string {
	if len(t.Key) == 0 {
		return "ctid (no primary key or replica identity index)"
	}
	var names []string
	for _, k := range t.Key {
		names = append(names, t.Columns[k].Name)
	}
	return strings.Join(names, ",")
}

// hand registers a chunk under a random id and queues its marker; rows is
// the table's row count once it is stored.
func (s *Snapshotter) hand(ctx context.Context, ch *Chunk, rows int64) error {
	if err := s.acquire(ctx); err != nil {
		return err
	}
	var id [16]byte
	rand.Read(id[:])
	ch.ID = hex.EncodeToString(id[:])
	ch.State = []sink.StateRecord{{Bucket: StateBucket, Key: tableKey(ch.job.name),
		Value: mustJSON(progress{Last: ch.last, Rows: rows, Done: ch.done})}}
	s.mu.Lock()
	s.chunks[ch.ID] = ch
	err := s.markErr
	s.mu.Unlock()
	if err != nil {
		s.forget(ch)
		return err
	}
	select {
	case s.markQ <- ch:
		return nil
	case <-ctx.Done():
		s.forget(ch)
		return ctx.Err()
	}
}

// forget drops a chunk whose marker was not committed.
func (s *Snapshotter) forget(ch *Chunk) {
	s.mu.Lock()
	delete(s.chunks, ch.ID)
	s.mu.Unlock()
	<-s.slots
}

// sendMarkers commits the markers of the chunks handed over, in order, on
// a connection of its own: the next chunk is read meanwhile. After a
// failure every chunk is forgotten until copyPending starts afresh.
func (s *Snapshotter) sendMarkers(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for {
		var ch *Chunk
		select {
		case <-ctx.Done():
			return
		case ch = <-s.markQ:
		}
		s.mu.Lock()
		failed := s.markErr != nil
		s.mu.Unlock()
		var err error
		if !failed {
			if conn == nil {
				conn, err = s.connect(ctx)
			}
			if err == nil {
				_, err = conn.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2)", MarkerPrefix, ch.ID)
			}
			if err == nil {
				continue
			}
			if conn != nil {
				conn.Close(context.Background())
				conn = nil
			}
			s.mu.Lock()
			s.markErr = fmt.Errorf("snapshot: committing the marker of a chunk of %s: %w", ch.job.name, err)
			s.mu.Unlock()
		}
		s.forget(ch)
	}
}

// read reads one chunk of t after last: in the exported snapshot's
// transaction while it lasts, else in a REPEATABLE READ transaction of its
// own. cut: rows were left out to keep the chunk under maxChunkBytes.
func (s *Snapshotter) read(ctx context.Context, t *table, last []string, limit int) (ch *Chunk, cut bool, err error) {
	// A transaction per chunk, ended before the chunk waits for the stream:
	// its lock on the table lasts one read.
	var tx pgx.Tx
	if s.exported != nil {
		tx, err = importSnapshot(ctx, s.conn, s.exported.Name)
	} else if tx, err = s.conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}); err != nil {
		err = fmt.Errorf("snapshot: begin: %w", err)
	}
	if err != nil {
		return nil, false, err
	}
	defer tx.Rollback(context.Background()) // read only: nothing to keep
	vis := s.txVis                          // the exported snapshot's is the same for every chunk
	if s.exported == nil || vis == nil {
		var snap string
		if err := tx.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&snap); err != nil {
			return nil, false, fmt.Errorf("snapshot: reading the transaction's snapshot: %w", err)
		}
		if vis, err = parseVisibility(snap); err != nil {
			return nil, false, err
		}
		if s.exported != nil {
			s.txVis = vis
		}
	}
	ch = &Chunk{Schema: t.Schema, Table: t.Name, Columns: t.Columns, ReadAt: vis, last: last}
	r := rowReader{t: t, ch: ch}
	w := &lineWriter{fn: r.line}
	if _, err := s.conn.PgConn().CopyTo(ctx, w, chunkQuery(t, last, limit)); err != nil {
		return nil, false, fmt.Errorf("snapshot: reading %s: %w", t.qualified(), err)
	}
	if r.err != nil {
		return nil, false, fmt.Errorf("snapshot: reading %s: %w", t.qualified(), r.err)
	}
	ch.done = r.seen < limit
	if r.kept < r.seen {
		// The rest comes again in the next chunk.
		ch.done, cut = false, true
	}
	if r.kept > 0 {
		ch.last = r.lastKeyText()
	}
	return ch, cut, nil
}

// rowReader converts COPY lines into rows of a chunk.
type rowReader struct {
	t       *table
	ch      *Chunk
	fields  [][]byte
	scratch []byte
	bytes   int
	seen    int  // rows COPY sent
	kept    int  // rows in the chunk
	full    bool // the chunk is as big as it may be: further rows are left out
	err     error

	spans             []int
	keyText, lastKey  []byte   // unescaped key values of this row, of the last row kept
	keyEnds, lastEnds [][2]int // where each key column's text is in them
}

// lastKeyText returns the last kept row's key text, in key order.
func (r *rowReader) lastKeyText() []string {
	out := make([]string, len(r.lastEnds))
	for j, e := range r.lastEnds {
		out[j] = string(r.lastKey[e[0]:e[1]])
	}
	return out
}

func (r *rowReader) line(line []byte) error {
	r.seen++
	if r.full || r.err != nil {
		return nil
	}
	t := r.t
	r.fields = splitFields(line, r.fields)
	vals := r.fields
	var ctid []byte
	if len(t.Key) == 0 {
		if len(vals) == 0 {
			r.err = errors.New("COPY sent an empty row")
			return nil
		}
		ctid, vals = vals[0], vals[1:]
	}
	if len(vals) != len(t.Columns) {
		r.err = fmt.Errorf("COPY sent %d columns, the table has %d", len(vals), len(t.Columns))
		return nil
	}
	size := len(line) + 6*len(vals)
	if r.kept > 0 && r.bytes+size > maxChunkBytes {
		r.full = true
		return nil
	}
	// One arena per row, as the decoder does: values are capped slices.
	arena := make([]byte, 0, size)
	after := make(audit.Row, len(vals), len(vals)+len(t.Key))
	spans := slices.Grow(r.spans[:0], len(vals)+1)[:len(vals)+1]
	r.spans = spans
	// The key's (or ctid's) text of this row: the last row's is where the
	// next chunk starts.
	r.keyText = append(r.keyText[:0], ctid...)
	r.keyEnds = slices.Grow(r.keyEnds[:0], max(len(t.Key), 1))[:max(len(t.Key), 1)]
	r.keyEnds[0] = [2]int{0, len(ctid)}
	var jsonNull []int
	for i, raw := range vals {
		null := isNull(raw)
		if !null {
			var err error
			if r.scratch, err = unescape(r.scratch[:0], raw); err != nil {
				r.err = err
				return nil
			}
		}
		arena = decoder.AppendText(arena, t.Columns[i].Type, r.scratch, null)
		if !null && audit.IsNull(arena[spans[i]:]) {
			jsonNull = append(jsonNull, i)
		}
		spans[i+1] = len(arena)
		if j := slices.Index(t.Key, i); j >= 0 {
			lo := len(r.keyText)
			r.keyText = append(r.keyText, r.scratch...)
			r.keyEnds[j] = [2]int{lo, len(r.keyText)}
		}
	}
	for i := range vals {
		after[i] = audit.Column{Name: t.Columns[i].Name, Value: arena[spans[i]:spans[i+1]:spans[i+1]]}
	}
	n := len(after)
	row := Row{After: after[:n:n], JSONNull: jsonNull}
	if len(t.Key) > 0 {
		for _, k := range t.Key { // in the slice's spare room
			after = append(after, after[k])
		}
		row.Key = after[n:]
	}
	r.lastKey, r.keyText = r.keyText, r.lastKey // keep this row's, reuse the other
	r.lastEnds, r.keyEnds = r.keyEnds, r.lastEnds
	r.ch.Rows = append(r.ch.Rows, row)
	r.kept++
	r.bytes += len(arena)
	return nil
}

// parseVisibility parses pg_current_snapshot()'s text: xmin:xmax:xip,…
func parseVisibility(s string) (*audit.Visibility, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("snapshot: malformed pg_current_snapshot() %q", s)
	}
	var v audit.Visibility
	var err1, err2 error
	v.Xmin, err1 = strconv.ParseUint(parts[0], 10, 64)
	v.Xmax, err2 = strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil || v.Xmin > v.Xmax {
		return nil, fmt.Errorf("snapshot: malformed pg_current_snapshot() %q", s)
	}
	if parts[2] != "" {
		for _, x := range strings.Split(parts[2], ",") {
			xid, err := strconv.ParseUint(x, 10, 64)
			if err != nil || xid < v.Xmin || xid >= v.Xmax {
				return nil, fmt.Errorf("snapshot: malformed pg_current_snapshot() %q", s)
			}
			v.Xip = append(v.Xip, xid)
		}
	}
	return &v, nil
}

// Take returns the chunk registered under id, or nil for an id this
// snapshotter does not know (a marker replayed after a restart, or forged).
// It stays registered until Delivered: a stream that reconnects before
// the chunk is stored delivers its marker again.
func (s *Snapshotter) Take(id string) *Chunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chunks[id]
}

// Active reports whether some table's snapshot is not complete.
func (s *Snapshotter) Active() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		if !j.Done {
			return true
		}
	}
	return false
}

// Copying reports whether a table's snapshot is planned or under way (its
// rows may still come): e.g. deletes of its records are worth remembering.
func (s *Snapshotter) Copying(schema, table string) bool {
	name := schema + "." + table
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		if j.name == name {
			return !j.Done
		}
	}
	return false
}

// Delivered tells that the chunk's rows and progress are durable.
func (s *Snapshotter) Delivered(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.chunks[id]
	if ch == nil {
		return
	}
	delete(s.chunks, id)
	j := ch.job
	j.Rows += int64(len(ch.Rows))
	j.Last, j.Done = ch.last, ch.done
	j.copying = !ch.done
	s.copied += int64(len(ch.Rows))
	if s.cfg.Observer != nil {
		s.cfg.Observer.SnapshotRows(len(ch.Rows))
	}
	s.observe()
	<-s.slots
	st := s.status()
	switch {
	case st.Done == st.Tables && !s.complete:
		s.complete = true
		s.log.Info("snapshot complete", "tables", st.Tables, "rows", st.Rows,
			"seconds", time.Since(s.started).Round(time.Millisecond).Seconds())
	case st.Done < st.Tables && time.Since(s.lastLog) >= progressEvery:
		s.lastLog = time.Now()
		s.log.Info("snapshot progress", "rows", st.Rows, "tables_done", st.Done, "tables", st.Tables,
			"table", j.name, "remaining_rows", st.Remaining, "eta", time.Duration(st.ETASeconds*float64(time.Second)).Round(time.Second))
	}
}

// Status is the snapshot's progress.
type Status struct {
	Tables     int      `json:"tables"`
	Done       int      `json:"done"`
	Copying    []string `json:"copying"`
	Rows       int64    `json:"rows"`           // stored as snapshot records, all tables
	Remaining  int64    `json:"remaining_rows"` // estimate (pg_class.reltuples)
	ETASeconds float64  `json:"eta_seconds"`    // 0 when unknown or done
	Pending    []string `json:"pending"`
	RowsPerSec float64  `json:"rows_per_second"` // of this run
}

// Status returns the snapshot's progress.
func (s *Snapshotter) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status()
}

func (s *Snapshotter) status() Status {
	st := Status{Tables: len(s.jobs), Copying: []string{}, Pending: []string{}}
	for _, j := range s.jobs {
		st.Rows += j.Rows
		switch {
		case j.Done:
			st.Done++
			continue
		case j.copying:
			st.Copying = append(st.Copying, j.name)
		default:
			st.Pending = append(st.Pending, j.name)
		}
		st.Remaining += max(j.estimate-j.Rows, 0)
	}
	if secs := time.Since(s.started).Seconds(); s.copied > 0 && secs > 0 {
		st.RowsPerSec = float64(s.copied) / secs
		st.ETASeconds = float64(st.Remaining) / st.RowsPerSec
	}
	return st
}

// observe publishes the figures; s.mu is held.
func (s *Snapshotter) observe() {
	if s.cfg.Observer == nil {
		return
	}
	st := s.status()
	s.cfg.Observer.SnapshotTables(len(st.Pending), len(st.Copying), st.Done)
	s.cfg.Observer.SnapshotRemaining(st.Remaining, time.Duration(st.ETASeconds*float64(time.Second)))
}

// estimate reads the size estimates of the tables to copy.
func (s *Snapshotter) estimate(ctx context.Context) {
	s.mu.Lock()
	var names []string
	for _, j := range s.jobs {
		if !j.Done {
			names = append(names, j.name)
		}
	}
	s.mu.Unlock()
	if len(names) == 0 || s.ensureConn(ctx) != nil {
		return
	}
	est, err := estimates(ctx, s.conn, names)
	if err != nil {
		s.log.Warn("snapshot: cannot read the tables' size estimates: no ETA", "err", err)
		return
	}
	s.mu.Lock()
	for _, j := range s.jobs {
		j.estimate = est[j.name]
	}
	s.observe()
	s.mu.Unlock()
}

// Request asks for a new snapshot of the published tables matching globs
// (each chunk in a transaction of its own), and returns their names.
// Tables being copied are left to finish.
func (s *Snapshotter) Request(ctx context.Context, globs []string) ([]string, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	published, err := publishedTables(ctx, conn, s.cfg.Publication)
	if err != nil {
		return nil, err
	}
	var names []string
	var recs []sink.StateRecord
	s.mu.Lock()
	for _, t := range published {
		if !matchAny(globs, t) {
			continue
		}
		i := slices.IndexFunc(s.jobs, func(j *job) bool { return j.name == t })
		if i >= 0 && !s.jobs[i].Done {
			continue // planned or being copied: it will be complete
		}
		names = append(names, t)
		recs = append(recs, sink.StateRecord{Bucket: StateBucket, Key: tableKey(t), Value: mustJSON(progress{})})
	}
	s.mu.Unlock()
	if len(names) == 0 {
		return nil, nil
	}
	if err := s.cfg.Store(ctx, recs); err != nil {
		return nil, fmt.Errorf("snapshot: storing the request: %w", err)
	}
	est, _ := estimates(ctx, conn, names) // without them, no ETA
	s.mu.Lock()
	for _, t := range names {
		j := &job{name: t, estimate: est[t], requested: true}
		if i := slices.IndexFunc(s.jobs, func(x *job) bool { return x.name == t }); i >= 0 {
			s.jobs[i] = j
		} else {
			s.jobs = append(s.jobs, j)
		}
	}
	s.complete = false
	s.observe()
	s.mu.Unlock()
	select {
	case s.requests <- names:
	default: // Run is busy and will look again
	}
	s.log.Info("snapshot requested", "tables", names)
	return names, nil
}

// estimates reads pg_class.reltuples of tables ("schema.table").
func estimates(ctx context.Context, conn *pgx.Conn, names []string) (map[string]int64, error) {
	rows, err := conn.Query(ctx, `SELECT n, coalesce(greatest(c.reltuples, 0), 0)::int8 FROM unnest($1::text[]) n
		LEFT JOIN pg_class c ON c.oid = to_regclass(format('%I.%I', split_part(n, '.', 1), substr(n, length(split_part(n, '.', 1)) + 2)))`, names)
	if err != nil {
		return nil, err
	}
	est := map[string]int64{}
	var n string
	var v int64
	_, err = pgx.ForEachRow(rows, []any{&n, &v}, func() error { est[n] = v; return nil })
	return est, err
}
