package kafkasink

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/kafkatest"
	"github.com/cdcaudit/cdcaudit/outbox"
)

// trail makes n chained, stored events (the bytes the store keeps) over
// tables × keys records: inserts first, then updates, a delete now and
// then, and a truncate of the last table at the end. Every third event has
// a user and a session.
func trail(t testing.TB, n int, tables []string, keys int) []outbox.Record {
	t.Helper()
	var prev audit.Hash
	out := make([]outbox.Record, 0, n)
	seen := map[string]bool{}
	base := time.Date(2026, 11, 23, 13, 34, 33, 0, time.UTC)
	for i := range n {
		table := tables[i%len(tables)]
		k := (i / len(tables)) % keys
		rec := table + "/" + strconv.Itoa(k)
		e := audit.Event{
			LSN:        uint64(0x16B3000 + 0x100*i),
			CommitLSN:  uint64(0x16B3080 + 0x100*i),
			Ordinal:    1,
			XID:        uint32(700 + i),
			CommitTime: base.Add(time.Duration(i) * time.Millisecond),
			Database:   "odoo",
			Schema:     "public",
			Table:      table,
			Key:        audit.Row{{Name: "id", Value: []byte(strconv.Itoa(k))}},
			Actor:      audit.Actor{UserVia: "none", SessionVia: "none"},
		}
		row := audit.Row{
			{Name: "id", Value: []byte(strconv.Itoa(k))},
			{Name: "name", Value: []byte(strconv.Quote(fmt.Sprintf("record %d rev %d — ünïcode \"quoted\"", k, i)))},
			{Name: "amount_total", Value: []byte(`"` + strconv.Itoa(100+i) + `.00"`)},
		}
		switch {
		case i == n-1:
			e.Op, e.Key, e.Changed = audit.OpTruncate, nil, []string{}
		case !seen[rec]:
			e.Op, e.After, e.Changed = audit.OpInsert, row, []string{"id", "name", "amount_total"}
			seen[rec] = true
		case i%7 == 0:
			e.Op, e.Before, e.Changed, e.BeforeSource = audit.OpDelete, row, []string{}, audit.BeforeWAL
			seen[rec] = false
		default:
			e.Op, e.Before, e.After, e.Changed, e.BeforeSource = audit.OpUpdate, row, row, []string{"name", "amount_total"}, audit.BeforeWAL
		}
		if e.Op == audit.OpTruncate {
			e.Changed = []string{}
		}
		if i%3 == 0 && e.Op != audit.OpTruncate {
			uid := int64(6 + i%2)
			e.Actor = audit.Actor{UserID: &uid, Login: fmt.Sprintf("user%d@example.com", uid), UserVia: "row_user",
				SessionID: fmt.Sprintf("s%024x", i), SessionVia: "only_active"}
		}
		body := e.AppendBody(nil)
		stored, h := audit.Seal(nil, body, prev)
		prev = h
		out = append(out, outbox.Record{Key: e.StoreKey(), ID: e.ID(), JSON: stored, CommitTime: e.CommitTime})
	}
	return out
}

func topicsOf(tables []string) []string {
	out := make([]string, len(tables))
	for i, tb := range tables {
		out[i] = "cdcaudit.public." + tb
	}
	return out
}

var readAll = kafkatest.ReadAll

func chainOpOf(t testing.TB, rec []byte) string {
	var h struct{ Op string }
	if err := json.Unmarshal(rec, &h); err != nil || h.Op == "" {
		t.Fatalf("chain record %s: op %q, %v", rec, h.Op, err)
	}
	return h.Op
}

var header = kafkatest.Header

// newCluster starts a kfake cluster that creates topics on demand, with
// four partitions per topic.
func perTable(schema, table string) string { return "cdcaudit." + schema + "." + table }

func newCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(4)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// testSource is the source of the tests' sinks unless one is given.
const testSource = "erp_a"

func newSink(t testing.TB, cfg Config) *Sink {
	t.Helper()
	if cfg.Source == "" {
		cfg.Source = testSource
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// checkDelivered checks that got holds every event of want at least once,
// value and key and headers as they must be, and that per Kafka key the
// events read in partition order, less the ids already seen for that key
// (what a consumer does: docs/kafka.md), are that key's events in
// commit order, none missing. It returns the number of duplicates.
func checkDelivered(t testing.TB, want []outbox.Record, got []*kgo.Record, topic func(schema, table string) string) int {
	t.Helper()
	return checkDeliveredFrom(t, testSource, want, got, topic)
}

// checkDeliveredFrom is checkDelivered of source's records in got (a
// consumer tells sources apart by the source header; others are skipped).
func checkDeliveredFrom(t testing.TB, source string, want []outbox.Record, got []*kgo.Record, topic func(schema, table string) string) int {
	t.Helper()
	byID := map[string]*outbox.Record{}
	terms := map[string]audit.Terms{}
	wantPerKey := map[string][]string{}
	for i := range want {
		r := &want[i]
		byID[r.ID] = r
		var k []byte
		if r.Chain {
			k = []byte(source + "/" + ChainSchema + "." + ChainTable)
			terms[r.ID] = audit.Terms{Schema: ChainSchema, Table: ChainTable}
		} else {
			tm, err := audit.ParseTerms(r.JSON)
			if err != nil {
				t.Fatal(err)
			}
			terms[r.ID] = tm
			if k, err = RecordKey(r.JSON, source, tm.Schema, tm.Table); err != nil {
				t.Fatal(err)
			}
		}
		wantPerKey[string(k)] = append(wantPerKey[string(k)], r.ID)
	}
	gotPerKey := map[string][]string{}
	last := map[string]string{}
	seen := map[string]bool{}
	dups := 0
	for _, g := range got {
		if s, _ := header(g, HeaderSource); s != source {
			continue
		}
		id, ok := header(g, HeaderID)
		if !ok {
			t.Fatalf("record at %s/%d@%d without an id header", g.Topic, g.Partition, g.Offset)
		}
		w := byID[id]
		if w == nil {
			t.Fatalf("record %s in Kafka was never delivered", id)
		}
		if string(g.Value) != string(w.JSON) {
			t.Fatalf("record %s: value\n%s\nwant the stored event\n%s", id, g.Value, w.JSON)
		}
		tm := terms[id]
		wantTopic := topic(tm.Schema, tm.Table)
		if g.Topic != wantTopic {
			t.Fatalf("record %s in topic %s, want %s", id, g.Topic, wantTopic)
		}
		k := []byte(source + "/" + ChainSchema + "." + ChainTable)
		if !w.Chain {
			k, _ = RecordKey(w.JSON, source, tm.Schema, tm.Table)
		}
		if string(g.Key) != string(k) {
			t.Fatalf("record %s: key %q, want %q", id, g.Key, k)
		}
		op := tm.Op.String()
		if w.Chain {
			op = chainOpOf(t, w.JSON)
		}
		for name, v := range map[string]string{HeaderOp: op, HeaderTable: tm.Schema + "." + tm.Table,
			HeaderUser: tm.User, HeaderSession: tm.Session} {
			h, ok := header(g, name)
			if h != v || ok != (v != "") {
				t.Fatalf("record %s: header %s = %q (present %v), want %q", id, name, h, ok, v)
			}
		}
		if seen[id] {
			dups++
		}
		seen[id] = true
		if l, ok := last[string(g.Key)]; ok && id <= l {
			continue // a redelivered one: skipped by id
		}
		last[string(g.Key)] = id
		gotPerKey[string(g.Key)] = append(gotPerKey[string(g.Key)], id)
	}
	for k, ids := range wantPerKey {
		if fmt.Sprint(gotPerKey[k]) != fmt.Sprint(ids) {
			t.Fatalf("key %s: read (ids after dedup)\n%v\nwant\n%v", k, gotPerKey[k], ids)
		}
	}
	if len(gotPerKey) != len(wantPerKey) {
		t.Fatalf("%d keys in Kafka, want %d", len(gotPerKey), len(wantPerKey))
	}
	return dups
}
