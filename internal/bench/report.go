package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// printReport prints the drains of each identity, their comparison and the
// snapshot's figures.
func printReport(o options, results []runResult, snap *snapshotResult) {
	changes := 2 * o.rows
	for _, id := range o.identities {
		var drains [][]drain
		for _, r := range results {
			drains = append(drains, r.identities[id].drains)
		}
		if len(drains) > 0 {
			fmt.Printf("REPLICA IDENTITY %s\n", strings.ToUpper(id))
			printDrains(drains, changes)
			fmt.Println()
		}
	}
	if len(results) > 0 {
		printIdentities(o, results)
	}
	if snap != nil {
		printSnapshot(snap)
	}
}

// printDrains prints, for each figure, its median over the runs, with min and max.
func printDrains(results [][]drain, changes int) {
	over := func(i int, f func(drain) float64) spread {
		var s spread
		for _, r := range results {
			s = append(s, f(r[i]))
		}
		return s
	}
	// CPU per change is printed as seconds per million changes (the same
	// number as µs per change).
	cell := "%-24s"
	fmt.Printf("median (min to max) of %d run(s), %d changes each\n", len(results), changes)
	fmt.Printf("%-38s "+strings.Repeat(cell, 6)+"%s\n", "", "changes/s", "CPU s/1M changes", "walsender s/1M changes",
		"peak RSS MiB", "peak anon RSS MiB", "written bytes/change", "store bytes/event")
	for i, cons := range consumers {
		store, written := "–", "–"
		if cons.profile != "" {
			store = over(i, func(d drain) float64 { return float64(d.storeBytes) / float64(changes) }).format("%.0f")
			written = over(i, func(d drain) float64 { return float64(d.wchar) / float64(changes) }).format("%.0f")
		}
		fmt.Printf("%-38s "+strings.Repeat(cell, 6)+"%s\n", cons.name,
			over(i, func(d drain) float64 { return float64(changes) / d.wall.Seconds() }).format("%.0f"),
			over(i, func(d drain) float64 { return perChange(d.cpu, changes) }).format("%.2f"),
			over(i, func(d drain) float64 { return perChange(d.walsenderCPU, changes) }).format("%.2f"),
			over(i, func(d drain) float64 { return float64(d.rssKB) / 1024 }).format("%.1f"),
			over(i, func(d drain) float64 { return float64(d.anonKB) / 1024 }).format("%.1f"),
			written, store)
	}
	// CPU per change is steadier than throughput on a busy machine: the
	// ratios of both are printed.
	var plain, odoo, attribution, plainCPU, attributionCPU spread
	for _, r := range results {
		ref := min(r[0].wall, r[3].wall).Seconds()
		plain = append(plain, ref/r[1].wall.Seconds())
		odoo = append(odoo, ref/r[2].wall.Seconds())
		attribution = append(attribution, 100*(r[1].wall.Seconds()/r[2].wall.Seconds()-1))
		refCPU := min(r[0].cpu+r[0].walsenderCPU, r[3].cpu+r[3].walsenderCPU).Seconds()
		plainCPU = append(plainCPU, (r[1].cpu+r[1].walsenderCPU).Seconds()/refCPU)
		attributionCPU = append(attributionCPU, 100*(r[2].cpu.Seconds()/r[1].cpu.Seconds()-1))
	}
	fmt.Printf("\nthroughput, cdcaudit / best pg_recvlogical:                     %s×\n", plain.format("%.2f"))
	fmt.Printf("throughput, cdcaudit --profile odoo / best pg_recvlogical:      %s×\n", odoo.format("%.2f"))
	fmt.Printf("CPU/change with walsender, cdcaudit / lower pg_recvlogical:     %s×\n", plainCPU.format("%.2f"))
	fmt.Printf("attribution (--profile odoo), against cdcaudit without it:     throughput %s%%, CPU per change %s%%\n",
		attribution.format("%+.0f"), attributionCPU.format("%+.0f"))
	// The goal of issue 8: cdcaudit's CPU per change at most its
	// walsender's, measured in the same drain.
	for _, c := range []int{1, 2} {
		fmt.Printf("CPU per 1M changes, %s: %s s, its walsender %s s: %s× the walsender's (goal ≤ 1×)\n", consumers[c].name,
			over(c, func(d drain) float64 { return perChange(d.cpu, changes) }).format("%.2f"),
			over(c, func(d drain) float64 { return perChange(d.walsenderCPU, changes) }).format("%.2f"),
			over(c, func(d drain) float64 { return d.cpu.Seconds() / d.walsenderCPU.Seconds() }).format("%.2f"))
	}
}

// identityFigure is one line of the identity comparison: a figure of one
// identity's part of a run (ok false: not measured).
type identityFigure struct {
	name, verb string
	of         func(r runResult, id string) (v float64, ok bool)
}

// identityFigures are the lines of the identity comparison. The changes/s
// and CPU lines are cdcaudit's drains: consumers[1] and [2].
func identityFigures(o options) []identityFigure {
	changes := float64(2 * o.rows)
	drained := func(f func(ir identityRun) float64) func(runResult, string) (float64, bool) {
		return func(r runResult, id string) (float64, bool) {
			ir, ok := r.identities[id]
			if !ok {
				return 0, false
			}
			return f(ir), true
		}
	}
	perChangeOf := func(i int, cpu func(drain) time.Duration) func(ir identityRun) float64 {
		return func(ir identityRun) float64 { return float64(cpu(ir.drains[i]).Microseconds()) / changes }
	}
	wal := func(scale float64, f func(ir identityRun) int64) func(runResult, string) (float64, bool) {
		return drained(func(ir identityRun) float64 { return float64(f(ir)) * scale })
	}
	figures := []identityFigure{
		{"WAL of the bench workload, MiB", "%.1f", wal(1.0/(1<<20), func(ir identityRun) int64 { return ir.wal.total().Bytes })},
		{"  of it full-page images, KiB", "%.0f", wal(1.0/(1<<10), func(ir identityRun) int64 { return ir.wal.total().FPIBytes })},
		{"  WAL per change, bytes", "%.0f", wal(1/changes, func(ir identityRun) int64 { return ir.wal.total().Bytes })},
		{"  WAL per insert, bytes", "%.0f", wal(1/float64(o.rows), func(ir identityRun) int64 { return ir.wal.inserts.Bytes })},
		{"  WAL per update, bytes", "%.0f", wal(1/float64(o.rows), func(ir identityRun) int64 { return ir.wal.updates.Bytes })},
		{"  WAL per update without page images, bytes", "%.0f", wal(1/float64(o.rows), func(ir identityRun) int64 { return ir.wal.updates.withoutImages() })},
	}
	if o.pgbenchTx > 0 {
		pgbench := func(scale float64, f func(walSpan) int64) func(runResult, string) (float64, bool) {
			return func(r runResult, id string) (float64, bool) {
				w, ok := r.pgbenchWAL[id]
				return float64(f(w)) * scale, ok
			}
		}
		all := func(w walSpan) int64 { return w.Bytes }
		figures = append(figures,
			identityFigure{fmt.Sprintf("WAL of pgbench -t %d, MiB", o.pgbenchTx), "%.1f", pgbench(1.0/(1<<20), all)},
			identityFigure{"  of it full-page images, MiB", "%.1f", pgbench(1.0/(1<<20), func(w walSpan) int64 { return w.FPIBytes })},
			identityFigure{"  WAL per transaction, bytes", "%.0f", pgbench(1/float64(o.pgbenchTx), all)},
			identityFigure{"  WAL per transaction without page images, bytes", "%.0f", pgbench(1/float64(o.pgbenchTx), walSpan.withoutImages)})
	}
	for _, c := range []int{1, 2} {
		figures = append(figures,
			identityFigure{consumers[c].name + ": changes/s", "%.0f", drained(func(ir identityRun) float64 { return changes / ir.drains[c].wall.Seconds() })},
			identityFigure{"  its CPU µs/change", "%.2f", drained(perChangeOf(c, func(d drain) time.Duration { return d.cpu }))},
			identityFigure{"  its walsender µs/change", "%.2f", drained(perChangeOf(c, func(d drain) time.Duration { return d.walsenderCPU }))},
			identityFigure{"  both, µs/change", "%.2f", drained(perChangeOf(c, func(d drain) time.Duration { return d.cpu + d.walsenderCPU }))})
	}
	return figures
}

// printIdentities prints each figure by identity and, when both were
// measured, DEFAULT / FULL: the median of the ratios within each run.
func printIdentities(o options, results []runResult) {
	both := len(o.identities) == 2
	fmt.Printf("replica identity, median (min to max) of %d run(s); full_page_writes on, each workload after a checkpoint\n", len(results))
	fmt.Printf("%-50s", "")
	for _, id := range o.identities {
		fmt.Printf("%-30s", strings.ToUpper(id))
	}
	if both {
		fmt.Print("DEFAULT / FULL")
	}
	fmt.Println()
	ratios := map[string]spread{}
	for _, f := range identityFigures(o) {
		fmt.Printf("%-50s", f.name)
		for _, id := range o.identities {
			var s spread
			for _, r := range results {
				if v, ok := f.of(r, id); ok {
					s = append(s, v)
				}
			}
			fmt.Printf("%-30s", s.format(f.verb))
		}
		if both {
			ratios[f.name] = pairedRatios(results, f.of, "default", "full")
			fmt.Print(ratios[f.name].format("%.3f"))
		}
		fmt.Println()
	}
	if !both {
		return
	}
	// The goal of issue 7: DEFAULT (before-images rebuilt by cdcaudit)
	// ingests at ≥ 0.9× the rate of FULL (before-images from the server).
	for _, c := range []int{1, 2} {
		rate := ratios[consumers[c].name+": changes/s"]
		cpu := pairedRatios(results, func(r runResult, id string) (float64, bool) {
			ir, ok := r.identities[id]
			if !ok {
				return 0, false
			}
			return 1 / (ir.drains[c].cpu + ir.drains[c].walsenderCPU).Seconds(), true
		}, "default", "full")
		fmt.Printf("\n%s, DEFAULT / FULL (goal ≥ 0.9×): throughput %s×, by CPU per change (with its walsender) %s×",
			consumers[c].name, rate.format("%.2f"), cpu.format("%.2f"))
	}
	// What a DBA saves: all of it, and the records alone (page images
	// depend on the checkpoints, not on the identity).
	saving := func(f func(r runResult, id string) (walSpan, bool)) string {
		all := pairedRatios(results, func(r runResult, id string) (float64, bool) {
			w, ok := f(r, id)
			return float64(w.Bytes), ok
		}, "default", "full")
		records := pairedRatios(results, func(r runResult, id string) (float64, bool) {
			w, ok := f(r, id)
			return float64(w.withoutImages()), ok
		}, "default", "full")
		return fmt.Sprintf("%s%% less (without page images %s%% less)", formatSaving(all), formatSaving(records))
	}
	fmt.Printf("\nWAL of the bench workload on DEFAULT against FULL: %s", saving(func(r runResult, id string) (walSpan, bool) {
		ir, ok := r.identities[id]
		return ir.wal.total(), ok
	}))
	if o.pgbenchTx > 0 {
		fmt.Printf("\nWAL of pgbench on DEFAULT against FULL: %s", saving(func(r runResult, id string) (walSpan, bool) {
			w, ok := r.pgbenchWAL[id]
			return w, ok
		}))
	}
	fmt.Print("\n\n")
}

// pairedRatios is num's figure over den's within each run that measured
// both (and neither as 0: e.g. page images that one workload happened to
// write and the other not).
func pairedRatios(results []runResult, of func(runResult, string) (float64, bool), num, den string) spread {
	var s spread
	for _, r := range results {
		a, okA := of(r, num)
		b, okB := of(r, den)
		if okA && okB && a != 0 && b != 0 {
			s = append(s, a/b)
		}
	}
	return s
}

// formatSaving turns ratios new/old into the percentage saved.
func formatSaving(ratios spread) string {
	saved := make(spread, len(ratios))
	for i, r := range ratios {
		saved[i] = 100 * (1 - r)
	}
	return saved.format("%.1f")
}

func printSnapshot(s *snapshotResult) {
	fmt.Printf("snapshot of a %d-row table (the bench table)\n", s.Rows)
	fmt.Printf("%-50s%.0f rows/s (seconds: %s)\n", "COPY … TO '/dev/null', the faster of 2:", s.copyRate(), formatValues(s.CopySeconds))
	fmt.Printf("%-50s%s µs/row\n", "  its backend's CPU:", formatValues(scale(s.CopyServerCPUSeconds, 1e6/float64(s.Rows))))
	fmt.Printf("%-50s%.0f rows/s (%d rows in %.1fs), %.2f× COPY (goal ≥ 0.5×)\n", "cdcaudit run, initial snapshot:",
		s.snapshotRate(), s.SnapshotRows, s.SnapshotSeconds, s.snapshotRate()/s.copyRate())
	perRow := func(v float64) float64 {
		if s.SnapshotRows == 0 {
			return 0
		}
		return v / float64(s.SnapshotRows)
	}
	fmt.Printf("%-50s%.1f s, %.2f µs/row\n", "  cdcaudit CPU:", s.CPUSeconds, perRow(s.CPUSeconds*1e6))
	fmt.Printf("%-50s%.1f s, %.2f µs/row\n", "  CPU of its backends and walsender:", s.ServerCPUSeconds, perRow(s.ServerCPUSeconds*1e6))
	fmt.Printf("%-50s%.1f MiB\n", "  cdcaudit peak RSS:", float64(s.PeakRSSKiB)/1024)
	fmt.Printf("%-50s%.0f bytes/snapshot row (%.1f MiB)\n\n", "  store:", perRow(float64(s.StoreBytes)), float64(s.StoreBytes)/(1<<20))
}

func scale(v []float64, by float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = x * by
	}
	return out
}

func formatValues(v []float64) string {
	var f []string
	for _, s := range v {
		f = append(f, fmt.Sprintf("%.1f", s))
	}
	return strings.Join(f, ", ")
}

// report is the --json document: the settings and every run's raw figures.
type report struct {
	Rows                int             `json:"rows"`
	TxRows              int             `json:"tx_rows"`
	Changes             int             `json:"changes"`
	Identities          []string        `json:"identities"`
	PgbenchTransactions int             `json:"pgbench_transactions"`
	LoadAverageStart    string          `json:"load_average_start"`
	LoadAverageEnd      string          `json:"load_average_end"`
	Runs                []jsonRun       `json:"runs"`
	Snapshot            *snapshotResult `json:"snapshot,omitempty"`
	BigTx               *bigTxResult    `json:"big_tx,omitempty"`
	// --pgbench: per run, pg_recvlogical's then cdcaudit's figures.
	Attached [][]attached `json:"attached,omitempty"`
	APILoad  []apiLoadRun `json:"api_load,omitempty"`
	Sinks    []sinksRun   `json:"sinks,omitempty"`
}

type jsonRun struct {
	Identities map[string]jsonIdentity `json:"identities"`
	// WAL of the pgbench transactions, by identity.
	PgbenchWAL map[string]walSpan `json:"pgbench_wal,omitempty"`
}

type jsonIdentity struct {
	WALInserts walSpan     `json:"wal_inserts"` // the workload's inserts
	WALUpdates walSpan     `json:"wal_updates"` // and its updates
	Drains     []jsonDrain `json:"drains"`
}

type jsonDrain struct {
	Consumer         string  `json:"consumer"`
	Profile          string  `json:"profile,omitempty"` // "" is pg_recvlogical
	WallSeconds      float64 `json:"wall_seconds"`
	CPUSeconds       float64 `json:"cpu_seconds"`
	WalsenderSeconds float64 `json:"walsender_cpu_seconds"`
	PeakRSSKiB       int64   `json:"peak_rss_kib"`
	PeakAnonRSSKiB   int64   `json:"peak_anon_rss_kib"`
	WrittenBytes     int64   `json:"written_bytes,omitempty"` // passed to write calls (cdcaudit)
	StoreBytes       int64   `json:"store_bytes,omitempty"`
}

func jsonRuns(results []runResult) []jsonRun {
	var out []jsonRun
	for _, r := range results {
		jr := jsonRun{Identities: map[string]jsonIdentity{}, PgbenchWAL: r.pgbenchWAL}
		for id, ir := range r.identities {
			ji := jsonIdentity{WALInserts: ir.wal.inserts, WALUpdates: ir.wal.updates}
			for i, d := range ir.drains {
				ji.Drains = append(ji.Drains, jsonDrain{Consumer: consumers[i].name, Profile: consumers[i].profile,
					WallSeconds: d.wall.Seconds(), CPUSeconds: d.cpu.Seconds(), WalsenderSeconds: d.walsenderCPU.Seconds(),
					PeakRSSKiB: d.rssKB, PeakAnonRSSKiB: d.anonKB, WrittenBytes: d.wchar, StoreBytes: d.storeBytes})
			}
			jr.Identities[id] = ji
		}
		out = append(out, jr)
	}
	return out
}

func writeJSON(path string, rep report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("--json: %v", err)
	}
	return nil
}
