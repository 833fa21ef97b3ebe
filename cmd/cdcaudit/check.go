package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/replication"
)

const checkAbout = `
Check, without changing anything, whether a PostgreSQL server is ready for
'cdcaudit run' with the same settings, and say how to fix what is not:
wal_level, the role's REPLICATION privilege, free replication slots and WAL
senders, the two publications (inserts and truncates of all tables; updates
and deletes of the tables with a usable replica identity), tables whose
updates and deletes are not captured (no primary key, REPLICA IDENTITY
NOTHING) or whose before-images hold the key only, generated columns (never
published), and a slot held by another process or about to be invalidated.

Each finding is OK, WARN (cdcaudit will run, but something is lost or at
risk) or FAIL (cdcaudit cannot run until it is fixed), with the fix.

Settings come from flags, CDCAUDIT_* variables and --config as for 'run';
with databases in the --config file, each database is checked in turn.
Exit status: 0 when nothing FAILs, 1 when something does or the server
cannot be reached, 2 on bad usage.`

const checkExamples = `  cdcaudit check --dsn postgres://cdcaudit:secret@db:5432/erp
  cdcaudit check --config /etc/cdcaudit.yml`

func (c *cli) check(args []string) int {
	fs := c.flagSet("check", "--dsn URL [flags]", checkAbout, checkExamples)
	set := config.Bind(fs.FlagSet, config.KeyDSN, config.KeySlot, config.KeyPublication, config.KeyTables, config.KeyExclude).
		Require(config.KeyDSN)
	fs.order = []string{"dsn", "config", "slot", "publication", "tables", "exclude"}
	if code, done := c.parse(fs, args); done {
		return code
	}
	cfg, err := set.Load(c.env)
	if err != nil {
		return c.usageErr("check", err)
	}
	ctx, stop := signalContext()
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// Each database of databases is checked in turn, with its slot and
	// publication.
	code := exitOK
	for i, d := range cfg.Databases() {
		if i > 0 {
			fmt.Fprintln(c.stdout)
		}
		if cc := c.checkDatabase(ctx, cfg.For(d), log); cc != exitOK {
			code = cc
		}
	}
	return code
}

// checkDatabase checks one database and prints its findings.
func (c *cli) checkDatabase(ctx context.Context, cfg *config.Config, log *slog.Logger) int {
	findings, err := replication.Check(ctx, replication.Config{
		DSN:         cfg.DSN,
		Slot:        cfg.Slot,
		Publication: cfg.Publication,
		Tables:      cfg.Tables,
		Exclude:     cfg.Exclude,
		Logger:      log,
	})
	fmt.Fprintf(c.stdout, "Checking %s (slot %s, publication %s)\n\n", config.DescribeDSN(cfg.DSN), cfg.Slot, cfg.Publication)
	rows := make([]findingRow, 0, len(findings))
	for _, f := range findings {
		rows = append(rows, findingRow{level: string(f.Level), check: f.Check, message: f.Message, fix: f.Fix})
	}
	fails := 0
	if len(rows) > 0 || err == nil {
		fails = printFindings(c.stdout, rows, c.useColor(c.stdout))
	}
	if err != nil {
		return c.fail("check", err)
	}
	if fails > 0 {
		return exitFail
	}
	return exitOK
}

type findingRow struct{ level, check, message, fix string }

// printFindings prints findings as a table, fixes indented under their
// finding, then a summary line; it returns the number of FAILs.
func printFindings(w io.Writer, rows []findingRow, color bool) (fails int) {
	width := 5
	for _, r := range rows {
		width = max(width, len(r.check))
	}
	indent := strings.Repeat(" ", 2+4+2+width+2)
	warns := 0
	for _, r := range rows {
		level := strings.ToUpper(r.level)
		style := ansiGreen
		switch level {
		case "FAIL":
			fails++
			style = ansiRed + ansiBold
		case "WARN":
			warns++
			style = ansiYellow
		}
		lines := strings.Split(strings.TrimRight(r.message, "\n"), "\n")
		fmt.Fprintf(w, "  %s  %-*s  %s\n", paint(color, style, fmt.Sprintf("%-4s", level)), width, r.check, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(w, "%s%s\n", indent, l)
		}
		if fix := strings.TrimSpace(r.fix); fix != "" {
			for i, l := range strings.Split(fix, "\n") {
				prefix := "fix: "
				if i > 0 {
					prefix = "     "
				}
				fmt.Fprintf(w, "%s%s\n", indent, paint(color, ansiCyan, prefix+l))
			}
		}
	}
	fmt.Fprintln(w)
	switch {
	case len(rows) == 0:
		fmt.Fprintln(w, "No checks ran.")
	case fails > 0:
		fmt.Fprintf(w, "%s, %s: fix the FAIL lines before 'cdcaudit run'.\n", plural(fails, "check failed", "checks failed"), plural(warns, "warning", "warnings"))
	case warns > 0:
		fmt.Fprintf(w, "Ready, with %s.\n", plural(warns, "warning", "warnings"))
	default:
		fmt.Fprintln(w, "Ready: every check passed.")
	}
	return fails
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
