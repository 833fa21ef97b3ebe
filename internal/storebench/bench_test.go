package storebench

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/history"
	"github.com/cdcaudit/cdcaudit/sink"
)

// The benchmarks ask four questions of stores of 100k and (with
// STOREBENCH_10M=1) 10M events, each through the store's indexes (Query)
// and through a full scan (Scan with the cheapest filter that answers it:
// a byte test, then a parse of what passes), and report the latency
// percentiles of many different questions of each kind:
//
//	go test ./internal/storebench -run '^$' -bench . -benchtime 200x
//	STOREBENCH_10M=1 go test ./internal/storebench -run '^$' -bench . -benchtime 200x -timeout 3h
//
// A scan runs a few times only (once at 10M), whatever -benchtime says
// (scanBudget).
// Stores are built once per size and seed and kept under STOREBENCH_DIR
// (default $TMPDIR/cdcaudit-storebench): delete them to rebuild.

const benchSeed = 1

// scanBudget bounds the full scans of one benchmark of a store of n
// events: a scan of 10M events takes minutes, and its latency hardly
// varies.
func scanBudget(n int) int { return max(1, min(3, 1_000_000/n)) }

func sizes() []int {
	if os.Getenv("STOREBENCH_10M") != "" {
		return []int{100_000, 10_000_000}
	}
	return []int{100_000}
}

func cacheRoot() string {
	if d := os.Getenv("STOREBENCH_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "cdcaudit-storebench")
}

// question is one kind of question, asked about many different targets.
type question struct {
	name string
	// scan answers target i by a full scan; query through the indexes.
	// Both return how many events the answer holds.
	scan, query func(s *sink.Store, i int) (int, error)
}

func BenchmarkQuestions(b *testing.B) {
	for _, n := range sizes() {
		dir, built, err := Cached(cacheRoot(), Default(n, benchSeed), b.Logf)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("store of %d events: built in %s, %d bytes (%.0f B/event)", built.Events, built.BuildTime.Round(time.Second),
			built.FileSize, float64(built.FileSize)/float64(built.Events))
		s, err := sink.OpenReadOnly(dir)
		if err != nil {
			b.Fatal(err)
		}
		for _, q := range questions(built.Targets) {
			for _, how := range []string{"query", "scan"} {
				ask := q.query
				if how == "scan" {
					ask = q.scan
				}
				if ask == nil {
					continue
				}
				b.Run(fmt.Sprintf("n=%s/%s/%s", short(n), q.name, how), func(b *testing.B) {
					var lat []time.Duration
					events := 0
					for i := 0; b.Loop(); i++ {
						if how == "scan" && i >= scanBudget(n) {
							continue // b.Loop wants its iterations; the budget is spent
						}
						t := time.Now()
						got, err := ask(s, i)
						if err != nil {
							b.Fatal(err)
						}
						lat = append(lat, time.Since(t))
						events += got
					}
					report(b, lat, events)
				})
			}
		}
		s.Close()
	}
}

func short(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// report sets the latency percentiles (and the mean answer size) as the
// benchmark's metrics.
func report(b *testing.B, lat []time.Duration, events int) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := min(int(p*float64(len(lat))), len(lat)-1)
		return float64(lat[i]) / float64(time.Millisecond)
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	// Per question asked: b.Loop's own average would count the scans
	// skipped beyond the budget.
	b.ReportMetric(float64(sum)/float64(len(lat)), "ns/op")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(lat)), "asked")
	b.ReportMetric(float64(events)/float64(len(lat)), "events/answer")
}

// questions are the four questions of the issue, each about targets drawn
// from the trail: a record's history, a user's latest 100 events, a
// session's events, and one table's events of one day. The record's
// history is asked twice: as 'cdcaudit events --record' asks it
// (history.Record: the record followed through key changes, with its
// table's truncates) and as the record index answers it (Query with
// Record).
func questions(tg *Targets) []question {
	rng := rand.New(rand.NewPCG(benchSeed, 99))
	const targets = 500

	var recs []audit.RecordRef
	weights := 0
	for _, t := range tg.TableRecords {
		weights += t.Records
	}
	for len(recs) < targets {
		// A record drawn uniformly among all records created.
		k := rng.IntN(weights)
		for _, t := range tg.TableRecords {
			if k >= t.Records {
				k -= t.Records
				continue
			}
			id := k + 1
			key := audit.RecordKey{{Column: "id", Text: strconv.Itoa(id)}}
			switch {
			case t.PairKey:
				a, b := PairOf(id)
				key = audit.RecordKey{{Column: "order_id", Text: strconv.Itoa(a)}, {Column: "tag_id", Text: strconv.Itoa(b)}}
			case t.TextKey:
				key = audit.RecordKey{{Column: "code", Text: TextKeyOf(id)}}
			}
			recs = append(recs, audit.RecordRef{Schema: t.Schema, Table: t.Table, Key: key})
			break
		}
	}
	users := make([]string, targets)
	for i := range users {
		users[i] = login(rng.IntN(tg.Workload.Users))
	}
	type day struct {
		schema, table string
		from          time.Time
	}
	days := make([]day, targets)
	first := tg.Workload.Start.Truncate(24 * time.Hour)
	ndays := max(int(tg.End.Sub(first)/(24*time.Hour)), 1)
	for i := range days {
		// A busy table (one of the ten busiest) on a day of the trail.
		t := tg.TableRecords[rng.IntN(min(10, len(tg.TableRecords)))]
		days[i] = day{t.Schema, t.Table, first.Add(time.Duration(rng.IntN(ndays)) * 24 * time.Hour)}
	}

	ctx := context.Background()
	count := func(s *sink.Store, q sink.Query) (int, error) {
		n := 0
		_, err := s.Query(ctx, q, func(_, _ []byte) error { n++; return nil })
		return n, err
	}
	scanRecord := func(s *sink.Store, i int) (int, error) {
		r := recs[i%len(recs)]
		table := tableNeedle(r.Schema, r.Table)
		value := audit.AppendString(nil, r.Key[0].Text)
		if _, err := strconv.Atoi(r.Key[0].Text); err == nil {
			value = []byte(r.Key[0].Text)
		}
		n := 0
		err := s.Scan(nil, nil, func(_, record []byte) error {
			if !bytes.Contains(record, table) || !bytes.Contains(record, value) {
				return nil
			}
			ok, err := r.Matches(record)
			if ok {
				n++
			}
			return err
		})
		return n, err
	}
	return []question{
		{name: "record-history", scan: scanRecord,
			query: func(s *sink.Store, i int) (int, error) {
				n := 0
				_, err := history.Record(s, recs[i%len(recs)], func(*history.Event) error { n++; return nil })
				return n, err
			}},
		{name: "record-index",
			query: func(s *sink.Store, i int) (int, error) {
				return count(s, sink.Query{Record: &recs[i%len(recs)], Ops: recordOps})
			}},
		{name: "user-latest-100",
			scan: func(s *sink.Store, i int) (int, error) {
				needle := append(audit.AppendString([]byte(`,"login":`), users[i%len(users)]), ',')
				var last [][]byte // the latest 100, oldest first
				err := s.Scan(nil, nil, func(_, record []byte) error {
					if bytes.Contains(record, needle) {
						if len(last) == 100 {
							last = last[1:]
						}
						last = append(last, bytes.Clone(record))
					}
					return nil
				})
				return len(last), err
			},
			query: func(s *sink.Store, i int) (int, error) {
				return count(s, sink.Query{User: users[i%len(users)], Desc: true, Limit: 100})
			}},
		{name: "session",
			scan: func(s *sink.Store, i int) (int, error) {
				needle := append(audit.AppendString([]byte(`,"session_id":`), tg.Sessions[i%len(tg.Sessions)]), ',')
				n := 0
				err := s.Scan(nil, nil, func(_, record []byte) error {
					if bytes.Contains(record, needle) {
						n++
					}
					return nil
				})
				return n, err
			},
			query: func(s *sink.Store, i int) (int, error) {
				return count(s, sink.Query{Session: tg.Sessions[i%len(tg.Sessions)]})
			}},
		{name: "table-day",
			scan: func(s *sink.Store, i int) (int, error) {
				d := days[i%len(days)]
				table := tableNeedle(d.schema, d.table)
				until := d.from.Add(24 * time.Hour)
				n := 0
				err := s.Scan(nil, nil, func(_, record []byte) error {
					if !bytes.Contains(record, table) {
						return nil
					}
					p, err := audit.ParseRecord(record)
					if err != nil {
						return err
					}
					if p.Schema == d.schema && p.Table == d.table && !p.CommitTime.Before(d.from) && p.CommitTime.Before(until) {
						n++
					}
					return nil
				})
				return n, err
			},
			query: func(s *sink.Store, i int) (int, error) {
				d := days[i%len(days)]
				return count(s, sink.Query{Tables: []string{d.schema + "." + d.table}, Since: d.from, Until: d.from.Add(24 * time.Hour)})
			}},
	}
}

// recordOps are the operations of the events that name a record.
var recordOps = []audit.Op{audit.OpInsert, audit.OpUpdate, audit.OpDelete, audit.OpSnapshot}

// tableNeedle is how a record of the canonical encoding names its table.
func tableNeedle(schema, table string) []byte {
	b := audit.AppendString([]byte(`,"schema":`), schema)
	b = append(b, `,"table":`...)
	return append(audit.AppendString(b, table), ',')
}
