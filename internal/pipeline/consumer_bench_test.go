package pipeline

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/decoder"
	"github.com/cdcaudit/cdcaudit/internal/selfusage"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/redact"
	"github.com/cdcaudit/cdcaudit/sink"
)

// The bench workload of scripts/bench.sh, as pgoutput messages: an
// abridged sale_order_line (15 columns, REPLICA IDENTITY FULL), 1000 rows
// per transaction, inserted, then updated.
var benchCols = []struct {
	name string
	typ  uint32
}{
	{"id", 20}, {"order_id", 23}, {"product_id", 23}, {"name", 25}, {"product_uom_qty", 1700},
	{"price_unit", 1700}, {"discount", 1700}, {"price_subtotal", 1700}, {"state", 1043}, {"sequence", 23},
	{"is_downpayment", 16}, {"create_uid", 23}, {"create_date", 1114}, {"write_uid", 23}, {"write_date", 1114},
}

// pgoutput builds protocol-version-1 messages.
type pgoutput struct{ b []byte }

func (m *pgoutput) start(t byte) *pgoutput { m.b = append(m.b[:0], t); return m }
func (m *pgoutput) u8(v byte) *pgoutput    { m.b = append(m.b, v); return m }
func (m *pgoutput) u16(v int) *pgoutput {
	m.b = binary.BigEndian.AppendUint16(m.b, uint16(v))
	return m
}
func (m *pgoutput) u32(v uint32) *pgoutput { m.b = binary.BigEndian.AppendUint32(m.b, v); return m }
func (m *pgoutput) u64(v uint64) *pgoutput { m.b = binary.BigEndian.AppendUint64(m.b, v); return m }
func (m *pgoutput) str(s string) *pgoutput { m.b = append(append(m.b, s...), 0); return m }

// pgEpoch is PostgreSQL's time zero, for commit times.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func (m *pgoutput) relation(oid uint32) []byte {
	m.start('R').u32(oid).str("public").str("sale_order_line").u8('f').u16(len(benchCols))
	for _, c := range benchCols {
		m.u8(1).str(c.name).u32(c.typ).u32(0xFFFFFFFF)
	}
	return m.b
}

func (m *pgoutput) begin(final uint64, at time.Time, xid uint32) []byte {
	return m.start('B').u64(final).u64(uint64(at.Sub(pgEpoch).Microseconds())).u32(xid).b
}

func (m *pgoutput) commit(lsn, end uint64, at time.Time) []byte {
	return m.start('C').u8(0).u64(lsn).u64(end).u64(uint64(at.Sub(pgEpoch).Microseconds())).b
}

// row appends the tuple of row id in state (draft before the update, sale after).
func (m *pgoutput) row(id int, sale bool) *pgoutput {
	g := strconv.Itoa(id)
	state, discount, writeUID := "draft", "0", "2"
	if sale {
		state, discount, writeUID = "sale", "5", "6"
	}
	vals := [...]string{g, strconv.Itoa(id / 10), strconv.Itoa(id % 997), "Product " + g + ` — "Widget", size L`,
		strconv.Itoa(id%50) + ".500", strconv.Itoa(12+id%100) + ".34", discount, "617.00", state, strconv.Itoa(id % 10),
		"f", "2", "2026-12-03 11:30:00.123456", writeUID, "2026-12-03 11:30:00.123456"}
	m.u16(len(vals))
	for _, v := range vals {
		m.u8('t').u32(uint32(len(v)))
		m.b = append(m.b, v...)
	}
	return m
}

type benchKeys struct{}

func (benchKeys) PrimaryKey(context.Context, uint32) ([]string, error) { return []string{"id"}, nil }

// benchConsumer is the consumer Run makes, profile none, without a server:
// messages go to Handle as the stream hands them over.
func benchConsumer(tb testing.TB) *consumer {
	dir := tb.TempDir()
	store, err := sink.Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dec := decoder.New("bench", benchKeys{})
	x := &enricher{store: store, log: log}
	if x.redact, err = redact.New(profile.Odoo().SecretRules(), nil, profile.OdooSecretColumns); err != nil {
		tb.Fatal(err)
	}
	c := newConsumer(dec, store, Config{}, log, nil)
	c.lastAnchor = time.Now() // no anchors: there is no publisher
	c.enrich = x
	if c.images, err = newImageCache(store, dec, nil, dir); err != nil {
		tb.Fatal(err)
	}
	c.images.secret = x.redact.Secret
	c.database = "bench"
	// Before the store closes (cleanups run last first): Close waits for
	// the images' read transaction, and for the writer.
	tb.Cleanup(func() {
		c.images.release()
		c.writer.Close()
		c.close()
	})
	return c
}

// written is what this process has passed to write calls so far.
func written(tb testing.TB) int64 {
	n, ok := selfusage.Written()
	if !ok {
		tb.Skip("no /proc/self/io")
	}
	return n
}

// BenchmarkConsumer runs the bench workload through the consumer (decoder,
// redaction, record images, encoding, the writer and the store, fsyncs
// included): one op is one change. cpu-µs/change counts every goroutine's
// CPU (the writer's too), the figure to set against the walsender's.
func BenchmarkConsumer(b *testing.B) {
	// The bench's transactions, and pgbench's size (its four changes).
	for _, txRows := range []int{1000, 4} {
		b.Run(fmt.Sprintf("tx=%d", txRows), func(b *testing.B) { benchConsumerTx(b, txRows, false) })
	}
	// pgbench's pattern: small transactions updating records spread over a
	// million keys, so what the store keeps per record is written all over
	// its B+trees rather than at their ends.
	b.Run("tx=4/scattered", func(b *testing.B) { benchConsumerTx(b, 4, true) })
}

func benchConsumerTx(b *testing.B, txRows int, scattered bool) {
	c := benchConsumer(b)
	ctx := context.Background()
	var m pgoutput
	lsn := uint64(0x1000000)
	handle := func(data []byte) {
		if err := c.Handle(ctx, lsn, data); err != nil {
			b.Fatal(err)
		}
		lsn += 64 // the messages' WAL positions only need to ascend
	}
	handle(m.relation(16400))
	at := time.Date(2026, 12, 3, 11, 30, 0, 0, time.UTC)
	xid := uint32(1000)
	var final uint64 // the commit LSN of the transaction in progress
	// Inserts of rows 1…n, then updates of the same rows, as the bench.
	next, inserted, updating := 1, 0, false
	changes := 0
	rng := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	cpu0, w0 := selfusage.CPU(), written(b)
	for b.Loop() {
		if changes%txRows == 0 {
			xid++
			at = at.Add(time.Millisecond)
			// The final LSN of the transaction: past every change in it.
			final = lsn + uint64(txRows)*64 + 1024
			handle(m.begin(final, at, xid))
		}
		if scattered {
			id := int(rng.Uint64N(1_000_000)) + 1
			m.start('U').u32(16400).u8('O').row(id, false).u8('N').row(id, true)
		} else if !updating {
			m.start('I').u32(16400).u8('N').row(next, false)
			inserted = next
		} else {
			m.start('U').u32(16400).u8('O').row(next, false).u8('N').row(next, true)
		}
		handle(m.b)
		next++
		changes++
		if changes%txRows == 0 {
			handle(m.commit(final, final+40, at))
			lsn = final + 40
			if !updating && next > 200000 {
				next, updating = 1, true
			} else if updating && next > inserted {
				next, updating = inserted+1, false
			}
		}
	}
	if changes%txRows != 0 {
		handle(m.commit(final, final+40, at))
	}
	if err := c.writer.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	cpu, w := selfusage.CPU()-cpu0, written(b)-w0
	b.ReportMetric(float64(cpu.Microseconds())/float64(changes), "cpu-µs/change")
	b.ReportMetric(float64(w)/float64(changes), "written-B/change")
	if _, _, n := c.store.Head(); n != uint64(changes) {
		b.Fatalf("%d events stored of %d", n, changes)
	}
}
