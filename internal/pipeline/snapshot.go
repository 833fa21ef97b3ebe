package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/backup"
	"github.com/cdcaudit/cdcaudit/decoder"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/sink"
	"github.com/cdcaudit/cdcaudit/snapshot"
)

// chunkSource hands over the chunks of a table snapshot (snapshot.Snapshotter).
type chunkSource interface {
	// Take returns the chunk a marker names, nil for an unknown id (a
	// marker replayed after a restart, or forged).
	Take(id string) *snapshot.Chunk
	// Delivered: the chunk's rows and progress are durable.
	Delivered(id string)
	// Active reports whether some table's snapshot is not complete.
	Active() bool
	// Copying reports whether a table's snapshot is not complete: the
	// image cache keeps its deleted records as tombstones meanwhile.
	Copying(schema, table string) bool
}

// snapshotFeed is the consumer's side of snapshots: the markers of the
// transaction being received, and the chunks stored but not yet durable.
type snapshotFeed struct {
	src     chunkSource
	markers []decoder.Message // of the transaction in progress
	state   []sink.StateRecord

	mu      sync.Mutex
	waiting []delivery // submitted, oldest first
}

type delivery struct {
	end uint64
	ids []string
}

// marker reports whether m hands over a snapshot chunk (and keeps it).
func (f *snapshotFeed) marker(m decoder.Message) bool {
	if m.Prefix != snapshot.MarkerPrefix {
		return false
	}
	if f.src != nil && m.Transactional {
		f.markers = append(f.markers, m)
	}
	return true
}

// feedChunks turns the chunks the transaction's markers name into events
// of that transaction, fed like the stream's own, and returns the ids of
// the chunks fed.
func (c *consumer) feedChunks(tx *decoder.Tx) ([]string, error) {
	f := &c.snap
	if len(f.markers) == 0 {
		return nil, nil
	}
	var ids []string
	for _, m := range f.markers {
		id := string(m.Content)
		ch := f.src.Take(id)
		if ch == nil {
			c.log.Debug("snapshot marker with an unknown id ignored", "id", id, "xid", tx.XID)
			continue
		}
		// Secret columns are decided from the table's columns, as from a
		// Relation, before its first row is redacted.
		cols := make([]profile.Column, len(ch.Columns))
		for i, col := range ch.Columns {
			cols[i] = profile.Column{Name: col.Name, Type: col.Type}
		}
		c.enrich.redact.Relation(ch.Schema, ch.Table, cols)
		// The image cache learns the row's columns and its SQL NULLs from
		// the chunk, as it learns a change's from the decoder.
		shape := &chunkRowShape{names: make([]string, len(ch.Columns))}
		for i, col := range ch.Columns {
			shape.names[i] = col.Name
		}
		decoderShape := c.images.shape
		c.images.shape = shape
		for i := range ch.Rows {
			r := &ch.Rows[i]
			shape.row = r
			c.txOrdinal++
			e := &audit.Event{
				LSN: m.LSN, CommitLSN: tx.CommitLSN, Ordinal: c.txOrdinal, XID: tx.XID, CommitTime: tx.CommitTime,
				Database: c.database, Source: c.source, Schema: ch.Schema, Table: ch.Table, Op: audit.OpSnapshot,
				Key: r.Key, After: r.After, ReadAt: ch.ReadAt, Changed: nothingChanged,
			}
			if err := c.Event(tx, e); err != nil {
				c.images.shape = decoderShape
				return nil, err
			}
		}
		c.images.shape = decoderShape
		if ch.Done() {
			c.snapshotDone(ch.Schema, ch.Table)
		}
		f.state = append(f.state, ch.State...)
		ids = append(ids, id)
	}
	f.markers = f.markers[:0]
	return ids, nil
}

// chunkRowShape describes a snapshot row to the image cache.
type chunkRowShape struct {
	names []string
	row   *snapshot.Row
}

func (s *chunkRowShape) Columns() []string { return s.names }

// FullIdentity is never asked of a snapshot row: it is kept whatever the
// table's identity (its snapshot is in progress).
func (s *chunkRowShape) FullIdentity() bool { return false }

func (s *chunkRowShape) NewNull(i int) bool {
	return i < len(s.row.After) && audit.IsNull(s.row.After[i].Value) && !slices.Contains(s.row.JSONNull, i)
}

// nothingChanged is the changed list of every snapshot row (never written to).
var nothingChanged = []string{}

// snapshotDone: a table's snapshot completes with the transaction being
// received: the image cache sweeps the table's tombstones in the same batch
// (they were kept while c.snap.src.Copying said so).
func (c *consumer) snapshotDone(schema, table string) {
	c.images.sweep(schema, table)
	c.log.Debug("snapshot of a table stored", "table", schema+"."+table)
}

// delivered tells the snapshotter about chunks now durable (writer goroutine).
func (f *snapshotFeed) delivered(checkpoint uint64) {
	f.mu.Lock()
	var done []string
	for len(f.waiting) > 0 && f.waiting[0].end <= checkpoint {
		done = append(done, f.waiting[0].ids...)
		f.waiting = f.waiting[1:]
	}
	f.mu.Unlock()
	for _, id := range done {
		f.src.Delivered(id)
	}
}

func (f *snapshotFeed) submitted(end uint64, ids []string) {
	f.mu.Lock()
	f.waiting = append(f.waiting, delivery{end, ids})
	f.mu.Unlock()
}

func (f *snapshotFeed) reset() {
	f.markers, f.state = f.markers[:0], nil
}

// startSnapshot plans or resumes the tables' snapshot and starts copying
// them beside the stream; stop ends the copy (a restart resumes it).
func startSnapshot(ctx context.Context, cfg Config, store *sink.Store, c *consumer, exported *replication.Exported,
	checkpoint uint64, log *slog.Logger) (s *snapshot.Snapshotter, stop func(), err error) {
	mode := cmp.Or(cfg.Snapshot, snapshot.DefaultMode)
	if err := snapshot.ValidateMode(mode); err != nil {
		return nil, nil, fmt.Errorf("snapshot: %w", err)
	}
	var obs snapshot.Observer
	if cfg.Metrics != nil {
		obs = cfg.Metrics
	}
	s = snapshot.New(snapshot.Config{
		DSN: cfg.Replication.DSN, Publication: cfg.Replication.Publication,
		Initial: mode == snapshot.ModeInitial, Tables: cfg.SnapshotTables, Always: c.enrich.snapshotTables(),
		Logger: log, Observer: obs,
		Store: func(ctx context.Context, recs []sink.StateRecord) error {
			return c.writer.Submit(ctx, sink.Batch{State: recs})
		},
	})
	// Set before anything is stored: the writer's goroutine reads it.
	c.snap.src = s
	// snapActive is decided at each Begin, which the stream sends after the
	// transaction committed: a table whose copy begins later reads its
	// changes, so they need no tombstone.
	c.images.tombstones = func(schema, table string) bool { return c.snapActive && s.Copying(schema, table) }
	// Fresh: the slot was just made (its snapshot exported), or the store
	// holds nothing yet.
	fresh := exported != nil || checkpoint == 0
	if err := s.Start(ctx, store.LoadState, fresh, exported); err != nil {
		return nil, nil, err
	}
	// A snapshot resumed from a previous run may have stored tombstones.
	c.images.sweepStored = !fresh && s.Active()
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(runCtx)
	}()
	return s, func() { cancel(); <-done }, nil
}

// daemonStatus is what `cdcaudit status` shows.
type daemonStatus struct {
	Checkpoint string          `json:"checkpoint"`
	Slot       slotStatus      `json:"slot"`
	Snapshot   snapshot.Status `json:"snapshot"`
}

type slotStatus struct {
	Name           string `json:"name"`
	Error          string `json:"error,omitempty"`
	Exists         bool   `json:"exists"`
	Active         bool   `json:"active"`
	ConfirmedFlush string `json:"confirmed_flush_lsn"`
	WALStatus      string `json:"wal_status"`
	RetainedBytes  int64  `json:"retained_wal_bytes"`
}

// serveControl answers `cdcaudit status` and `cdcaudit snapshot` over the
// data directory's socket.
func serveControl(control *backup.Server, cfg Config, store *sink.Store, snaps *snapshot.Snapshotter, log *slog.Logger) {
	if control == nil {
		return
	}
	for verb, h := range cfg.Control {
		control.Handle(verb, h)
	}
	control.Handle("status", func(string) ([]byte, error) {
		st := daemonStatus{Checkpoint: audit.FormatLSN(store.Checkpoint()), Snapshot: snaps.Status(),
			Slot: slotStatus{Name: cfg.Replication.Slot}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if slot, err := replication.InspectSlot(ctx, cfg.Replication); err != nil {
			st.Slot.Error = err.Error()
		} else {
			st.Slot.Exists, st.Slot.Active, st.Slot.WALStatus, st.Slot.RetainedBytes =
				slot.Exists, slot.Active, slot.WALStatus, slot.RetainedBytes
			st.Slot.ConfirmedFlush = audit.FormatLSN(slot.ConfirmedFlush)
		}
		return json.Marshal(st)
	})
	control.Handle("snapshot", func(arg string) ([]byte, error) {
		var globs []string
		for _, g := range strings.Split(arg, ",") {
			if g = strings.TrimSpace(g); g == "" {
				continue
			}
			if _, err := path.Match(g, ""); err != nil {
				return nil, fmt.Errorf("--table: %q is not a valid glob", g)
			}
			globs = append(globs, g)
		}
		if len(globs) == 0 {
			return nil, errors.New("--table: no table glob given")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		names, err := snaps.Request(ctx, globs)
		if err != nil {
			log.Error("snapshot request failed", "tables", arg, "err", err)
			return nil, err
		}
		return json.Marshal(struct {
			Tables []string `json:"tables"`
		}{append([]string{}, names...)})
	})
}
