package main

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestStatTicksCountsFromTheLastParenthesis(t *testing.T) {
	// A command may hold spaces and ')': fields 14 and 15 are utime, stime.
	line := "4242 (postgres: walsender) x) S 1 4242 4242 0 -1 4194560 1193 0 0 0 157 43 0 0 20 0 1 0 5318 226 2 18446744073709551615\n"
	got, err := statTicks(line)
	if err != nil || got != 200 {
		t.Fatalf("statTicks = %d, %v; want 157+43 = 200", got, err)
	}
	for _, bad := range []string{"", "4242 (x) S 1 2 3", "4242 (x) S 1 4242 4242 0 -1 4194560 1193 0 0 0 u 43 0"} {
		if _, err := statTicks(bad); err == nil {
			t.Errorf("statTicks(%q) accepted", bad)
		}
	}
}

func TestProcessCPUGrowsWithWork(t *testing.T) {
	before, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU (about a second at most) until the kernel has counted a
	// few ticks of it.
	x, after := 0, before
	for round := 0; round < 100 && after < before+5*clockTick; round++ {
		for i := 0; i < 1e7; i++ {
			x += i
		}
		if after, err = processCPU(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	if after < before+5*clockTick {
		t.Errorf("CPU went from %v to %v while this test computed %d", before, after, x)
	}
	if _, err := processCPU(1 << 30); err == nil {
		t.Error("a pid that does not exist has a CPU time")
	}
}

func TestServerProcsKeepTheLastReadingOfEach(t *testing.T) {
	w := serverProcs{}
	w.sample(os.Getpid())
	w.sample(0)                // no walsender yet: ignored
	w[1<<30] = 3 * time.Second // one that has gone: its last reading counts
	w.sampleAll()
	if len(w) != 2 || w[1<<30] != 3*time.Second || w.total() < 3*time.Second {
		t.Fatalf("serverProcs = %v, total %v", w, w.total())
	}
}

func TestSpreadMedianAndRange(t *testing.T) {
	for _, c := range []struct {
		s    spread
		want string
	}{
		{spread{3, 1, 2}, "2.0 (1.0 to 3.0)"},
		{spread{4, 1, 3, 2}, "2.5 (1.0 to 4.0)"},
		{spread{7}, "7.0"},
		{nil, "–"},
	} {
		if got := c.s.format("%.1f"); got != c.want {
			t.Errorf("%v.format = %q, want %q", c.s, got, c.want)
		}
	}
}

func TestParseIdentities(t *testing.T) {
	for in, want := range map[string][]string{"full": {"full"}, "default": {"default"}, "both": {"full", "default"}} {
		if got, err := parseIdentities(in); err != nil || !slices.Equal(got, want) {
			t.Errorf("parseIdentities(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "FULL", "index", "full,default"} {
		if _, err := parseIdentities(bad); err == nil || !strings.Contains(err.Error(), "--identity") {
			t.Errorf("parseIdentities(%q) = %v; want an error naming --identity", bad, err)
		}
	}
}

// The last lines of pg_waldump --stats (PostgreSQL 15).
const waldumpStats = `WAL statistics between 0/1500A88 and 0/1586588:
Type                                           N      (%)          Record size      (%)             FPI size      (%)        Combined size      (%)
----                                           -      ---          -----------      ---             --------      ---        -------------      ---
XLOG                                           4 (  0.08)                  242 (  0.07)                  176 (  0.09)                  418 (  0.08)
Heap                                        3014 ( 58.59)               197078 ( 56.64)                50820 ( 26.37)               247898 ( 45.85)
                                        --------                      --------                      --------                      --------
Total                                       5144                        347924 [64.35%]               192748 [35.65%]               540672 [100%]
`

func TestWaldumpFPIBytesReadsTheTotalLine(t *testing.T) {
	if got, err := waldumpFPIBytes(waldumpStats); err != nil || got != 192748 {
		t.Fatalf("waldumpFPIBytes = %d, %v; want 192748", got, err)
	}
	if _, err := waldumpFPIBytes(strings.Split(waldumpStats, "Total")[0]); err == nil {
		t.Error("stats without a Total line accepted")
	}
	w := walSpan{Bytes: 1000, FPIBytes: 300}.add(walSpan{Bytes: 50, FPIBytes: 0})
	if w != (walSpan{1050, 300}) || w.withoutImages() != 750 {
		t.Errorf("walSpan sum = %+v, without images %d", w, w.withoutImages())
	}
}

func TestSnapshotDoneFromMetrics(t *testing.T) {
	const head = `# HELP cdcaudit_snapshot_rows_total Rows stored as snapshot records.
# TYPE cdcaudit_snapshot_rows_total counter
cdcaudit_snapshot_rows_total 1.2e+07
# HELP cdcaudit_snapshot_tables Tables by snapshot state.
# TYPE cdcaudit_snapshot_tables gauge
`
	for _, c := range []struct {
		tables      string
		done, known bool
	}{
		{"", false, false}, // a cdcaudit without snapshots, or not started yet
		{"cdcaudit_snapshot_tables{state=\"pending\"} 1\ncdcaudit_snapshot_tables{state=\"done\"} 0\n", false, true},
		{"cdcaudit_snapshot_tables{state=\"copying\"} 1\ncdcaudit_snapshot_tables{state=\"done\"} 2\n", false, true},
		{"cdcaudit_snapshot_tables{state=\"pending\"} 1\ncdcaudit_snapshot_tables{state=\"done\"} 2\n", false, true},
		{"cdcaudit_snapshot_tables{state=\"copying\"} 0\ncdcaudit_snapshot_tables{state=\"done\"} 3\ncdcaudit_snapshot_tables{state=\"pending\"} 0\n", true, true},
	} {
		text := head + c.tables
		if c.tables == "" {
			text = "# TYPE go_goroutines gauge\ngo_goroutines 12\n"
		}
		m, err := parseMetrics(strings.NewReader(text))
		if err != nil {
			t.Fatalf("parseMetrics: %v\n%s", err, text)
		}
		if done, known := snapshotDone(m); done != c.done || known != c.known {
			t.Errorf("snapshotDone = %v, %v; want %v, %v for\n%s", done, known, c.done, c.known, c.tables)
		}
		if c.known && m.get("cdcaudit_snapshot_rows_total") != 12e6 {
			t.Errorf("rows = %v; want 12e6", m.get("cdcaudit_snapshot_rows_total"))
		}
	}
	if _, err := parseMetrics(strings.NewReader("cdcaudit_snapshot_tables{state=\"done} 1\n")); err == nil {
		t.Error("an unterminated label value was accepted")
	}
	if got := series("m", "b", "2", "a", `x"y`); got != `m{a="x\"y",b="2"}` {
		t.Errorf("series = %s", got)
	}
}

func TestIdentityFiguresAndRatios(t *testing.T) {
	o := options{rows: 1000, pgbenchTx: 100, identities: []string{"full", "default"}}
	run := func(fullWall, defaultWall time.Duration) runResult {
		ir := func(updates int64, wall time.Duration) identityRun {
			d := drain{wall: wall, cpu: 20 * time.Millisecond, walsenderCPU: 4 * time.Millisecond}
			return identityRun{wal: workloadWAL{inserts: walSpan{Bytes: 250000}, updates: walSpan{Bytes: updates, FPIBytes: 1000}},
				drains: []drain{{}, d, d, {}}}
		}
		return runResult{
			identities: map[string]identityRun{"full": ir(450000, fullWall), "default": ir(330000, defaultWall)},
			pgbenchWAL: map[string]walSpan{"full": {Bytes: 70000, FPIBytes: 10000}, "default": {Bytes: 58000, FPIBytes: 10000}},
		}
	}
	results := []runResult{run(time.Second, 2*time.Second), run(time.Second, time.Second), run(2*time.Second, time.Second)}
	fig := map[string]identityFigure{}
	for _, f := range identityFigures(o) {
		fig[f.name] = f
	}
	for name, want := range map[string][2]float64{
		"  WAL per update, bytes":                          {450, 330},
		"  WAL per update without page images, bytes":      {449, 329},
		"  WAL per change, bytes":                          {350, 290},
		"  WAL per transaction without page images, bytes": {600, 480},
		consumers[1].name + ": changes/s":                  {2000, 1000},
		"  both, µs/change":                                {12, 12},
	} {
		f, ok := fig[name]
		if !ok {
			t.Errorf("no figure %q", name)
			continue
		}
		full, _ := f.of(results[0], "full")
		def, _ := f.of(results[0], "default")
		if full != want[0] || def != want[1] {
			t.Errorf("%s: FULL %v, DEFAULT %v; want %v", name, full, def, want)
		}
	}
	// Ratios are paired within each run: 0.5, 1, 2 → median 1.
	rate := pairedRatios(results, fig[consumers[1].name+": changes/s"].of, "default", "full")
	if got := rate.format("%.2f"); got != "1.00 (0.50 to 2.00)" {
		t.Errorf("DEFAULT / FULL changes/s = %s", got)
	}
	// A run that measured one identity only has no ratio.
	results = append(results, runResult{identities: map[string]identityRun{"full": results[0].identities["full"]}})
	if n := len(pairedRatios(results, fig[consumers[1].name+": changes/s"].of, "default", "full")); n != 3 {
		t.Errorf("%d ratios from 3 paired runs", n)
	}
	// Nothing against something is no ratio.
	zero := func(r runResult, id string) (float64, bool) { return map[string]float64{"full": 16040}[id], true }
	if n := len(pairedRatios(results, zero, "default", "full")) + len(pairedRatios(results, zero, "full", "default")); n != 0 {
		t.Errorf("%d ratios with a 0", n)
	}
	if got := formatSaving(spread{0.8, 0.75, 0.9}); got != "20.0 (10.0 to 25.0)" {
		t.Errorf("formatSaving = %s", got)
	}
}

func TestHelpHasFlag(t *testing.T) {
	help := "Usage: cdcaudit run [flags]\n\nthe --snapshot of every table\nFlags:\n  --snapshot-tables globs\n        which tables\n  --slot name\n  --keep\n"
	for name, want := range map[string]bool{"slot": true, "keep": true, "snapshot-tables": true, "snapshot": false, "sl": false} {
		if got := helpHasFlag(help, name); got != want {
			t.Errorf("helpHasFlag(%q) = %v, want %v", name, got, want)
		}
	}
	if !helpHasFlag(help+"  --snapshot mode\n", "snapshot") {
		t.Error("--snapshot not found once listed")
	}
}

// pgbench 15's report, abridged.
const pgbenchReport = `pgbench (15.8)
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 10
query mode: simple
number of clients: 2
number of threads: 2
duration: 30 s
number of transactions actually processed: 41523
number of failed transactions: 0 (0.000%)
latency average = 1.445 ms
initial connection time = 4.391 ms
tps = 1384.254119 (without initial connection time)
`

func TestParsePgbench(t *testing.T) {
	tps, txs, err := parsePgbench(pgbenchReport)
	if err != nil || tps != 1384.254119 || txs != 41523 {
		t.Fatalf("parsePgbench = %v, %v, %v", tps, txs, err)
	}
	if _, _, err := parsePgbench(strings.Replace(pgbenchReport, "tps = ", "tps: ", 1)); err == nil {
		t.Error("a report without its tps line was accepted")
	}
}

func TestStatusFieldAndPairedRatios(t *testing.T) {
	status := "Name:\tcdcaudit\nVmHWM:\t  251904 kB\nVmRSS:\t  200000 kB\nRssAnon:\t   92160 kB\nRssFile:\t  107840 kB\n"
	if got := statusField(status, "VmHWM"); got != 251904 {
		t.Errorf("VmHWM = %d", got)
	}
	if got := statusField(status, "RssAnon"); got != 92160 {
		t.Errorf("RssAnon = %d", got)
	}
	if got := statusField(status, "RssShmem"); got != 0 {
		t.Errorf("a missing field = %d", got)
	}
	// Within each run: 90/100, 100/100 (a run without a denominator has no ratio).
	got := spread{90, 100, 5}.pairedWith(spread{100, 100, 0})
	if got.format("%.2f") != "0.95 (0.90 to 1.00)" {
		t.Errorf("pairedWith = %v", got)
	}
}

// sampled makes samples every 100 ms of events and each sink's delivered
// count, from functions of the sample's time.
func sampled(n int, events, pg, kafka func(at time.Duration) float64) []sinkSample {
	var s []sinkSample
	for i := range n {
		at := time.Duration(i) * 100 * time.Millisecond
		s = append(s, sinkSample{at: at, events: events(at),
			delivered: map[string]float64{"postgres": pg(at), "kafka": kafka(at)}})
	}
	return s
}

// rate is a counter growing at perSec from start, up to top.
func rate(start time.Duration, perSec, top float64) func(time.Duration) float64 {
	return func(at time.Duration) float64 {
		return max(0, min(top, (at-start).Seconds()*perSec))
	}
}

func TestIngestFlowRatesAndCatchUp(t *testing.T) {
	// 1000 changes: stored at 1000/s from 0.05 s (the first sample that
	// sees an event is at 0.1 s), postgres at 500/s (done at 2.05 s, 1 s
	// after ingest), kafka as fast as ingest.
	s := sampled(40, rate(50*time.Millisecond, 1000, 1000), rate(50*time.Millisecond, 500, 1001), rate(50*time.Millisecond, 1000, 1001))
	ingest, flows, err := ingestFlow(s, 1000)
	if err != nil {
		t.Fatal(err)
	}
	near := func(name string, got, want float64) {
		t.Helper()
		if got < want*0.99 || got > want*1.01 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	near("ingest", ingest, 1000)
	near("postgres over the window", flows["postgres"].WindowRate, 500)
	near("postgres until caught up", flows["postgres"].CaughtRate, 500)
	near("postgres catch-up", flows["postgres"].CatchUpSecs, 1)
	near("kafka until caught up", flows["kafka"].CaughtRate, 1000)
	if flows["kafka"].CatchUpSecs > 0.001 {
		t.Errorf("kafka caught up %v s after ingest, want 0", flows["kafka"].CatchUpSecs)
	}
	// A sink that never got there is an error, not a rate.
	stuck := sampled(40, rate(0, 1000, 1000), rate(0, 100, 1001), rate(0, 1000, 1001))
	if _, _, err := ingestFlow(stuck, 1000); err == nil || !strings.Contains(err.Error(), "postgres") {
		t.Errorf("a sink that did not deliver everything: %v", err)
	}
	if _, _, err := ingestFlow(sampled(5, rate(0, 0, 0), rate(0, 0, 0), rate(0, 0, 0)), 1000); err == nil {
		t.Error("no event stored, yet a rate")
	}
}

func TestBacklogRatesCountFromTheFirstDelivery(t *testing.T) {
	// Nothing for 1 s (the daemon starting), then 2000/s and 4000/s.
	s := sampled(40, rate(0, 0, 0), rate(time.Second, 2000, 4001), rate(time.Second, 4000, 4001))
	got, err := backlogRates(s, 4000)
	if err != nil {
		t.Fatal(err)
	}
	if got["postgres"] < 1980 || got["postgres"] > 2020 || got["kafka"] < 3960 || got["kafka"] > 4040 {
		t.Errorf("backlog rates %v, want postgres 2000 and kafka 4000", got)
	}
}

func TestMetricSumAddsEveryLabelSet(t *testing.T) {
	m, err := parseMetrics(strings.NewReader("cdcaudit_events_total{op=\"insert\",schema=\"public\",table=\"t\"} 3\n" +
		"cdcaudit_events_total{op=\"update\",schema=\"public\",table=\"t\"} 4\ncdcaudit_events_total_other 100\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.sum("cdcaudit_events_total"); got != 7 {
		t.Errorf("sum = %v, want 7", got)
	}
}

// A daemon labels every series with its source: the bench names series
// without it (one source per daemon), so a sink's counter is found.
func TestParseMetricsDropsTheSource(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(`# TYPE cdcaudit_sink_delivered_records_total counter
cdcaudit_sink_delivered_records_total{sink="kafka",source="bench"} 7
cdcaudit_sink_delivered_records_total{sink="postgres",source="bench"} 5
# TYPE cdcaudit_transactions_total counter
cdcaudit_transactions_total{source="bench"} 3
`))
	if err != nil {
		t.Fatal(err)
	}
	if k, p, tx := m.get("cdcaudit_sink_delivered_records_total", "sink", "kafka"), m.get("cdcaudit_sink_delivered_records_total", "sink", "postgres"), m.get("cdcaudit_transactions_total"); k != 7 || p != 5 || tx != 3 {
		t.Errorf("kafka %v, postgres %v, transactions %v; want 7, 5, 3", k, p, tx)
	}
}
