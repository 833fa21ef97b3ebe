package rules

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/sink"
)

func TestBulkExport(t *testing.T) {
	store, err := sink.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := sink.NewWriter(store, sink.WriterOptions{})
	defer store.Close()
	defer w.Close()
	state := func(ctx context.Context, recs []sink.StateRecord) error {
		if err := w.Submit(ctx, sink.Batch{State: recs}); err != nil {
			return err
		}
		return w.Flush(ctx)
	}
	export := func(at time.Duration, login string, count int) {
		t.Helper()
		c, _ := json.Marshal(count)
		_, err := store.AppendAccess(sink.AccessEntry{Time: t0.Add(at), Action: "export", Result: "ok", Role: "viewer",
			Login: login, Via: "password", Address: "192.0.2.8", Detail: []sink.Field{{Name: "count", Value: c}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	signin := func() {
		if _, err := store.AppendAccess(sink.AccessEntry{Time: t0, Action: "signin", Result: "ok", Login: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	// alice: 6000 + 4001 events within an hour (a hit); bob: 10000 (the
	// threshold, a near miss); carol: 6000, then 6000 two hours later.
	signin()
	export(0, "alice", 6000)
	export(0, "bob", 10000)
	export(time.Minute, "carol", 6000)
	run := func() {
		x := NewExports(DefaultBulkExport, store, store.LoadState, nil)
		x.poll = 10 * time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- x.Run(ctx, state) }()
		// Wait (generously) until the watcher has read the whole log.
		last := uint64(0)
		store.AccessLog(context.Background(), 0, true, 1, func(r sink.AccessRecord) error { last = r.Seq; return nil })
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			var c uint64
			store.LoadState(ExportBucket, func(k, v []byte) error {
				if string(k) == "c" {
					c, _ = strconv.ParseUint(string(v), 10, 64)
				}
				return nil
			})
			if c == last {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	run()
	export(30*time.Minute, "alice", 4001)
	export(2*time.Hour, "carol", 6000)
	run()
	run() // a restart reads on: nothing twice
	var got []alerts.Alert
	store.LoadState(alerts.Bucket, func(k, v []byte) error {
		var a alerts.Alert
		if err := json.Unmarshal(v, &a); err != nil {
			return err
		}
		got = append(got, a)
		return nil
	})
	if len(got) != 1 {
		t.Fatalf("%d alerts, want 1: %+v", len(got), got)
	}
	a := got[0]
	if a.Rule != RuleBulkExport || a.Login != "alice" || a.Detail["count"] != "10001" || a.IP != "192.0.2.8" || !a.Time.Equal(t0.Add(30*time.Minute)) {
		t.Errorf("the hit: %+v", a)
	}
}
