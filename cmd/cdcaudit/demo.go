package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/api"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/internal/demo"
	"github.com/cdcaudit/cdcaudit/internal/httpserver"
	"github.com/cdcaudit/cdcaudit/internal/logging"
	"github.com/cdcaudit/cdcaudit/internal/pipeline"
	"github.com/cdcaudit/cdcaudit/metrics"
	"github.com/cdcaudit/cdcaudit/profile"
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

Open the console (the web page of cdcaudit) with the link printed: it signs
you in once as admin (the link holds a one-time code, good for 10 minutes,
printed nowhere else) and shows the sessions, the changes as they happen,
each record's history, the users, a dashboard and exports.

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
	httpAddr := fs.String("http-addr", "127.0.0.1:0", "`address` of the console, the API, /metrics and /healthz (port 0 picks a free port)")
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
	if err := httpserver.ValidateAddr(*httpAddr); err != nil {
		return c.usageErr("demo", fmt.Errorf("--http-addr: %w", err))
	}
	if err := logging.ValidateLevel(*logLevel); err != nil {
		return c.usageErr("demo", fmt.Errorf("--log-level: %w", err))
	}
	cc := *c // runDemo wraps its stdout
	return cc.runDemo(*dataDir, *httpAddr, *rate, *duration, *logLevel)
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

// runDemo tells the user what the demo (internal/demo) does while it plays.
func (c *cli) runDemo(dataDir, httpAddr string, rate float64, duration time.Duration, logLevel string) int {
	color := c.useColor(c.stdout)
	lines := newLineFormat(color, c.termWidth(c.stdout))
	// Events are shown from a goroutine of their own: serialize all output.
	c.stdout = &syncWriter{w: c.stdout}
	say := func(format string, args ...any) { fmt.Fprintf(c.stdout, format+"\n", args...) }
	ctx, stop := signalContext()
	defer stop()

	say("%s", paint(color, ansiBold, "cdcaudit demo")+" — starting a throwaway PostgreSQL server…")
	log := newLogger(c.stderr, logging.DefaultFormat, logLevel)
	reg := metrics.NewRegistry()
	var m *metrics.Metrics // the demo database's, once its DSN is known
	d, err := demo.Start(ctx, demo.Options{
		DataDir: dataDir,
		Daemon: func(dsn, dataDir string) pipeline.Config {
			cfg := config.Defaults()
			cfg.DSN, cfg.DataDir, cfg.Profile = dsn, dataDir, profile.ChoiceOdoo
			cfg.Source, _ = config.DefaultSource(dsn)
			m = reg.Source(cfg.Source)
			return pipelineConfig(&cfg, m, log)
		},
		Logf: func(format string, args ...any) { fmt.Fprintf(c.stderr, "  "+format+"\n", args...) },
	})
	if err != nil {
		if ctx.Err() != nil {
			return exitOK
		}
		return c.fail("demo", err)
	}
	// The console and the API on the demo's store. No password or token
	// signs in: only the one-time code of the link printed below.
	stopStreams := make(chan struct{})
	served, code, err := demoConsole(d, m, log, stopStreams)
	if err != nil {
		d.Stop()
		return c.fail("demo", err)
	}
	defer served.close()
	hs, err := startHTTP(httpSettings{addr: httpAddr, routes: served.routes}, reg, log.With("component", "http"))
	if err != nil {
		d.Stop()
		return c.fail("demo", fmt.Errorf("--http-addr %s: %w", httpAddr, err))
	}
	stopHTTP := sync.OnceFunc(func() {
		close(stopStreams)
		hs.shutdown()
	})
	defer stopHTTP()

	base := "http://" + hs.addr
	say("")
	say("  PostgreSQL  %s", d.DSN)
	if d.PSQL != "" {
		say("              make your own changes: %s '%s'", d.PSQL, d.DSN)
	}
	say("  store       %s", d.DataDir)
	say("  metrics     %s/metrics   health %s/healthz", base, base)
	// The one place the code is shown: never in a log line.
	say("  console: %s/#once=%s", base, code)
	say("              (signs you in as admin, once, within 10 minutes)")
	if rate > 0 {
		say("  workload    %g requests/s by admin, alice, bob and carol (Odoo 18); a psql edit every %d requests", rate, demo.RawEditEvery)
	} else {
		say("  workload    none (--rate 0): make your own changes")
	}
	stopHint := "Ctrl-C to stop"
	if duration > 0 {
		stopHint = fmt.Sprintf("stopping after %s, or Ctrl-C", duration)
	}
	say("")
	say("Every change, as soon as it is durable in the store (%s).", stopHint)
	say("WHO is the login, #the session (a pseudonym) and how cdcaudit knows: user via session_row (a device row in")
	say("the same transaction), message, row_user (write_uid/create_uid), tx_peer (another row of the transaction);")
	say("session via same_tx, message, only_active, or ambiguous (several open: none named, the event lists them).")
	say("A lone delete names no one: none (the event lists the users active then as candidates).")
	say("")
	say("%s", lines.header())
	d.Play(rate, demo.Watcher{
		Show:    func(e *audit.Event) { say("%s", lines.format(e)) },
		Warn:    func(err error) { log.Warn("workload transaction failed", "err", err) },
		Stopped: func(err error) { say("%s", paint(color, ansiYellow, err.Error())) },
	})

	status := time.NewTicker(30 * time.Second)
	defer status.Stop()
	var timeout <-chan time.Time
	if duration > 0 {
		t := time.NewTimer(duration)
		defer t.Stop()
		timeout = t.C
	}
	failed := false
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-timeout:
			break wait
		case <-d.Done():
			failed = true
			break wait
		case <-status.C:
			ev, tx := d.Counts()
			say("%s", paint(color, ansiDim, fmt.Sprintf("── %s events from %s transactions stored · metrics %s/metrics ──",
				thousands(ev), thousands(tx), base)))
		}
	}

	say("")
	if ctx.Err() != nil {
		say("Stopping (Ctrl-C again to quit at once)…")
	} else if !failed {
		say("Stopping…")
	}
	stopHTTP() // the API reads the store Stop closes
	sum := d.Stop()
	if !sum.CaughtUp {
		say("(the last workload transaction did not reach the store within 20s; it stays in the slot)")
	}

	say("")
	if sum.Err != nil {
		fmt.Fprintf(c.stderr, "cdcaudit demo: the pipeline failed: %v\n", sum.Err)
	}
	say("%s %s events stored (%s shown above, from %s transactions).",
		paint(color, ansiBold, "Done."), thousands(sum.Stored), thousands(sum.Shown), thousands(sum.Transactions))
	if sum.Head != "" {
		say("Chain head: %s", sum.Head)
	}
	what := "The store is"
	if d.Temporary {
		what = "The store (a temporary directory; delete it when done) is"
	}
	say("%s in %s", what, d.DataDir)
	self := selfCommand()
	dir := shellQuote(d.DataDir)
	say("")
	say("Look at it:")
	say("  %s export --data-dir %s --format jsonl | less", self, dir)
	say("  %s export --data-dir %s --format csv --table 'sale_*' --op update,delete --out changes.csv", self, dir)
	say("  %s verify --data-dir %s", self, dir)
	say("  %s sessions --data-dir %s", self, dir)
	say("  %s events --data-dir %s --record public.sale_order:1   # one order's history (--at TIME: as it was then)", self, dir)
	if sum.Err != nil {
		return exitFail
	}
	return exitOK
}

// demoConsole serves the API and the console on the demo's store, with no
// password or token sign-in, and makes the one-time code of the link the
// demo prints: it signs in as admin, once, within 10 minutes. Closing done
// ends the API's event streams.
func demoConsole(d *demo.Demo, m *metrics.Metrics, log *slog.Logger, done <-chan struct{}) (*apiServer, string, error) {
	cfg := config.Defaults()
	cfg.DataDir, cfg.Profile = d.DataDir, profile.ChoiceNone
	src, err := apiSource(&cfg, d.Store(), nil)
	if err != nil {
		return nil, "", err
	}
	served, err := apiRoutes(&cfg, []api.Source{src}, m, nil, log, done)
	if err != nil {
		return nil, "", err
	}
	code, err := served.auth.OneTimeCode(access.Admin, 10*time.Minute)
	if err != nil {
		served.close()
		return nil, "", err
	}
	return served, code, nil
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

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:=@,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
