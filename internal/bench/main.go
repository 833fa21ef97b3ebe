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
	"regexp"
	"slices"
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
	runs := flag.Int("runs", 3, "times the whole comparison is repeated; the median of each figure is printed, with its min and max (0: only --snapshot-rows)")
	identity := flag.String("identity", "both", "REPLICA IDENTITY of the bench tables: full, default, or both (each drained in every run, and compared)")
	pgbenchTx := flag.Int("pgbench-tx", 10000, "pgbench transactions whose WAL is measured under each replica identity in every run (0: none)")
	snapshotRows := flag.Int("snapshot-rows", 0, "also time cdcaudit's initial snapshot of a table of this many rows against COPY … TO '/dev/null' of it (0: not)")
	attachedMode := flag.Bool("pgbench", false, "instead of the drains, run pgbench in each run once with pg_recvlogical and once with cdcaudit streaming its changes (FULL tables, the same slot type), and compare the tps")
	pgbenchSeconds := flag.Int("pgbench-seconds", 30, "with --pgbench: how long each pgbench runs")
	pgbenchClients := flag.Int("pgbench-clients", 2, "with --pgbench: pgbench's clients (and threads)")
	pgbenchScale := flag.Int("pgbench-scale", 10, "with --pgbench: pgbench's scale factor")
	bigTx := flag.Int("big-tx", 0, "also drain ONE transaction inserting this many rows of the bench table through cdcaudit, for its peak RSS (0: not)")
	jsonOut := flag.String("json", "", "also write every figure of every run to this file, as JSON")
	keep := flag.Bool("keep", false, "keep the cdcaudit stores (their paths are printed)")
	apiLoadMode := flag.Bool("api-load", false, "instead of the drains, drain the FULL backlog through cdcaudit twice in each run: alone, and with 4 API exports (JSON Lines, again and again) and a stream of API queries reading the store meanwhile; compare the ingest rate")
	sinksMode := flag.Bool("sinks", false, "instead of the drains, drain the FULL backlog through cdcaudit without sinks and with both sinks on (a second local PostgreSQL as the audit database, kfakeserver as the Kafka broker), then deliver the first drain's store through both sinks; compare the ingest and delivery rates, RSS, CPU, and bytes per event")
	kfakeBin := flag.String("kfake", "bin/kfakeserver", "with --sinks: path of the kfakeserver binary (go build -o bin/kfakeserver ./internal/bench/kfakeserver)")
	kafkaPartitions := flag.Int("kafka-partitions", 1, "with --sinks: partitions of each Kafka topic")
	sinksRate := flag.Int("sinks-rate", 0, "with --sinks: write the workload at this many changes/s while cdcaudit with both sinks streams it, instead of draining it afterwards (0: drain)")
	cpuProfile := flag.String("cpuprofile", "", "collect cdcaudit's CPU profile (through its --pprof endpoint) of every drain or attached run into this directory, in one-second pieces: go tool pprof -top DIR/SLOT-*.pb.gz")
	flag.Parse()
	ids, err := parseIdentities(*identity)
	if err != nil {
		log.Fatal(err)
	}
	if *runs < 0 || *rows < 1 || *txRows < 1 || *pgbenchTx < 0 || *snapshotRows < 0 || *bigTx < 0 {
		log.Fatal("--rows and --tx-rows must be at least 1, --runs, --pgbench-tx, --snapshot-rows and --big-tx at least 0")
	}
	if *kafkaPartitions < 1 || *sinksRate < 0 {
		log.Fatal("--kafka-partitions must be at least 1, --sinks-rate at least 0")
	}
	if *pgbenchSeconds < 1 || *pgbenchClients < 1 || *pgbenchScale < 1 {
		log.Fatal("--pgbench-seconds, --pgbench-clients and --pgbench-scale must be at least 1")
	}
	if *runs == 0 && *snapshotRows == 0 && *bigTx == 0 {
		log.Fatal("--runs 0 measures nothing without --snapshot-rows or --big-tx")
	}
	opts := options{bin: *bin, rows: *rows, txRows: *txRows, runs: *runs, identities: ids,
		pgbenchTx: *pgbenchTx, snapshotRows: *snapshotRows, jsonOut: *jsonOut, keep: *keep, cpuProfile: *cpuProfile,
		attached: *attachedMode, pgbenchSeconds: *pgbenchSeconds, pgbenchClients: *pgbenchClients, pgbenchScale: *pgbenchScale,
		bigTx: *bigTx, apiLoad: *apiLoadMode, sinks: *sinksMode, kfake: *kfakeBin, kafkaPartitions: *kafkaPartitions, sinksRate: *sinksRate}
	if err := run(opts); err != nil {
		log.Fatal(err)
	}
}

type options struct {
	bin                                         string
	rows, txRows, runs, pgbenchTx, snapshotRows int
	identities                                  []string
	jsonOut                                     string
	keep                                        bool
	cpuProfile                                  string // directory, or ""
	// --pgbench: the runs compare pgbench with each consumer attached.
	attached                                     bool
	pgbenchSeconds, pgbenchClients, pgbenchScale int
	bigTx                                        int
	apiLoad                                      bool // --api-load
	// --sinks, its kfakeserver binary and its topics' partitions.
	sinks           bool
	kfake           string
	kafkaPartitions int
	sinksRate       int // changes/s; 0: the sinks drain a backlog
}

// parseIdentities reads --identity: the replica identities to measure, FULL
// first.
func parseIdentities(s string) ([]string, error) {
	switch s {
	case "full":
		return []string{"full"}, nil
	case "default":
		return []string{"default"}, nil
	case "both":
		return []string{"full", "default"}, nil
	}
	return nil, fmt.Errorf("--identity %q: want full, default or both", s)
}

// table is the bench table: an abridged Odoo sale_order_line, at replica
// identity DEFAULT (see identityDDL).
const table = `
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
`

// The publications are made the way cdcaudit keeps them (inserts FOR ALL
// TABLES, updates and deletes of the tables with a usable replica identity),
// before the workload: cdcaudit then changes nothing, and every consumer
// decodes the same changes of the same publications.
const publications = `
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
	wall   time.Duration // until the last change was received (cdcaudit: durable and confirmed)
	rssKB  int64         // the consumer's peak resident set (VmHWM: the store's mapped pages too)
	anonKB int64         // its peak anonymous resident memory (heap, stacks), sampled
	wchar  int64         // bytes it passed to write calls during the drain (cdcaudit: its store's pages)
	// CPU (user+system) of the consumer process and of the walsender(s)
	// serving it, up to the end of the drain.
	cpu, walsenderCPU time.Duration
	storeBytes        int64         // cdcaudit's store; 0 for pg_recvlogical
	load              apiLoadResult // --api-load: what the API's readers did meanwhile
	dataDir           string        // the store, when kept (--keep)
}

// identityRun is one replica identity's part of a run: the WAL its workload
// wrote and every consumer's drain of it.
type identityRun struct {
	wal    workloadWAL
	drains []drain
}

// runResult is one run of the comparison.
type runResult struct {
	identities map[string]identityRun
	pgbenchWAL map[string]walSpan // WAL of --pgbench-tx transactions, by identity
}

func run(o options) error {
	if _, err := os.Stat(o.bin); err != nil {
		return fmt.Errorf("cdcaudit binary: %v (build it: go build -o bin/cdcaudit ./cmd/cdcaudit)", err)
	}
	if _, err := processCPU(os.Getpid()); err != nil {
		return fmt.Errorf("CPU is read from /proc: %v", err)
	}
	// A cdcaudit with the initial snapshot (issue 7) has --snapshot: the
	// drains say never (their slots exist before the workload anyway), the
	// snapshot bench says initial.
	snapshots, err := hasRunFlag(o.bin, "snapshot")
	if err != nil {
		return err
	}
	if o.snapshotRows > 0 && !snapshots {
		return fmt.Errorf("--snapshot-rows: %s has no initial snapshot (its run has no --snapshot flag)", o.bin)
	}
	ctx := context.Background()
	c, err := pgtest.Start(pgtest.Options{
		Logf: log.Printf,
		// full_page_writes as on a production server: the WAL figures are
		// what a DBA would see after a checkpoint (each measured workload
		// starts with one).
		Settings: map[string]string{"autovacuum": "off", "max_wal_size": "'8GB'", "checkpoint_timeout": "'1h'", "full_page_writes": "on"},
	})
	if err != nil {
		return err
	}
	defer c.Stop()
	changes := 2 * o.rows
	rep := report{Rows: o.rows, TxRows: o.txRows, Changes: changes, Identities: o.identities, PgbenchTransactions: o.pgbenchTx}
	if o.attached {
		return runAttachedMode(ctx, c, o, rep, snapshots)
	}
	if o.apiLoad {
		return runAPILoadMode(ctx, c, o, rep)
	}
	if o.sinks {
		return runSinksMode(ctx, c, o, rep)
	}
	if o.runs > 0 {
		fmt.Printf("workload: %d inserts + %d updates of a 15-column table (REPLICA IDENTITY %s), %d rows per transaction; %d run(s)\n",
			o.rows, o.rows, strings.ToUpper(strings.Join(o.identities, " and ")), o.txRows, o.runs)
	}
	rep.LoadAverageStart = loadAverage()
	fmt.Printf("load average at start: %s\n", rep.LoadAverageStart)
	var results []runResult
	for r := 0; r < o.runs; r++ {
		res := runResult{identities: map[string]identityRun{}, pgbenchWAL: map[string]walSpan{}}
		order := slices.Clone(o.identities)
		if r%2 == 1 {
			slices.Reverse(order) // neither identity always drains first
		}
		var err error
		if res.identities, err = compare(ctx, c, o, r+1, order, snapshots); err != nil {
			return fmt.Errorf("run %d: %w", r+1, err)
		}
		if o.pgbenchTx > 0 {
			for _, id := range order {
				n, err := pgbenchWAL(ctx, c, fmt.Sprintf("pgbench%d_%s", r+1, id), id, o.pgbenchTx)
				if err != nil {
					return fmt.Errorf("run %d, pgbench, identity %s: %w", r+1, id, err)
				}
				log.Printf("run %d/%d %-7s: pgbench -t %d wrote %d bytes of WAL, %d of them page images", r+1, o.runs, id, o.pgbenchTx, n.Bytes, n.FPIBytes)
				res.pgbenchWAL[id] = n
			}
		}
		results = append(results, res)
	}
	if o.snapshotRows > 0 {
		if rep.Snapshot, err = benchSnapshot(ctx, c, o); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
	}
	if o.bigTx > 0 {
		if rep.BigTx, err = benchBigTx(ctx, c, o, snapshots); err != nil {
			return fmt.Errorf("big transaction: %w", err)
		}
	}
	rep.LoadAverageEnd = loadAverage()
	fmt.Printf("load average at end:   %s\n\n", rep.LoadAverageEnd)
	rep.Runs = jsonRuns(results)
	printReport(o, results, rep.Snapshot)
	if rep.BigTx != nil {
		printBigTx(rep.BigTx)
	}
	if o.jsonOut != "" {
		return writeJSON(o.jsonOut, rep)
	}
	return nil
}

// hasRunFlag tells whether bin's run command has --name (its help lists it).
func hasRunFlag(bin, name string) (bool, error) {
	out, err := exec.Command(bin, "run", "--help").CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("%s run --help: %v", bin, err)
	}
	return helpHasFlag(string(out), name), nil
}

// helpHasFlag tells whether a flag list ("  --name value" lines) has --name.
func helpHasFlag(help, name string) bool {
	return regexp.MustCompile(`(?m)^\s+--` + regexp.QuoteMeta(name) + `(\s|$)`).MatchString(help)
}

func (d drain) summary(changes int) string {
	return fmt.Sprintf("%6.2fs %8.0f changes/s  CPU %5.2f µs/change  walsender %5.2f µs/change  peak RSS %6.1f MiB (anon %.1f)",
		d.wall.Seconds(), float64(changes)/d.wall.Seconds(), perChange(d.cpu, changes), perChange(d.walsenderCPU, changes),
		float64(d.rssKB)/1024, float64(d.anonKB)/1024)
}

func perChange(cpu time.Duration, changes int) float64 {
	return float64(cpu.Microseconds()) / float64(changes)
}

// backlog is one identity's database, its workload written, not drained yet.
type backlog struct {
	id, db string
	conn   *pgx.Conn
	end    uint64 // see workload
	run    identityRun
}

// slot is the consumer's slot for this backlog (slot names are the
// server's, not the database's).
func (b *backlog) slot(cons consumer) string { return cons.slot + "_" + b.id }

// compare writes the workload into a new database per identity (in the
// order given), with the bench table at that replica identity, then drains
// them through every consumer in turn, interleaved: each consumer drains
// every identity's backlog before the next consumer starts, so that the
// identities are compared under the same load of a shared machine. A
// backlog's slots are made before its workload and after the previous one's:
// each consumer reads its own database's changes and no other's.
func compare(ctx context.Context, c *pgtest.Cluster, o options, run int, order []string, snapshots bool) (map[string]identityRun, error) {
	var backlogs []*backlog
	defer func() {
		for _, b := range backlogs {
			b.conn.Close(ctx)
			dropDatabase(ctx, c, b.db)
		}
	}()
	for _, id := range order {
		b := &backlog{id: id, db: fmt.Sprintf("bench%d_%s", run, id)}
		if err := c.CreateDatabase(ctx, b.db); err != nil {
			return nil, err
		}
		conn, err := pgx.Connect(ctx, c.DSN(b.db))
		if err != nil {
			dropDatabase(ctx, c, b.db)
			return nil, err
		}
		b.conn = conn
		backlogs = append(backlogs, b)
		if _, err := conn.Exec(ctx, table+identityDDL("sale_order_line", id)+publications); err != nil {
			return nil, err
		}
		for _, cons := range consumers {
			if _, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", b.slot(cons)); err != nil {
				return nil, err
			}
		}
		t0 := time.Now()
		if b.end, b.run.wal, err = workload(ctx, c, conn, o.rows, o.txRows); err != nil {
			return nil, fmt.Errorf("identity %s: %w", id, err)
		}
		log.Printf("%s: workload written in %.1fs (%d bytes of WAL); to drain up to %s", b.db, time.Since(t0).Seconds(), b.run.wal.total().Bytes, audit.FormatLSN(b.end))
	}
	for i, cons := range consumers {
		for _, b := range backlogs {
			var d drain
			var err error
			if cons.profile == "" {
				d, err = runRecvlogical(ctx, b.conn, c, b.db, b.slot(cons), b.end)
			} else {
				d, err = runCdcaudit(ctx, b.conn, o, c, b.db, b.slot(cons), cons.profile, b.end, snapshots, nil)
			}
			if err != nil {
				return nil, fmt.Errorf("identity %s, %s: %w", b.id, cons.name, err)
			}
			log.Printf("run %d/%d %-7s: %-38s %s", run, o.runs, b.id, consumers[i].name, d.summary(2*o.rows))
			b.run.drains = append(b.run.drains, d)
		}
	}
	out := map[string]identityRun{}
	for _, b := range backlogs {
		out[b.id] = b.run
	}
	return out, nil
}

// identityDDL sets table's replica identity: FULL, or left at DEFAULT (its
// primary key).
func identityDDL(table, id string) string {
	if id == "full" {
		return "ALTER TABLE " + table + " REPLICA IDENTITY FULL;\n"
	}
	return ""
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

// insertRows inserts the bench table's rows $1 to $2.
const insertRows = `INSERT INTO sale_order_line (order_id, product_id, name, product_uom_qty, price_unit, discount, price_subtotal, state, sequence, create_uid, create_date, write_uid, write_date)
	SELECT g / 10, g % 997, 'Product ' || g || ' — "Widget", size L', (g % 50) + 0.5, 12.34 + g % 100, 0, ((g % 50) + 0.5) * (12.34 + g % 100), 'draft', g % 10, 2, now() AT TIME ZONE 'UTC', 2, now() AT TIME ZONE 'UTC'
	FROM generate_series($1::int, $2::int) g`

// workloadWAL is the WAL the server wrote for the workload, by phase.
type workloadWAL struct{ inserts, updates walSpan }

func (w workloadWAL) total() walSpan { return w.inserts.add(w.updates) }

// workload writes the changes after a checkpoint and returns an LSN inside
// the last transaction, after its last change (a consumer that has stored a
// commit at or past it has everything), and the WAL each phase wrote.
func workload(ctx context.Context, c *pgtest.Cluster, conn *pgx.Conn, rows, txRows int) (uint64, workloadWAL, error) {
	return pacedWorkload(ctx, c, conn, rows, txRows, 0)
}

// pacedWorkload is workload with a transaction begun every interval at
// most (0: as fast as the server takes them).
func pacedWorkload(ctx context.Context, c *pgtest.Cluster, conn *pgx.Conn, rows, txRows int, every time.Duration) (uint64, workloadWAL, error) {
	upd := `UPDATE sale_order_line SET state = 'sale', discount = 5, write_uid = 6, write_date = now() AT TIME ZONE 'UTC' WHERE id BETWEEN $1 AND $2`
	var wal workloadWAL
	// Both identities start from a checkpoint: the same pages get a full
	// image on their first change.
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return 0, wal, err
	}
	start, err := currentWAL(ctx, conn)
	if err != nil {
		return 0, wal, err
	}
	var last uint64
	t0, n := time.Now(), 0
	for _, phase := range []struct {
		q   string
		wal *walSpan
	}{{insertRows, &wal.inserts}, {upd, &wal.updates}} {
		for lo := 1; lo <= rows; lo += txRows {
			hi := min(lo+txRows-1, rows)
			if every > 0 {
				time.Sleep(time.Until(t0.Add(time.Duration(n) * every)))
				n++
			}
			tx, err := conn.Begin(ctx)
			if err != nil {
				return 0, wal, err
			}
			if _, err := tx.Exec(ctx, phase.q, lo, hi); err != nil {
				return 0, wal, err
			}
			var lsn string
			if err := tx.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
				return 0, wal, err
			}
			if err := tx.Commit(ctx); err != nil {
				return 0, wal, err
			}
			if last, err = audit.ParseLSN(lsn); err != nil {
				return 0, wal, err
			}
		}
		if *phase.wal, start, err = walSince(ctx, c, conn, start); err != nil {
			return 0, wal, err
		}
	}
	return last, wal, nil
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
	ws := serverProcs{}
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
			d.anonKB = max(d.anonKB, anonRSS(cmd.Process.Pid))
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

// runCdcaudit drains the backlog up to end through cdcaudit from slot;
// with load, the API is read meanwhile (--api-load).
func runCdcaudit(ctx context.Context, conn *pgx.Conn, o options, c *pgtest.Cluster, db, slot, prof string, end uint64, snapshots bool, load *apiLoad) (drain, error) {
	dataDir, err := os.MkdirTemp("", "cdcaudit-bench-"+slot+"-")
	if err != nil {
		return drain{}, err
	}
	if o.keep {
		log.Printf("store of %s kept in %s", slot, dataDir)
	} else {
		defer os.RemoveAll(dataDir)
	}
	args := []string{"run", "--dsn", c.DSN(db), "--data-dir", dataDir, "--slot", slot,
		"--publication", "bench", "--http-addr", "127.0.0.1:0", "--log-level", "warn", "--profile", prof}
	if snapshots {
		args = append(args, "--snapshot", "never") // a drain measures the stream alone
	}
	args, stopProfile, err := profiled(args, o.cpuProfile, slot)
	if err != nil {
		return drain{}, err
	}
	defer stopProfile()
	addr := ""
	if load != nil {
		if i := slices.Index(args, "--http-addr"); args[i+1] == "127.0.0.1:0" {
			if args[i+1], err = freeAddr(); err != nil {
				return drain{}, err
			}
		}
		addr = args[slices.Index(args, "--http-addr")+1]
	}
	cmd := exec.Command(o.bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if load != nil {
		cmd.Env = append(os.Environ(), load.env())
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return drain{}, err
	}
	if load != nil {
		load.start(addr, o.rows)
		defer load.stop() // on an early return; a second stop is a no-op
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var d drain
	ws := serverProcs{}
	for {
		select {
		case err := <-exited:
			return drain{}, fmt.Errorf("cdcaudit exited early: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		d.anonKB = max(d.anonKB, anonRSS(cmd.Process.Pid))
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
	stopProfile()
	if load != nil {
		if d.load, err = load.stop(); err != nil {
			return drain{}, fmt.Errorf("the API load: %w", err)
		}
	}
	// Read before it is told to stop: its shutdown is not part of the drain.
	if d.cpu, err = processCPU(cmd.Process.Pid); err != nil {
		return drain{}, err
	}
	d.walsenderCPU = ws.total()
	ws.warnIfUnseen(slot)
	d.rssKB = peakRSS(cmd.Process.Pid)
	d.wchar = writtenBytes(cmd.Process.Pid)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		return drain{}, fmt.Errorf("cdcaudit did not exit cleanly: %v", err)
	}
	d.storeBytes = dirSize(dataDir)
	if o.keep {
		d.dataDir = dataDir
	}
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

// runAttachedMode is --pgbench: every run compares pgbench with each
// consumer attached (then --big-tx, when asked).
func runAttachedMode(ctx context.Context, c *pgtest.Cluster, o options, rep report, snapshots bool) error {
	if !snapshots {
		return fmt.Errorf("--pgbench: %s has no --snapshot flag (it would copy pgbench's tables first)", o.bin)
	}
	rep.LoadAverageStart = loadAverage()
	fmt.Printf("load average at start: %s\n", rep.LoadAverageStart)
	var runs [][]attached
	for r := 1; r <= o.runs; r++ {
		a, err := benchAttached(ctx, c, o, r)
		if err != nil {
			return fmt.Errorf("run %d, --pgbench: %w", r, err)
		}
		runs = append(runs, a)
	}
	if o.bigTx > 0 {
		var err error
		if rep.BigTx, err = benchBigTx(ctx, c, o, snapshots); err != nil {
			return fmt.Errorf("big transaction: %w", err)
		}
	}
	rep.LoadAverageEnd = loadAverage()
	fmt.Printf("load average at end:   %s\n\n", rep.LoadAverageEnd)
	if len(runs) > 0 {
		printAttached(o, runs)
	}
	if rep.BigTx != nil {
		printBigTx(rep.BigTx)
	}
	rep.Attached = runs
	if o.jsonOut != "" {
		return writeJSON(o.jsonOut, rep)
	}
	return nil
}
