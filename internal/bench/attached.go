package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

// attachedConsumers are what --pgbench attaches, each to its own slot
// (pgoutput, the same publications), one at a time.
var attachedConsumers = []consumer{
	{"pg_recvlogical attached", "ref", ""},
	{"cdcaudit run attached", "cdcaudit", "none"},
}

// attached is one pgbench run with one consumer streaming beside it.
type attached struct {
	TPS          float64 `json:"tps"`
	Transactions int64   `json:"transactions"`
	// CPU of the consumer and of its walsender from the start of pgbench
	// until the consumer had confirmed everything pgbench wrote.
	CPUSeconds       float64 `json:"cpu_seconds"`
	WalsenderSeconds float64 `json:"walsender_cpu_seconds"`
	// From the end of pgbench until the slot was confirmed up to it.
	CatchUpSeconds float64 `json:"catch_up_seconds"`
	PeakRSSKiB     int64   `json:"peak_rss_kib"`
	PeakAnonRSSKiB int64   `json:"peak_anon_rss_kib"`
}

// pgbenchChanges is how many row changes one TPC-B-like transaction
// makes: three updates and an insert.
const pgbenchChanges = 4

// benchAttached runs pgbench with each attachedConsumer streaming its
// changes, in a fresh database per run: the write path's cost of being
// audited by cdcaudit against being read by pg_recvlogical.
func benchAttached(ctx context.Context, c *pgtest.Cluster, o options, run int) ([]attached, error) {
	db := fmt.Sprintf("attached%d", run)
	if err := c.CreateDatabase(ctx, db); err != nil {
		return nil, err
	}
	defer dropDatabase(ctx, c, db)
	if err := pgbench(ctx, c, db, "-i", "-q", "-s", strconv.Itoa(o.pgbenchScale)); err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	ddl := ""
	for _, t := range pgbenchKeyed {
		ddl += identityDDL(t, "full")
	}
	// As cdcaudit keeps them (see publications).
	ddl += `CREATE PUBLICATION bench FOR ALL TABLES WITH (publish = 'insert, truncate');
		CREATE PUBLICATION bench_changes FOR TABLE pgbench_accounts, pgbench_branches, pgbench_tellers WITH (publish = 'update, delete');`
	if _, err := conn.Exec(ctx, ddl); err != nil {
		return nil, err
	}
	order := slices.Clone(attachedConsumers)
	if run%2 == 0 {
		slices.Reverse(order) // neither always goes first
	}
	out := make([]attached, len(attachedConsumers))
	for _, cons := range order {
		a, err := runAttached(ctx, c, conn, o, db, cons)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cons.name, err)
		}
		tx := float64(a.Transactions * pgbenchChanges)
		log.Printf("run %d/%d: pgbench with %-24s %8.1f tps; consumer CPU %.2f µs/change, its walsender %.2f; caught up %.1fs after; peak RSS %.1f MiB (anon %.1f)",
			run, o.runs, cons.name, a.TPS, a.CPUSeconds*1e6/tx, a.WalsenderSeconds*1e6/tx, a.CatchUpSeconds,
			float64(a.PeakRSSKiB)/1024, float64(a.PeakAnonRSSKiB)/1024)
		out[slices.Index(attachedConsumers, cons)] = a
	}
	return out, nil
}

// runAttached makes cons's slot, starts cons on it, runs pgbench, waits
// until cons has confirmed all of it, stops cons and drops its slot.
func runAttached(ctx context.Context, c *pgtest.Cluster, conn *pgx.Conn, o options, db string, cons consumer) (attached, error) {
	// Every pgbench starts alike: the previous one's dead rows vacuumed
	// (its history kept: an insert-only table), after a checkpoint.
	if _, err := conn.Exec(ctx, "VACUUM pgbench_branches, pgbench_tellers, pgbench_accounts"); err != nil {
		return attached{}, err
	}
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return attached{}, err
	}
	slot := cons.slot
	if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot); err != nil {
		return attached{}, err
	}
	defer c.Exec(ctx, "postgres", "SELECT pg_drop_replication_slot($1)", slot)
	var cmd *exec.Cmd
	stopProfile := func() {}
	if cons.profile == "" {
		cmd = exec.Command(filepath.Join(c.BinDir, "pg_recvlogical"), "-d", c.DSN(db), "-S", slot, "--start", "-f", "/dev/null",
			"-o", "proto_version=1", "-o", "publication_names=bench,bench_changes", "-s", "1", "-F", "0") // -F 0: reports what it wrote as flushed
	} else {
		dataDir, err := os.MkdirTemp("", "cdcaudit-bench-attached-")
		if err != nil {
			return attached{}, err
		}
		defer os.RemoveAll(dataDir)
		args, stop, err := profiled([]string{"run", "--dsn", c.DSN(db), "--data-dir", dataDir, "--slot", slot,
			"--publication", "bench", "--http-addr", "127.0.0.1:0", "--log-level", "warn", "--profile", cons.profile, "--snapshot", "never"},
			o.cpuProfile, "pgbench-"+slot)
		if err != nil {
			return attached{}, err
		}
		stopProfile = stop
		defer stop()
		cmd = exec.Command(o.bin, args...)
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return attached{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
	}()
	var a attached
	pid := cmd.Process.Pid
	// Streaming once its walsender is there.
	walsender := 0
	for deadline := time.Now().Add(time.Minute); walsender == 0; {
		select {
		case err := <-exited:
			stopped = true
			return attached{}, fmt.Errorf("exited before streaming: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		var err error
		if walsender, err = activeWalsender(ctx, conn, slot); err != nil {
			return attached{}, err
		}
		if time.Now().After(deadline) {
			return attached{}, errors.New("not streaming after a minute")
		}
	}
	cpu0, err := processCPU(pid)
	if err != nil {
		return attached{}, err
	}
	ws0, err := processCPU(walsender)
	if err != nil {
		return attached{}, fmt.Errorf("its walsender's CPU: %v", err)
	}
	// Sampled while pgbench runs.
	sampling, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			a.PeakAnonRSSKiB = max(a.PeakAnonRSSKiB, anonRSS(pid))
			select {
			case <-sampling:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	out, err := pgbenchOutput(ctx, c, db, "-n", "-c", strconv.Itoa(o.pgbenchClients), "-j", strconv.Itoa(o.pgbenchClients),
		"-T", strconv.Itoa(o.pgbenchSeconds))
	ended := time.Now()
	if err == nil {
		a.TPS, a.Transactions, err = parsePgbench(out)
	}
	if err != nil {
		close(sampling)
		<-sampled
		return attached{}, err
	}
	end, err := currentWAL(ctx, conn)
	if err != nil {
		close(sampling)
		<-sampled
		return attached{}, err
	}
	// Caught up once the slot is confirmed past pgbench's last commit.
	for {
		var lsn string
		if err := conn.QueryRow(ctx, "SELECT coalesce(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&lsn); err != nil {
			close(sampling)
			<-sampled
			return attached{}, err
		}
		if v, _ := audit.ParseLSN(lsn); v >= end {
			break
		}
		if time.Since(ended) > 5*time.Minute {
			close(sampling)
			<-sampled
			return attached{}, fmt.Errorf("not caught up 5 minutes after pgbench ended (confirmed %s, pgbench ended at %s)", lsn, audit.FormatLSN(end))
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.CatchUpSeconds = time.Since(ended).Seconds()
	close(sampling)
	<-sampled
	cpu1, err1 := processCPU(pid)
	ws1, err2 := processCPU(walsender)
	if err := errors.Join(err1, err2); err != nil {
		return attached{}, err
	}
	a.CPUSeconds, a.WalsenderSeconds = (cpu1 - cpu0).Seconds(), (ws1 - ws0).Seconds()
	a.PeakRSSKiB = peakRSS(pid)
	stopProfile()
	cmd.Process.Signal(syscall.SIGINT) // both stop cleanly on it
	stopped = true
	if err := <-exited; err != nil {
		return attached{}, fmt.Errorf("did not stop cleanly: %v", err)
	}
	return a, nil
}

// pgbench runs the server's pgbench on db as the superuser.
func pgbench(ctx context.Context, c *pgtest.Cluster, db string, args ...string) error {
	_, err := pgbenchOutput(ctx, c, db, args...)
	return err
}

func pgbenchOutput(ctx context.Context, c *pgtest.Cluster, db string, args ...string) (string, error) {
	conn := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "postgres"}
	out, err := exec.CommandContext(ctx, filepath.Join(c.BinDir, "pgbench"), append(append(conn, args...), db)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("pgbench %v: %v\n%s", args, err, out)
	}
	return string(out), nil
}

var (
	pgbenchTPS = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	pgbenchTxs = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
)

// parsePgbench reads the tps (without connection time) and the
// transactions processed from pgbench's report.
func parsePgbench(out string) (tps float64, txs int64, err error) {
	m, n := pgbenchTPS.FindStringSubmatch(out), pgbenchTxs.FindStringSubmatch(out)
	if m == nil || n == nil {
		return 0, 0, fmt.Errorf("no tps or transaction count in pgbench's output:\n%s", out)
	}
	tps, err1 := strconv.ParseFloat(m[1], 64)
	txs, err2 := strconv.ParseInt(n[1], 10, 64)
	return tps, txs, errors.Join(err1, err2)
}

// printAttached prints each consumer's figures with pgbench beside it and
// the ratio of the tps, paired within each run.
func printAttached(o options, runs [][]attached) {
	fmt.Printf("pgbench -c %d -j %d -T %d (scale %d, REPLICA IDENTITY FULL) with one consumer streaming, median (min to max) of %d run(s)\n",
		o.pgbenchClients, o.pgbenchClients, o.pgbenchSeconds, o.pgbenchScale, len(runs))
	cell := "%-26s"
	fmt.Printf("%-26s"+cell+cell+cell+cell+"%s\n", "", "tps", "CPU s/1M changes", "walsender s/1M changes", "caught up after, s", "peak RSS MiB (anon)")
	over := func(i int, f func(a attached) float64) spread {
		var s spread
		for _, r := range runs {
			s = append(s, f(r[i]))
		}
		return s
	}
	perM := func(sec float64, a attached) float64 { return sec * 1e6 / float64(a.Transactions*pgbenchChanges) }
	for i, cons := range attachedConsumers {
		fmt.Printf("%-26s"+cell+cell+cell+cell+"%s (%s)\n", cons.name,
			over(i, func(a attached) float64 { return a.TPS }).format("%.1f"),
			over(i, func(a attached) float64 { return perM(a.CPUSeconds, a) }).format("%.2f"),
			over(i, func(a attached) float64 { return perM(a.WalsenderSeconds, a) }).format("%.2f"),
			over(i, func(a attached) float64 { return a.CatchUpSeconds }).format("%.1f"),
			over(i, func(a attached) float64 { return float64(a.PeakRSSKiB) / 1024 }).format("%.1f"),
			over(i, func(a attached) float64 { return float64(a.PeakAnonRSSKiB) / 1024 }).format("%.1f"))
	}
	fmt.Printf("\ntps with cdcaudit attached / with pg_recvlogical attached: %s× (goal ≥ 0.95×)\n\n",
		over(1, func(a attached) float64 { return a.TPS }).pairedWith(over(0, func(a attached) float64 { return a.TPS })).format("%.3f"))
}
