package sessions

import (
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/profile"
)

// BenchmarkSessionsObserveOther is the cost on every event of a table the
// profile does not name: the bulk of the stream.
func BenchmarkSessionsObserveOther(b *testing.B) {
	tr, err := New(profile.Odoo(), Options{PresentTables: []string{devicesT}})
	if err != nil {
		b.Fatal(err)
	}
	e := &audit.Event{CommitTime: t0, Schema: "public", Table: "sale_order", Op: audit.OpUpdate,
		After: row("id", 42, "state", "sale", "write_uid", 6, "write_date", t0)}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e.CommitTime = t0.Add(time.Duration(i) * time.Millisecond)
		tr.Observe(e)
	}
}

// BenchmarkSessionsObserveDeviceLog is an Odoo 18 device row refreshing a
// session.
func BenchmarkSessionsObserveDeviceLog(b *testing.B) {
	tr, err := New(profile.Odoo(), Options{PresentTables: []string{devicesT}})
	if err != nil {
		b.Fatal(err)
	}
	r := deviceRow18(sid42("bb"), 6, "10.0.0.5", "windows", "chrome", "computer", t0, t0)
	e := &audit.Event{CommitTime: t0, Schema: "public", Table: "res_device_log", Op: audit.OpInsert, After: r}
	b.ReportAllocs()
	for b.Loop() {
		tr.Observe(e)
	}
}
