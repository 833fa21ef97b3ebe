package decoder

import (
	"context"
	"testing"

	"github.com/cdcaudit/cdcaudit/audit"
)

// A sale_order-like table: 15 columns of typical ERP values.
var erpCols = []col{
	{"id", oidInt4, true}, {"company_id", oidInt4, true}, {"partner_id", oidInt4, true},
	{"name", oidVarchar, true}, {"state", oidVarchar, true}, {"date_order", oidTimestamp, true},
	{"amount_untaxed", oidNumeric, true}, {"amount_tax", oidNumeric, true}, {"amount_total", oidNumeric, true},
	{"currency_id", oidInt4, true}, {"note", oidText, true}, {"invoiced", oidBool, true},
	{"create_uid", oidInt4, true}, {"write_uid", oidInt4, true}, {"write_date", oidTimestamp, true},
}

var (
	erpOld = []val{txt("42"), txt("1"), txt("7"), txt("S00042"), txt("draft"), txt("2026-11-23 13:30:00"),
		txt("100.00"), txt("20.00"), txt("120.00"), txt("2"), txt("Deliver to the back door, ask for \"Bob\"."),
		txt("f"), txt("2"), txt("2"), txt("2026-11-23 13:30:00.123456")}
	erpNew = []val{txt("42"), txt("1"), txt("7"), txt("S00042"), txt("sale"), txt("2026-11-23 13:30:00"),
		txt("100.00"), txt("20.00"), txt("120.00"), txt("2"), txt("Deliver to the back door, ask for \"Bob\"."),
		txt("f"), txt("2"), txt("6"), txt("2026-11-23 13:34:33.559831")}
)

type discard struct{ last *audit.Event }

func (*discard) Begin(*Tx) error                     { return nil }
func (*discard) Commit(*Tx) error                    { return nil }
func (*discard) Message(*Tx, Message) error          { return nil }
func (h *discard) Event(_ *Tx, e *audit.Event) error { h.last = e; return nil }

func erpDecoder(tb testing.TB) (*Decoder, *discard) {
	d := New("odoo", &resolver{pk: map[uint32][]string{1: {"id"}}})
	h := &discard{}
	feed(tb, d, h, 1, mRelation(1, "public", "sale_order", 'f', erpCols...), mBegin(0x10, commitTime, 1))
	return d, h
}

func benchDecode(b *testing.B, msg []byte, seal bool) {
	d, h := erpDecoder(b)
	ctx := context.Background()
	var body, rec []byte
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Decode(ctx, 0x20, msg, h); err != nil {
			b.Fatal(err)
		}
		if seal {
			body = h.last.AppendBody(body[:0])
			rec, _ = audit.Seal(rec[:0], body, audit.Genesis)
		}
	}
}

func BenchmarkDecodeUpdate(b *testing.B) { benchDecode(b, mUpdate(1, 'O', erpOld, erpNew), false) }
func BenchmarkDecodeInsert(b *testing.B) { benchDecode(b, mInsert(1, erpNew...), false) }

// With the canonical encoding and sealing (SHA-256) of the record.
func BenchmarkDecodeUpdateSealed(b *testing.B) { benchDecode(b, mUpdate(1, 'O', erpOld, erpNew), true) }
func BenchmarkDecodeInsertSealed(b *testing.B) { benchDecode(b, mInsert(1, erpNew...), true) }

// Per event: nothing. The Event, the value arena, the rows and Changed are
// carved from chunks of many events (AllocsPerRun rounds down).
func TestAllocsPerEvent(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	d, h := erpDecoder(t)
	for _, msg := range [][]byte{mUpdate(1, 'O', erpOld, erpNew), mInsert(1, erpNew...), mDelete(1, 'O', erpOld...)} {
		n := testing.AllocsPerRun(100, func() {
			if err := d.Decode(context.Background(), 0x20, msg, h); err != nil {
				t.Fatal(err)
			}
		})
		if n > 0 {
			t.Errorf("%c: %v allocations per event", msg[0], n)
		}
	}
	checkShape(t, h.last, shape{Op: audit.OpDelete, Table: "public.sale_order", Key: `{"id":42}`,
		Before: rowJSON(h.last.Before), After: "null", Changed: "[]"})
}
