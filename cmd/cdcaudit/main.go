// Command cdcaudit records every row change of a PostgreSQL database as a
// tamper-evident audit event, from the logical replication stream.
//
//	cdcaudit run     --dsn URL --data-dir DIR   capture changes into the store
//	cdcaudit check   --dsn URL                  preflight: is the server ready?
//	cdcaudit export  --data-dir DIR             events as JSON Lines, CSV or XLSX
//	cdcaudit events  --data-dir DIR --record T:K  one record's history, or its row --at a time
//	cdcaudit verify  --data-dir DIR             recompute the hash chain (or --export: check an export against its manifest)
//	cdcaudit reindex --data-dir DIR             rebuild the store's indexes
//	cdcaudit compact --data-dir DIR             rewrite a stopped store into a fresh file
//	cdcaudit sessions --data-dir DIR            the application's login sessions
//	cdcaudit logins  --data-dir DIR             logins and failed logins from Odoo's log
//	cdcaudit alerts  --data-dir DIR             the alerts raised and their deliveries
//	cdcaudit status  --data-dir DIR             a running daemon's state
//	cdcaudit health  [--url URL]                a running daemon's /healthz, as an exit status
//	cdcaudit snapshot --data-dir DIR --table G  snapshot tables again
//	cdcaudit demo                               everything, against a throwaway server
//
// Exit status: 0 success, 1 failure (a fatal error, a FAIL finding, a broken
// chain), 2 bad usage or configuration; verify 3: intact but gaps; events
// 4: the record was not found (or did not exist at --at).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/cdcaudit/cdcaudit/internal/config"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = ""

const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// cli is the process environment a command runs in; tests replace it.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	env            []string // "KEY=value", as os.Environ returns it
}

// getenv looks a variable up in c.env, the last one winning, as os.Getenv.
func (c *cli) getenv(name string) (string, bool) {
	for i := len(c.env) - 1; i >= 0; i-- {
		if k, v, _ := strings.Cut(c.env[i], "="); k == name {
			return v, true
		}
	}
	return "", false
}

type command struct {
	name     string
	synopsis string // one line, for the command list
	run      func(c *cli, args []string) int
}

var commands []command

func init() {
	commands = []command{
		{"run", "capture row changes from PostgreSQL into the audit store (the daemon)", (*cli).run},
		{"check", "check that a PostgreSQL server is ready for cdcaudit, and say how to fix what is not", (*cli).check},
		{"export", "write stored events as JSON Lines, CSV or XLSX, with a signed manifest if asked", (*cli).export},
		{"events", "one record's events, or the record as it was at a moment (--at)", (*cli).events},
		{"verify", "recompute the store's hash chain and report the first altered, removed or inserted event", (*cli).verify},
		{"reindex", "rebuild the store's indexes (by record, user, session, table, flag and time)", (*cli).reindex},
		{"backup", "write a consistent copy of the store, also while 'cdcaudit run' holds it", (*cli).backup},
		{"compact", "rewrite a stopped store into a fresh, compact file (records re-encoded into blocks)", (*cli).compact},
		{"sessions", "list the application's login sessions: user, device, location, activity, state", (*cli).sessions},
		{"logins", "list the logins and failed logins read in Odoo's log (app_log)", (*cli).logins},
		{"alerts", "list the alerts raised (new devices, orm_bypass changes, …) and where they were delivered", (*cli).alerts},
		{"status", "show a running daemon's checkpoint, slot and snapshot progress", (*cli).status},
		{"health", "ask a running daemon's /healthz (exit 0 healthy, 1 not): a container healthcheck", (*cli).health},
		{"token", "make an API token for the HTTP API (prints it once, and its configuration entry)", (*cli).token},
		{"snapshot", "make a running daemon snapshot tables again (e.g. added to the publication later)", (*cli).snapshot},
		{"demo", "run cdcaudit against a throwaway PostgreSQL with a live ERP workload", (*cli).demo},
		{"version", "print the version", (*cli).version},
		{"help", "show help for cdcaudit or for one command", (*cli).help},
	}
}

func main() {
	c := &cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, env: os.Environ()}
	os.Exit(c.main(os.Args[1:]))
}

func (c *cli) main(args []string) int {
	if len(args) == 0 {
		c.usage(c.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		c.usage(c.stdout)
		return exitOK
	case "-v", "-version", "--version":
		name = "version"
	}
	for _, cmd := range commands {
		if cmd.name == name {
			return cmd.run(c, args[1:])
		}
	}
	msg := fmt.Sprintf("cdcaudit: unknown command %q", name)
	if s := closest(name); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	fmt.Fprintf(c.stderr, "%s\nRun 'cdcaudit help' for the list of commands.\n", msg)
	return exitUsage
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprintf(w, `cdcaudit records every row change of a PostgreSQL database as a tamper-evident
audit event, read from the logical replication stream (pgoutput).

Usage:
  cdcaudit <command> [flags]

Commands:
`)
	for _, cmd := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", cmd.name, cmd.synopsis)
	}
	fmt.Fprintf(w, `
Try it in one command (starts a throwaway PostgreSQL and a live workload):
  cdcaudit demo

Run 'cdcaudit <command> --help' for a command's flags. Every setting of run
and check can also come from a YAML file (--config) or a CDCAUDIT_* variable;
flags win over variables, variables over the file.
`)
}

func (c *cli) help(args []string) int {
	if len(args) == 0 {
		c.usage(c.stdout)
		return exitOK
	}
	for _, cmd := range commands {
		if cmd.name == args[0] && cmd.name != "help" {
			return cmd.run(c, []string{"--help"})
		}
	}
	if args[0] == "help" {
		c.usage(c.stdout)
		return exitOK
	}
	fmt.Fprintf(c.stderr, "cdcaudit help: unknown command %q\n", args[0])
	return exitUsage
}

func (c *cli) version(args []string) int {
	fs := c.flagSet("version", "", "Print the version of cdcaudit, the Go version it was built with, and its source revision.", "")
	if code, done := c.parse(fs, args); done {
		return code
	}
	fmt.Fprintln(c.stdout, versionString())
	return exitOK
}

func versionString() string {
	v, rev, modified := version, "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	out := "cdcaudit " + v
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if modified {
			rev += "+dirty"
		}
		out += " (" + rev + ")"
	}
	return out + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}

// flags is a command's flag set with its help text.
type flags struct {
	*flag.FlagSet
	name, synopsis, about, examples string
	order                           []string // flags listed first in --help, in this order
}

// flagSet makes a command's flag set. synopsis is the usage line after
// "cdcaudit <name>", about says what the command does, and examples are
// shown after the flags.
func (c *cli) flagSet(name, synopsis, about, examples string) *flags {
	fs := flag.NewFlagSet("cdcaudit "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and help are printed by parse
	fs.Usage = func() {}
	return &flags{FlagSet: fs, name: name, synopsis: synopsis, about: about, examples: examples}
}

// parse parses args. done is true when the command must return code at
// once: after --help (0) or a bad flag (2).
func (c *cli) parse(fs *flags, args []string) (code int, done bool) {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		c.printHelp(c.stdout, fs)
		return exitOK, true
	}
	if err != nil {
		msg := strings.Replace(err.Error(), "flag provided but not defined: -", "unknown flag --", 1)
		msg = strings.Replace(msg, " for flag -", " for flag --", 1)
		fmt.Fprintf(c.stderr, "cdcaudit %s: %s\nRun 'cdcaudit %s --help' for usage.\n", fs.name, msg, fs.name)
		return exitUsage, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "cdcaudit %s: unexpected argument %q (this command takes only flags; see 'cdcaudit %s --help')\n", fs.name, fs.Arg(0), fs.name)
		return exitUsage, true
	}
	return 0, false
}

// usageErr reports a bad flag value or configuration.
func (c *cli) usageErr(name string, err error) int {
	fmt.Fprintf(c.stderr, "cdcaudit %s: %v\nRun 'cdcaudit %s --help' for usage.\n", name, err, name)
	return exitUsage
}

// fail reports a failure.
func (c *cli) fail(name string, err error) int {
	fmt.Fprintf(c.stderr, "cdcaudit %s: %v\n", name, err)
	return exitFail
}

func (c *cli) printHelp(w io.Writer, fs *flags) {
	fmt.Fprintf(w, "Usage: cdcaudit %s", fs.name)
	if fs.synopsis != "" {
		fmt.Fprintf(w, " %s", fs.synopsis)
	}
	fmt.Fprintf(w, "\n\n%s\n", strings.TrimSpace(fs.about))
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintf(w, "\nFlags:\n")
		printFlags(w, fs)
	}
	if fs.examples != "" {
		fmt.Fprintf(w, "\nExamples:\n%s\n", strings.TrimRight(fs.examples, "\n"))
	}
}

// printFlags lists flags GNU-style (--name VALUE): those of fs.order first,
// in that order, then the others alphabetically.
func printFlags(w io.Writer, fs *flags) {
	var list []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { list = append(list, f) })
	pos := func(name string) int {
		for i, n := range fs.order {
			if n == name {
				return i
			}
		}
		return len(fs.order)
	}
	sort.SliceStable(list, func(i, j int) bool {
		pi, pj := pos(list[i].Name), pos(list[j].Name)
		if pi != pj {
			return pi < pj
		}
		return list[i].Name < list[j].Name
	})
	for _, f := range list {
		arg, usage := flag.UnquoteUsage(f)
		if isBool(f) {
			arg = ""
		}
		if d := f.DefValue; d != "" && d != "0" && d != "0s" && d != "false" && d != "[]" && !strings.Contains(usage, "(default") {
			usage += " (default " + d + ")"
		}
		line := "  --" + f.Name
		if arg != "" {
			line += " " + arg
		}
		fmt.Fprintln(w, line)
		for _, l := range wrap(usage, 72) {
			fmt.Fprintf(w, "        %s\n", l)
		}
	}
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func wrap(s string, width int) []string {
	var lines []string
	var cur strings.Builder
	for _, word := range strings.Fields(s) {
		if cur.Len() > 0 && cur.Len()+1+len(word) > width {
			lines = append(lines, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(word)
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}

func closest(name string) string {
	names := make([]string, 0, len(commands))
	for _, cmd := range commands {
		names = append(names, cmd.name)
	}
	return config.Closest(name, names)
}
