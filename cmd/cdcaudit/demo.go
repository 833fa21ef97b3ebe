package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/internal/odoosim"
	"github.com/cdcaudit/cdcaudit/internal/pgtest"
	"github.com/cdcaudit/cdcaudit/internal/pipeline"
	"github.com/cdcaudit/cdcaudit/metrics"
	"github.com/cdcaudit/cdcaudit/sink"
)

const demoAbout = `
See cdcaudit work in one command. The demo starts a throwaway PostgreSQL
server (installing Debian's postgresql packages first when none is installed
and you are root), creates a database "odoo" holding an Odoo 18 database in
miniature (users, groups, login and device logs, API keys, contacts, sales
orders; testdata/odoo18), runs cdcaudit on it with its Odoo profile while
admin, alice, bob and carol work in it the way Odoo does — logging in from
laptops and phones, editing, confirming and deleting quotations and
contacts, a group change, a session logged out by admin — and prints every
audit event as soon as it is durable in the store, one line each: who made
the change (login), in which session, how cdcaudit knows, and a warning when
someone bypassed Odoo with raw SQL (every 40 requests, a psql edit of an
order total).

You can also connect to the demo database yourself (the address is printed)
and watch your own changes appear: a psql UPDATE of a business column is
flagged.

Ctrl-C stops the workload, waits until its last changes are stored, stops
PostgreSQL and prints where the store is, with the commands to export and
verify it and to list the sessions. The store is kept; the PostgreSQL server
and its files are not.`

const demoExamples = `  cdcaudit demo
  cdcaudit demo --rate 50 --data-dir ./demo-store --http-addr 127.0.0.1:9187
  cdcaudit demo --duration 30s`

func (c *cli) demo(args []string) int {
	fs := c.flagSet("demo", "[--data-dir DIR] [--http-addr ADDR] [--rate N] [--duration D]", demoAbout, demoExamples)
	dataDir := fs.String("data-dir", "", "`directory` of the audit store (default: a new temporary directory, kept at the end)")
	httpAddr := fs.String("http-addr", "127.0.0.1:0", "`address` for /metrics and /healthz (port 0 picks a free port)")
	rate := fs.Float64("rate", 5, "workload rate: `N` requests per second (0: no workload; make your own changes)")
	duration := fs.Duration("duration", 0, "stop by itself after this `duration` (0: run until Ctrl-C)")
	logLevel := fs.String("log-level", "warn", "`level` of cdcaudit's own log on stderr: debug, info, warn or error")
	fs.order = []string{"data-dir", "http-addr", "rate", "duration", "log-level"}
	if code, done := c.parse(fs, args); done {
		return code
	}
	if *rate < 0 || *rate > 10000 {
		return c.usageErr("demo", fmt.Errorf("--rate: %v is out of range (want 0 to 10000 requests per second)", *rate))
	}
	if *duration < 0 {
		return c.usageErr("demo", fmt.Errorf("--duration: %v is negative", *duration))
	}
	if _, _, err := net.SplitHostPort(*httpAddr); err != nil {
		return c.usageErr("demo", fmt.Errorf("--http-addr: %q is not host:port (e.g. 127.0.0.1:0)", *httpAddr))
	}
	switch *logLevel {
	case "debug", "info", "warn", "error":
	default:
		return c.usageErr("demo", fmt.Errorf("--log-level: %q is not a log level (want debug, info, warn or error)", *logLevel))
	}
	cc := *c // run() wraps its stdout
	d := &demo{cli: &cc, dataDir: *dataDir, httpAddr: *httpAddr, rate: *rate, duration: *duration, logLevel: *logLevel}
	return d.run()
}

// syncWriter serializes writes.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

type demo struct {
	*cli
	dataDir  string
	httpAddr string
	rate     float64
	duration time.Duration
	logLevel string

	color bool
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.stdout, format+"\n", args...)
}

func (d *demo) run() int {
	d.color = d.useColor(d.stdout)
	width := d.termWidth(d.stdout)
	// The feed prints from the pipeline's goroutine: serialize all output.
	out := &syncWriter{w: d.stdout}
	d.stdout = out
	ctx, stop := signalContext()
	defer stop()

	d.say("%s", paint(d.color, ansiBold, "cdcaudit demo")+" — starting a throwaway PostgreSQL server…")
	cluster, err := pgtest.Start(pgtest.Options{Logf: func(format string, args ...any) {
		fmt.Fprintf(d.stderr, "  "+format+"\n", args...)
	}})
	if err != nil {
		return d.fail("demo", fmt.Errorf("cannot start PostgreSQL: %w", err))
	}
	pgStopped := false
	stopPG := func() {
		if !pgStopped {
			pgStopped = true
			cluster.Stop()
		}
	}
	defer stopPG()
	if ctx.Err() != nil {
		return exitOK
	}

	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	err = cluster.CreateDatabase(setupCtx, demoDatabase)
	if err == nil {
		err = cluster.Exec(setupCtx, demoDatabase, odoosim.Schema)
	}
	cancel()
	if err != nil {
		return d.fail("demo", fmt.Errorf("cannot create the demo database: %w", err))
	}
	dsn := cluster.DSN(demoDatabase)

	keptNew := false
	if d.dataDir == "" {
		if d.dataDir, err = os.MkdirTemp("", "cdcaudit-demo-"); err != nil {
			return d.fail("demo", err)
		}
		keptNew = true
	}
	if abs, err := filepath.Abs(d.dataDir); err == nil {
		d.dataDir = abs
	}

	log := newLogger(d.stderr, "text", d.logLevel)
	m := metrics.New()
	hs, err := startHTTP(d.httpAddr, m, log.With("component", "http"), false)
	if err != nil {
		return d.fail("demo", fmt.Errorf("--http-addr %s: %w", d.httpAddr, err))
	}
	defer hs.shutdown()

	cfg := config.Defaults()
	cfg.DSN, cfg.DataDir, cfg.Profile = dsn, d.dataDir, "odoo"
	lines := newLineFormat(d.color, width)
	f := newFeed(out, lines.format)
	pctx, stopPipeline := context.WithCancel(context.Background())
	defer stopPipeline()
	pipeDone := make(chan error, 1)
	go func() { pipeDone <- pipeline.Run(pctx, pipelineConfig(&cfg, m, log, f.print)) }()

	// Start the workload only once the slot exists, so the feed shows it
	// from its first transaction.
	if err := waitForSlot(ctx, dsn, cfg.Slot, pipeDone); err != nil {
		if ctx.Err() != nil {
			stopPipeline()
			<-pipeDone
			return exitOK
		}
		return d.fail("demo", err)
	}

	base := "http://" + hs.addr
	d.say("")
	d.say("  PostgreSQL  %s", dsn)
	if psql := filepath.Join(cluster.BinDir, "psql"); fileExists(psql) {
		d.say("              make your own changes: %s '%s'", psql, dsn)
	}
	d.say("  store       %s", d.dataDir)
	d.say("  metrics     %s/metrics   health %s/healthz", base, base)
	if d.rate > 0 {
		d.say("  workload    %g requests/s by admin, alice, bob and carol (Odoo 18); a psql edit every %d requests", d.rate, rawEditEvery)
	} else {
		d.say("  workload    none (--rate 0): make your own changes")
	}
	stopHint := "Ctrl-C to stop"
	if d.duration > 0 {
		stopHint = fmt.Sprintf("stopping after %s, or Ctrl-C", d.duration)
	}
	d.say("")
	d.say("Every change, as soon as it is durable in the store (%s).", stopHint)
	d.say("WHO is the login, #the session (a pseudonym) and how cdcaudit knows: user via session_row (a device row in")
	d.say("the same transaction), message, row_user (write_uid/create_uid), tx_peer (another row of the transaction);")
	d.say("session via same_tx, message, only_active, or ambiguous (several open: none named, the event lists them).")
	d.say("A lone delete names no one: none (the event lists the users active then as candidates).")
	d.say("")
	f.println(lines.header())

	w := &workload{dsn: dsn, rate: d.rate, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 42))}
	wctx, stopWorkload := context.WithCancel(ctx)
	defer stopWorkload()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := w.run(wctx, func(err error) { log.Warn("workload transaction failed", "err", err) })
		if err != nil && wctx.Err() == nil {
			f.println(paint(d.color, ansiYellow, "workload stopped: "+err.Error()))
		}
	}()

	status := time.NewTicker(30 * time.Second)
	defer status.Stop()
	var timeout <-chan time.Time
	if d.duration > 0 {
		t := time.NewTimer(d.duration)
		defer t.Stop()
		timeout = t.C
	}
	var pipeErr error
	pipeFinished := false
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-timeout:
			break wait
		case pipeErr = <-pipeDone:
			pipeFinished = true
			break wait
		case <-status.C:
			ev, tx := f.counts()
			f.println(paint(d.color, ansiDim, fmt.Sprintf("── %s events from %s transactions stored · metrics %s/metrics ──",
				thousands(ev), thousands(tx), base)))
		}
	}

	d.say("")
	if ctx.Err() != nil {
		d.say("Stopping (Ctrl-C again to quit at once)…")
	} else if !pipeFinished {
		d.say("Stopping…")
	}
	stopWorkload()
	wg.Wait()
	if !pipeFinished {
		// Let the workload's last transaction reach the store before the
		// pipeline stops.
		if w.hasXID.Load() && !f.waitXID(w.lastXID.Load(), 20*time.Second) {
			d.say("(the last workload transaction did not reach the store within 20s; it stays in the slot)")
		}
		stopPipeline()
		select {
		case pipeErr = <-pipeDone:
		case <-time.After(2 * time.Minute):
			pipeErr = errors.New("the pipeline did not stop within 2 minutes")
		}
	}
	hs.shutdown()
	stopPG()

	events, head := storeSummary(d.dataDir)
	shown, txs := f.counts()
	d.say("")
	if pipeErr != nil {
		fmt.Fprintf(d.stderr, "cdcaudit demo: the pipeline failed: %v\n", pipeErr)
	}
	d.say("%s %s events stored (%s shown above, from %s transactions).",
		paint(d.color, ansiBold, "Done."), events, thousands(shown), thousands(txs))
	if head != "" {
		d.say("Chain head: %s", head)
	}
	what := "The store is"
	if keptNew {
		what = "The store (a temporary directory; delete it when done) is"
	}
	d.say("%s in %s", what, d.dataDir)
	self := selfCommand()
	dir := shellQuote(d.dataDir)
	d.say("")
	d.say("Look at it:")
	d.say("  %s export --data-dir %s --format jsonl | less", self, dir)
	d.say("  %s export --data-dir %s --format csv --table 'sale_*' --op update,delete --out changes.csv", self, dir)
	d.say("  %s verify --data-dir %s", self, dir)
	d.say("  %s sessions --data-dir %s", self, dir)
	d.say("  %s events --data-dir %s --record public.sale_order:1   # one order's history (--at TIME: as it was then)", self, dir)
	if pipeErr != nil {
		return exitFail
	}
	return exitOK
}

// waitForSlot waits until the pipeline has created its replication slot.
func waitForSlot(ctx context.Context, dsn, slot string, pipeDone <-chan error) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := pgx.Connect(qctx, dsn)
		if err == nil {
			var n int
			err = conn.QueryRow(qctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&n)
			conn.Close(context.Background())
			if err == nil && n > 0 {
				cancel()
				return nil
			}
		}
		cancel()
		select {
		case err := <-pipeDone:
			if err == nil {
				err = errors.New("stopped before it started streaming")
			}
			return fmt.Errorf("cdcaudit could not start: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("the replication slot was not created within 2 minutes")
		}
	}
}

// storeSummary returns the number of stored events and the head hash.
func storeSummary(dir string) (events, head string) {
	s, err := sink.OpenReadOnly(dir)
	if err != nil {
		return "?", ""
	}
	defer s.Close()
	_, h, n := s.Head()
	if n == 0 {
		return "0", ""
	}
	return thousands(n), h.String()
}

// selfCommand is how the user can run this binary again: "go run
// ./cmd/cdcaudit" under go run, else the name it was started by.
func selfCommand() string {
	exe := os.Args[0]
	if strings.Contains(exe, "go-build") || strings.HasPrefix(filepath.Base(exe), "__debug_bin") {
		return "go run ./cmd/cdcaudit"
	}
	if !strings.Contains(exe, "/") {
		return exe // found on $PATH
	}
	return shellQuote(exe)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:=@,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// demoDatabase is the demo's database.
const demoDatabase = "odoo"
