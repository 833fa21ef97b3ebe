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
	"strconv"
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
	keep := flag.Bool("keep", false, "keep the cdcaudit store (its path is printed)")
	flag.Parse()
	if err := run(*bin, *rows, *txRows, *keep); err != nil {
		log.Fatal(err)
	}
}

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
CREATE PUBLICATION bench FOR TABLE sale_order_line;
`

func run(bin string, rows, txRows int, keep bool) error {
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("cdcaudit binary: %v (build it: go build -o bin/cdcaudit ./cmd/cdcaudit)", err)
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
	if err := c.CreateDatabase(ctx, "bench"); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, c.DSN("bench"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, schema); err != nil {
		return err
	}
	// Both slots exist before the workload: each consumer drains the same WAL.
	for _, slot := range []string{"ref", "cdcaudit", "cdcaudit_odoo", "ref2"} {
		if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot); err != nil {
			return err
		}
	}
	fmt.Printf("workload: %d inserts + %d updates of a 15-column table (REPLICA IDENTITY FULL), %d rows per transaction\n", rows, rows, txRows)
	t0 := time.Now()
	endLSN, err := workload(ctx, conn, rows, txRows)
	if err != nil {
		return err
	}
	changes := 2 * rows
	fmt.Printf("workload written in %.1fs; draining up to %s\n\n", time.Since(t0).Seconds(), audit.FormatLSN(endLSN))

	// The reference runs before and after cdcaudit, so neither side gains
	// from going second (warm caches); the better reference run counts.
	refDur, refRSS, err := runRecvlogical(c, "ref", endLSN)
	if err != nil {
		return err
	}
	report("pg_recvlogical (pgoutput → /dev/null)", changes, refDur, refRSS)

	dataDir, err := os.MkdirTemp("", "cdcaudit-bench-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dataDir)
	}
	ourDur, ourRSS, err := runCdcaudit(ctx, bin, c, dataDir, "cdcaudit", "none", endLSN)
	if err != nil {
		return err
	}
	report("cdcaudit run (into its store)", changes, ourDur, ourRSS)
	// The same with attribution (the Odoo profile: row_user from
	// create_uid/write_uid, orm_bypass checks, redaction rules).
	odooDir, err := os.MkdirTemp("", "cdcaudit-bench-odoo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(odooDir)
	odooDur, odooRSS, err := runCdcaudit(ctx, bin, c, odooDir, "cdcaudit_odoo", "odoo", endLSN)
	if err != nil {
		return err
	}
	report("cdcaudit run --profile odoo", changes, odooDur, odooRSS)
	ref2Dur, ref2RSS, err := runRecvlogical(c, "ref2", endLSN)
	if err != nil {
		return err
	}
	report("pg_recvlogical again", changes, ref2Dur, ref2RSS)
	refDur = min(refDur, ref2Dur)
	size := dirSize(dataDir)
	fmt.Printf("\nratio cdcaudit / best pg_recvlogical: %.2f×   (store: %.0f MiB, %d bytes/event)\n",
		refDur.Seconds()/ourDur.Seconds(), float64(size)/(1<<20), size/int64(changes))
	fmt.Printf("ratio cdcaudit --profile odoo / best pg_recvlogical: %.2f×   (attribution costs %.0f%% of the core's throughput)\n",
		refDur.Seconds()/odooDur.Seconds(), 100*(1-ourDur.Seconds()/odooDur.Seconds()))
	if keep {
		fmt.Println("store kept in", dataDir)
	}
	return nil
}

func report(name string, changes int, d time.Duration, rssKB int64) {
	fmt.Printf("%-40s %8.2fs %10.0f changes/s   peak RSS %6.1f MiB\n", name, d.Seconds(), float64(changes)/d.Seconds(), float64(rssKB)/1024)
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

func runRecvlogical(c *pgtest.Cluster, slot string, end uint64) (time.Duration, int64, error) {
	cmd := exec.Command(filepath.Join(c.BinDir, "pg_recvlogical"),
		"-d", c.DSN("bench"), "-S", slot, "--start", "-f", "/dev/null", "-E", audit.FormatLSN(end),
		"-o", "proto_version=1", "-o", "publication_names=bench", "--no-loop")
	cmd.Stderr = os.Stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, fmt.Errorf("pg_recvlogical: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var peak int64
	for {
		select {
		case err := <-exited:
			if err != nil {
				return 0, 0, fmt.Errorf("pg_recvlogical: %v", err)
			}
			return time.Since(t0), peak, nil
		case <-time.After(20 * time.Millisecond):
			peak = max(peak, peakRSS(cmd.Process.Pid))
		}
	}
}

func runCdcaudit(ctx context.Context, bin string, c *pgtest.Cluster, dataDir, slot, prof string, end uint64) (time.Duration, int64, error) {
	cmd := exec.Command(bin, "run", "--dsn", c.DSN("bench"), "--data-dir", dataDir, "--slot", slot,
		"--publication", "bench", "--http-addr", "127.0.0.1:0", "--log-level", "warn", "--profile", prof)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	conn, err := pgx.Connect(ctx, c.DSN("bench"))
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(ctx)
	var d time.Duration
	for {
		select {
		case err := <-exited:
			return 0, 0, fmt.Errorf("cdcaudit exited early: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		// The slot is confirmed only up to what is durable in the store.
		var lsn string
		if err := conn.QueryRow(ctx, "SELECT coalesce(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&lsn); err != nil {
			return 0, 0, err
		}
		if v, _ := audit.ParseLSN(lsn); v >= end {
			d = time.Since(t0)
			break
		}
	}
	peak := peakRSS(cmd.Process.Pid)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		return 0, 0, fmt.Errorf("cdcaudit did not exit cleanly: %v", err)
	}
	return d, peak, nil
}

// peakRSS reads a running process's peak resident set (VmHWM, KiB). Not
// rusage: a child started from Go inherits the parent's ru_maxrss.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return n
		}
	}
	return 0
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
