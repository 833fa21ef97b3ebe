// Command bench measures how fast cdcaudit drains a backlog of changes
// compared with pg_recvlogical reading the same kind of slot (pgoutput) from
// the same server in the same run. Run it through scripts/bench.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
)

func main() {
	bin := flag.String("cdcaudit", "bin/cdcaudit", "path of the cdcaudit binary to measure")
	rows := flag.Int("rows", 500000, "rows inserted, then updated (changes = 2 × rows)")
	txRows := flag.Int("tx-rows", 1000, "rows per transaction")
	runs := flag.Int("runs", 3, "times the whole comparison is repeated; the median of each figure is printed, with its min and max")
	keep := flag.Bool("keep", false, "keep the cdcaudit stores (their paths are printed)")
	flag.Parse()
	if *runs < 1 || *rows < 1 || *txRows < 1 {
		log.Fatal("--runs, --rows and --tx-rows must be at least 1")
	}
	if err := run(*bin, *rows, *txRows, *runs, *keep); err != nil {
		log.Fatal(err)
	}
}

// The publications are made the way cdcaudit keeps them (inserts FOR ALL
// TABLES, updates and deletes of the tables with a usable replica identity),
// before the workload: cdcaudit then changes nothing, and every consumer
// decodes the same changes of the same publications.
const schema = `
CREATE TABLE sale_order_line (
	id bigserial PRIMARY KEY,
	order_id integer NOT NULL,
	product_id integer NOT NULL,
	name text NOT NULL,
	product_uom_qty numeric(16,3) NOT NULL,
	price_unit numeric(16,2) NOT NULL,
	discount numeric(5,2),
	price_subtotal numeric(16,2),
	state varchar(16) NOT NULL,
	sequence integer,
	is_downpayment boolean NOT NULL DEFAULT false,
	create_uid integer,
	create_date timestamp without time zone,
	write_uid integer,
	write_date timestamp without time zone
);
ALTER TABLE sale_order_line REPLICA IDENTITY FULL;
CREATE PUBLICATION bench FOR ALL TABLES WITH (publish = 'insert, truncate');
CREATE PUBLICATION bench_changes FOR TABLE sale_order_line WITH (publish = 'update, delete');
`

// consumer is one drain of the backlog, each from its own slot.
type consumer struct {
	name, slot string
	profile    string // cdcaudit's --profile; "" runs pg_recvlogical
}

// The reference runs before and after cdcaudit, so neither side gains from
// going second (warm caches); the better reference run of each comparison
// counts for the ratios.
var consumers = []consumer{
	{"pg_recvlogical (pgoutput → /dev/null)", "ref", ""},
	{"cdcaudit run (into its store)", "cdcaudit", "none"},
	// Attribution: row_user from create_uid/write_uid, orm_bypass checks,
	// redaction rules.
	{"cdcaudit run --profile odoo", "cdcaudit_odoo", "odoo"},
	{"pg_recvlogical again", "ref2", ""},
}

// drain is what one consumer's drain measured.
type drain struct {
	wall  time.Duration // until the last change was received (cdcaudit: durable and confirmed)
	rssKB int64         // the consumer's peak resident set
	// CPU (user+system) of the consumer process and of the walsender(s)
	// serving it, up to the end of the drain.
	cpu, walsenderCPU time.Duration
	storeBytes        int64 // cdcaudit's store; 0 for pg_recvlogical
}

func run(bin string, rows, txRows, runs int, keep bool) error {
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("cdcaudit binary: %v (build it: go build -o bin/cdcaudit ./cmd/cdcaudit)", err)
	}
	if _, err := processCPU(os.Getpid()); err != nil {
		return fmt.Errorf("CPU is read from /proc: %v", err)
	}
	ctx := context.Background()
	c, err := pgtest.Start(pgtest.Options{
		Logf:     log.Printf,
		Settings: map[string]string{"autovacuum": "off", "max_wal_size": "'8GB'", "checkpoint_timeout": "'1h'"},
	})
	if err != nil {
		return err
	}
	defer c.Stop()
	changes := 2 * rows
	fmt.Printf("workload: %d inserts + %d updates of a 15-column table (REPLICA IDENTITY FULL), %d rows per transaction; %d run(s)\n", rows, rows, txRows, runs)
	fmt.Printf("load average at start: %s\n", loadAverage())
	results := make([][]drain, runs)
	for r := range results {
		if results[r], err = compare(ctx, c, bin, fmt.Sprintf("bench%d", r+1), rows, txRows, keep); err != nil {
			return fmt.Errorf("run %d: %w", r+1, err)
		}
		for i, d := range results[r] {
			log.Printf("run %d/%d: %-38s %s", r+1, runs, consumers[i].name, d.summary(changes))
		}
	}
	fmt.Printf("load average at end:   %s\n\n", loadAverage())
	printTable(results, changes)
	return nil
}

func (d drain) summary(changes int) string {
	return fmt.Sprintf("%6.2fs %8.0f changes/s  CPU %5.2f µs/change  walsender %5.2f µs/change  peak RSS %6.1f MiB",
		d.wall.Seconds(), float64(changes)/d.wall.Seconds(), perChange(d.cpu, changes), perChange(d.walsenderCPU, changes), float64(d.rssKB)/1024)
}

func perChange(cpu time.Duration, changes int) float64 {
	return float64(cpu.Microseconds()) / float64(changes)
}

// printTable prints, for each figure, its median over the runs, with min and max.
func printTable(results [][]drain, changes int) {
	over := func(i int, f func(drain) float64) spread {
		var s spread
		for _, r := range results {
			s = append(s, f(r[i]))
		}
		return s
	}
	cell := "%-26s"
	fmt.Printf("median (min to max) of %d run(s), %d changes each\n", len(results), changes)
	fmt.Printf("%-38s "+cell+cell+cell+cell+"%s\n", "", "changes/s", "CPU µs/change", "walsender µs/change", "peak RSS MiB", "store bytes/event")
	for i, cons := range consumers {
		store := "–"
		if cons.profile != "" {
			store = over(i, func(d drain) float64 { return float64(d.storeBytes) / float64(changes) }).format("%.0f")
		}
		fmt.Printf("%-38s "+cell+cell+cell+cell+"%s\n", cons.name,
			over(i, func(d drain) float64 { return float64(changes) / d.wall.Seconds() }).format("%.0f"),
			over(i, func(d drain) float64 { return perChange(d.cpu, changes) }).format("%.2f"),
			over(i, func(d drain) float64 { return perChange(d.walsenderCPU, changes) }).format("%.2f"),
			over(i, func(d drain) float64 { return float64(d.rssKB) / 1024 }).format("%.1f"),
			store)
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
}

// compare creates database db, writes the workload into it, drains it
// through every consumer, then drops the database and its slots.
func compare(ctx context.Context, c *pgtest.Cluster, bin, db string, rows, txRows int, keep bool) ([]drain, error) {
	if err := c.CreateDatabase(ctx, db); err != nil {
		return nil, err
	}
	defer dropDatabase(ctx, c, db)
	conn, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, schema); err != nil {
		return nil, err
	}
	// Every slot exists before the workload: each consumer drains the same WAL.
	for _, cons := range consumers {
		if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", cons.slot); err != nil {
			return nil, err
		}
	}
	t0 := time.Now()
	endLSN, err := workload(ctx, conn, rows, txRows)
	if err != nil {
		return nil, err
	}
	log.Printf("%s: workload written in %.1fs; draining up to %s", db, time.Since(t0).Seconds(), audit.FormatLSN(endLSN))
	var out []drain
	for _, cons := range consumers {
		var d drain
		if cons.profile == "" {
			d, err = runRecvlogical(ctx, conn, c, db, cons.slot, endLSN)
		} else {
			d, err = runCdcaudit(ctx, conn, bin, c, db, cons.slot, cons.profile, endLSN, keep)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cons.name, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// dropDatabase drops db's slots (once their walsenders have gone) and db,
// so that the next run's server keeps no WAL or table for this one.
func dropDatabase(ctx context.Context, c *pgtest.Cluster, db string) {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		err := c.Exec(ctx, "postgres", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1", db)
		if err == nil {
			break
		}
	}
	if err := c.Exec(ctx, "postgres", "DROP DATABASE "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
		log.Printf("%s left behind: %v", db, err)
	}
	c.Exec(ctx, "postgres", "CHECKPOINT")
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ") + " (1, 5, 15 min)"
}

// workload writes the changes and returns an LSN inside the last
// transaction, after its last change: a consumer that has stored a commit
// at or past it has everything.
func workload(ctx context.Context, conn *pgx.Conn, rows, txRows int) (uint64, error) {
	ins := `INSERT INTO sale_order_line (order_id, product_id, name, product_uom_qty, price_unit, discount, price_subtotal, state, sequence, create_uid, create_date, write_uid, write_date)
		SELECT g / 10, g % 997, 'Product ' || g || ' — "Widget", size L', (g % 50) + 0.5, 12.34 + g % 100, 0, ((g % 50) + 0.5) * (12.34 + g % 100), 'draft', g % 10, 2, now() AT TIME ZONE 'UTC', 2, now() AT TIME ZONE 'UTC'
		FROM generate_series($1::int, $2::int) g`
	upd := `UPDATE sale_order_line SET state = 'sale', discount = 5, write_uid = 6, write_date = now() AT TIME ZONE 'UTC' WHERE id BETWEEN $1 AND $2`
	var last uint64
	for _, q := range []string{ins, upd} {
		for lo := 1; lo <= rows; lo += txRows {
			hi := min(lo+txRows-1, rows)
			tx, err := conn.Begin(ctx)
			if err != nil {
				return 0, err
			}
			if _, err := tx.Exec(ctx, q, lo, hi); err != nil {
				return 0, err
			}
			var lsn string
			if err := tx.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
				return 0, err
			}
			if err := tx.Commit(ctx); err != nil {
				return 0, err
			}
			if last, err = audit.ParseLSN(lsn); err != nil {
				return 0, err
			}
		}
	}
	return last, nil
}

// activeWalsender is the pid of the walsender serving slot now, 0 if none.
func activeWalsender(ctx context.Context, conn *pgx.Conn, slot string) (int, error) {
	var pid int
	err := conn.QueryRow(ctx, "SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&pid)
	return pid, err
}

func runRecvlogical(ctx context.Context, conn *pgx.Conn, c *pgtest.Cluster, db, slot string, end uint64) (drain, error) {
	cmd := exec.Command(filepath.Join(c.BinDir, "pg_recvlogical"),
		"-d", c.DSN(db), "-S", slot, "--start", "-f", "/dev/null", "-E", audit.FormatLSN(end),
		"-o", "proto_version=1", "-o", "publication_names=bench,bench_changes", "--no-loop")
	cmd.Stderr = os.Stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return drain{}, fmt.Errorf("pg_recvlogical: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var d drain
	ws := walsenders{}
	pid := 0
	for {
		select {
		case err := <-exited:
			if err != nil {
				return drain{}, fmt.Errorf("pg_recvlogical: %v", err)
			}
			d.wall = time.Since(t0)
			// It exits by itself at the end position, so its /proc entry
			// is gone: wait4's rusage holds the same utime+stime counters.
			d.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			ws.sampleAll() // its walsender may not have noticed yet
			d.walsenderCPU = ws.total()
			ws.warnIfUnseen(slot)
			return d, nil
		case <-time.After(20 * time.Millisecond):
			d.rssKB = max(d.rssKB, peakRSS(cmd.Process.Pid))
		}
		// Asked only until found: the server does no other work meanwhile.
		if pid == 0 {
			var err error
			if pid, err = activeWalsender(ctx, conn, slot); err != nil {
				return drain{}, err
			}
		}
		ws.sample(pid)
	}
}

func runCdcaudit(ctx context.Context, conn *pgx.Conn, bin string, c *pgtest.Cluster, db, slot, prof string, end uint64, keep bool) (drain, error) {
	dataDir, err := os.MkdirTemp("", "cdcaudit-bench-"+slot+"-")
	if err != nil {
		return drain{}, err
	}
	if keep {
		log.Printf("store of %s kept in %s", slot, dataDir)
	} else {
		defer os.RemoveAll(dataDir)
	}
	cmd := exec.Command(bin, "run", "--dsn", c.DSN(db), "--data-dir", dataDir, "--slot", slot,
		"--publication", "bench", "--http-addr", "127.0.0.1:0", "--log-level", "warn", "--profile", prof)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return drain{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var d drain
	ws := walsenders{}
	for {
		select {
		case err := <-exited:
			return drain{}, fmt.Errorf("cdcaudit exited early: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		// The slot is confirmed only up to what is durable in the store.
		var pid int
		var lsn string
		if err := conn.QueryRow(ctx, "SELECT coalesce(active_pid, 0), coalesce(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&pid, &lsn); err != nil {
			return drain{}, err
		}
		ws.sample(pid)
		if v, _ := audit.ParseLSN(lsn); v >= end {
			d.wall = time.Since(t0)
			break
		}
	}
	// Read before it is told to stop: its shutdown is not part of the drain.
	if d.cpu, err = processCPU(cmd.Process.Pid); err != nil {
		return drain{}, err
	}
	d.walsenderCPU = ws.total()
	ws.warnIfUnseen(slot)
	d.rssKB = peakRSS(cmd.Process.Pid)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		return drain{}, fmt.Errorf("cdcaudit did not exit cleanly: %v", err)
	}
	d.storeBytes = dirSize(dataDir)
	return d, nil
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
