package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
)

func TestFeedPrintCountsAndWaits(t *testing.T) {
	var b bytes.Buffer
	f := newFeed(&b, newLineFormat(false, 120).format)
	go func() {
		time.Sleep(50 * time.Millisecond)
		for i, xid := range []uint32{10, 10, 11} {
			f.print(&audit.Event{CommitLSN: uint64(xid) * 100, Ordinal: uint32(i + 1), XID: xid, CommitTime: time.Now(),
				Schema: "public", Table: "t", Op: audit.OpTruncate})
		}
	}()
	if !f.waitXID(11, 5*time.Second) {
		t.Fatal("waitXID(11) timed out")
	}
	if f.waitXID(12, 100*time.Millisecond) {
		t.Fatal("waitXID(12) returned true")
	}
	if ev, tx := f.counts(); ev != 3 || tx != 2 {
		t.Errorf("counts: %d events, %d transactions", ev, tx)
	}
	if n := strings.Count(b.String(), "\n"); n != 3 {
		t.Errorf("%d lines printed", n)
	}
}
