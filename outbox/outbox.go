// Package outbox delivers the audit trail to external sinks (a PostgreSQL
// audit database, Kafka): the store is the outbox. Each sink tails the
// local store with a durable cursor of its own, kept in the store (state
// bucket "outbox", key: the sink's name) and advanced only after the sink
// acknowledged a batch as durable at its destination. Delivery is
// at-least-once: after a crash, or a failed batch, records after the
// cursor are delivered again, and a sink deduplicates on the record's id
// (the audit table's primary key, a Kafka consumer's idempotency key).
//
// The slot's confirmation depends only on the local store: a sink that is
// down never holds WAL on the ERP's server. The store holds the backlog,
// and retention never prunes a record a configured sink has not
// acknowledged (Hold).
package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Bucket is the store's state bucket of the cursors.
const Bucket = "outbox"

// Record is one record of the chain as the store holds it.
type Record struct {
	// Key is the store key (audit.MakeKey of the commit LSN and ordinal):
	// it sorts like ID.
	Key [audit.KeyLen]byte
	// ID is the record's id, the deduplication key.
	ID string
	// JSON is the record exactly as stored and exported (one line, no
	// newline): its hash covers it, so a consumer can verify it.
	JSON []byte
	// Chain is true for a chain record (genesis, gap, slot_lost, cut): not
	// a change of any table, but part of the hash chain. A sink that only
	// wants row events skips them; one that keeps the chain verifiable
	// (the audit table) stores them too.
	Chain bool
	// CommitTime is the record's commit_time.
	CommitTime time.Time
}

// Sink is an external destination. Deliver must return nil only when every
// record of the batch is durable at the destination (a committed
// transaction, a produce acknowledged by all in-sync replicas): the cursor
// then moves past the batch. Any error, or a cancelled ctx, and the same
// records (and maybe more) are delivered again later, so Deliver must be
// idempotent on Record.ID. Batches come in key order, each after the one
// before; Deliver is never called concurrently for one sink.
type Sink interface {
	// Name names the sink in its cursor, logs and metrics: stable, 1 to 64
	// bytes (e.g. "postgres", "kafka").
	Name() string
	Deliver(ctx context.Context, batch []Record) error
}

// Metrics is what a runner reports (metrics.Metrics).
type Metrics interface {
	// SinkDelivered counts records acknowledged by a sink.
	SinkDelivered(sink string, n int)
	// SinkFailed counts a failed delivery attempt.
	SinkFailed(sink string)
	// SinkLag says how far behind the store's head the sink is: records
	// not acknowledged yet, and the age of the oldest of them (0 when
	// caught up).
	SinkLag(sink string, records uint64, seconds float64)
}

// Options tune a runner; the zero values are the defaults.
type Options struct {
	// Batch is the most records read in one read transaction and handed
	// to one Deliver (default 1000).
	Batch int
	// Poll is how often a caught-up runner looks for new records (default
	// 250ms).
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed delivery,
	// doubled at each failure in a row, with jitter (defaults 500ms, 1m).
	MinBackoff, MaxBackoff time.Duration
	// LagEvery is how often the lag in records is counted while behind
	// (a count reads the backlog; default 10s). Caught up, it is 0.
	LagEvery time.Duration
	Metrics  Metrics // may be nil
	Logger   *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Runner tails a store for one sink.
type Runner struct {
	store *sink.Store
	sink  Sink
	name  string
	o     Options
	log   *slog.Logger
}

// New returns the runner of a sink over a store. Its Run is a pipeline
// Source.
func New(store *sink.Store, s Sink, o Options) (*Runner, error) {
	name := s.Name()
	if name == "" || len(name) > 64 {
		return nil, fmt.Errorf("outbox: sink name %q must be 1 to 64 bytes", name)
	}
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.Poll <= 0 {
		o.Poll = 250 * time.Millisecond
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(time.Minute, o.MinBackoff)
	}
	if o.LagEvery <= 0 {
		o.LagEvery = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Runner{store: store, sink: s, name: name, o: o, log: log.With("sink", name)}, nil
}

// Cursor is a sink's position, as stored.
type Cursor struct {
	// After is the id of the last record the sink acknowledged ("": none).
	After string `json:"after"`
	// Delivered counts the records acknowledged since the cursor was made.
	Delivered uint64 `json:"delivered"`
	// At is when it last moved.
	At time.Time `json:"at"`
}

// key returns the store key of After (nil: the start).
func (c Cursor) key() ([]byte, error) {
	if c.After == "" {
		return nil, nil
	}
	lsn, ord, err := audit.ParseID(c.After)
	if err != nil {
		return nil, err
	}
	k := audit.MakeKey(lsn, ord)
	return k[:], nil
}

// LoadCursor reads a sink's cursor from the store (ok false: none yet).
func LoadCursor(store *sink.Store, name string) (c Cursor, ok bool, err error) {
	err = store.LoadState(Bucket, func(k, v []byte) error {
		if string(k) != name {
			return nil
		}
		ok = true
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("outbox: cursor of sink %q: %w", name, err)
		}
		return nil
	})
	return c, ok, err
}

// Hold returns the retention hold (sink.Retention.Hold) of the named
// sinks: every record after the oldest of their durable cursors is kept;
// a sink without a cursor yet holds everything. nil without sinks.
func Hold(store *sink.Store, names []string) func() (after []byte, by string, ok bool) {
	if len(names) == 0 {
		return nil
	}
	return func() ([]byte, string, bool) {
		var min []byte
		by := ""
		for _, n := range names {
			c, ok, err := LoadCursor(store, n)
			if err != nil || !ok {
				return nil, n, true // unreadable or none: hold everything
			}
			k, err := c.key()
			if err != nil || k == nil {
				return nil, n, true
			}
			if min == nil || bytes.Compare(k, min) < 0 {
				min, by = k, n
			}
		}
		return min, by, true
	}
}

// errStopPage ends a page early.
var errStopPage = errors.New("stop")

// Run delivers the store's records to the sink until ctx is cancelled
// (then it returns nil), storing its cursor through state after each
// acknowledged batch. It retries every failure with backoff: a sink's
// failure never stops the stream. It is a pipeline Source.
func (r *Runner) Run(ctx context.Context, state func(context.Context, []sink.StateRecord) error) error {
	cur, _, err := LoadCursor(r.store, r.name)
	if err != nil {
		return err
	}
	after, err := cur.key()
	if err != nil {
		return fmt.Errorf("outbox: sink %s: cursor %q: %w", r.name, cur.After, err)
	}
	r.log.Info("outbox: delivering", "after", cur.After, "delivered", cur.Delivered)
	failures := 0
	var lagCounted time.Time
	var lagRecords uint64
	var countedTo []byte // the last record counted in lagRecords; nil: none
	backoff := func() bool {
		failures++
		if r.o.Metrics != nil {
			r.o.Metrics.SinkFailed(r.name)
		}
		d := r.o.MinBackoff << min(failures-1, 20)
		if d > r.o.MaxBackoff || d <= 0 {
			d = r.o.MaxBackoff
		}
		d = d/2 + rand.N(d/2+1)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	for ctx.Err() == nil {
		batch, err := r.page(ctx, after)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			r.log.Error("outbox: reading the store failed; retrying", "err", err)
			if !backoff() {
				break
			}
			continue
		}
		if len(batch) == 0 {
			failures = 0
			lagRecords, lagCounted, countedTo = 0, time.Time{}, nil
			r.lag(0, 0)
			select {
			case <-ctx.Done():
			case <-time.After(r.o.Poll):
			}
			continue
		}
		// Behind: count the backlog now and then. What was counted
		// before is taken off as it is delivered: only the records
		// appended since are read (reading the whole backlog every time
		// cost a third of a catching-up sink's CPU), unless delivery
		// went past them.
		if now := r.o.Now(); lagCounted.IsZero() || now.Sub(lagCounted) >= r.o.LagEvery {
			from := countedTo
			if from == nil || bytes.Compare(after, from) >= 0 {
				from, lagRecords = after, 0
			}
			n, last := r.count(ctx, from)
			lagRecords, lagCounted = min(lagRecords+n, maxCount), now
			if last != nil {
				countedTo = last
			}
		}
		r.lag(lagRecords, r.o.Now().Sub(batch[0].CommitTime).Seconds())
		if err := r.sink.Deliver(ctx, batch); err != nil {
			if ctx.Err() != nil {
				break
			}
			r.log.Warn("outbox: delivery failed; retrying with backoff", "err", err, "from", batch[0].ID, "records", len(batch), "failures", failures+1)
			if !backoff() {
				break
			}
			continue
		}
		last := batch[len(batch)-1]
		next := Cursor{After: last.ID, Delivered: cur.Delivered + uint64(len(batch)), At: r.o.Now().UTC()}
		v, _ := json.Marshal(next)
		if err := state(ctx, []sink.StateRecord{{Bucket: Bucket, Key: r.name, Value: v}}); err != nil {
			if ctx.Err() != nil {
				break
			}
			// Delivered but not recorded: delivered again (idempotent).
			r.log.Error("outbox: storing the cursor failed; the batch will be delivered again", "err", err)
			if !backoff() {
				break
			}
			continue
		}
		if failures > 0 {
			r.log.Info("outbox: delivering again", "failures", failures)
		}
		failures = 0
		cur, after = next, bytes.Clone(last.Key[:])
		lagRecords -= min(lagRecords, uint64(len(batch)))
		if r.o.Metrics != nil {
			r.o.Metrics.SinkDelivered(r.name, len(batch))
		}
	}
	return nil
}

func (r *Runner) lag(records uint64, seconds float64) {
	if r.o.Metrics != nil {
		r.o.Metrics.SinkLag(r.name, records, max(seconds, 0))
	}
}

// page reads the next batch after the key in one read transaction.
func (r *Runner) page(ctx context.Context, after []byte) ([]Record, error) {
	var out []Record
	err := r.store.Records(ctx, after, r.o.Batch, func(k, v []byte) error {
		rec := Record{ID: keyID(k), JSON: bytes.Clone(v), Chain: sink.IsChainRecord(k)}
		copy(rec.Key[:], k)
		t, err := commitTime(v)
		if err != nil {
			return fmt.Errorf("outbox: record %s: %w", rec.ID, err)
		}
		rec.CommitTime = t
		out = append(out, rec)
		return nil
	})
	return out, err
}

// maxCount bounds a count of the backlog: one read transaction is kept
// short (a long one keeps bbolt from reusing pages). A larger backlog is
// reported as this many.
const maxCount = 1 << 20

// count counts the records after the key, at most maxCount, and returns
// the last one's key (nil when none, or on an error).
func (r *Runner) count(ctx context.Context, after []byte) (n uint64, last []byte) {
	var lastKey []byte
	if err := r.store.Records(ctx, after, maxCount, func(k, _ []byte) error {
		n++
		lastKey = append(lastKey[:0], k...)
		return nil
	}); err != nil {
		return 0, nil
	}
	return n, lastKey
}

func keyID(k []byte) string {
	lsn, ord, _ := audit.SplitKey(k)
	return audit.FormatID(lsn, ord)
}

// commitTime reads a stored record's commit_time (row events and chain
// records both have it).
func commitTime(rec []byte) (time.Time, error) {
	if h, ok := audit.RecordHead(rec); ok && !h.CommitTime.IsZero() {
		return h.CommitTime, nil
	}
	var v struct {
		CommitTime time.Time `json:"commit_time"`
	}
	if err := json.Unmarshal(rec, &v); err != nil {
		return time.Time{}, err
	}
	return v.CommitTime, nil
}
