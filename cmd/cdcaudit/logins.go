package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/cdcaudit/cdcaudit/applog"
	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/sink"
)

const loginsAbout = `
List the logins 'cdcaudit run' read in Odoo's log (app_log): successful
and failed, with the login as typed (also when no such user exists), the
client's address and the database, oldest first (UTC).

Odoo writes nothing to the database for a failed login: its log is the only
place it shows. Bursts of failures raise failed_login_burst alerts.

While 'cdcaudit run' holds the store, the daemon reads it for logins (over
data-dir/cdcaudit.sock, which only the store's owner may use).

Exit status: 0 success, 1 unreadable store, 2 bad usage.`

const loginsExamples = `  cdcaudit logins --data-dir /var/lib/cdcaudit --failed --since 2026-12-01
  cdcaudit logins --data-dir /var/lib/cdcaudit --login bob --format json`

func (c *cli) logins(args []string) int {
	fs := c.flagSet("logins", "--data-dir DIR [--login LOGIN] [--ip IP] [--failed] [--since TIME] [--format table|json]", loginsAbout, loginsExamples)
	set := config.Bind(fs.FlagSet, config.KeyDataDir).Require(config.KeyDataDir)
	fs.Lookup("data-dir").Usage = "`directory` of the audit store [CDCAUDIT_DATA_DIR]"
	login := fs.String("login", "", "only the attempts for this `login`")
	ip := fs.String("ip", "", "only the attempts from this `address`")
	failed := fs.Bool("failed", false, "only failed logins")
	since := fs.String("since", "", "only from this `time` on (RFC 3339, or a date: 2026-12-01)")
	format := fs.String("format", "table", "output `format`: table, or json (an array)")
	fs.order = []string{"data-dir", "login", "ip", "failed", "since", "format", "config"}
	if code, done := c.parse(fs, args); done {
		return code
	}
	cfg, err := set.Load(c.env)
	if err != nil {
		return c.usageErr("logins", err)
	}
	if *format != "table" && *format != "json" {
		return c.usageErr("logins", fmt.Errorf("--format: %q is not a format (want table or json)", *format))
	}
	from, err := parseTime("--since", *since)
	if err != nil {
		return c.usageErr("logins", err)
	}
	store, err := openTrail(cfg.DataDir)
	if err != nil {
		return c.fail("logins", err)
	}
	defer store.Close()
	all, err := applog.ReadLogins(store.LoadState)
	if err != nil {
		if !errors.Is(err, sink.ErrDamaged) {
			err = fmt.Errorf("%w: the login records do not decode: %v", sink.ErrDamaged, err)
		}
		return c.fail("logins", err)
	}
	m := applog.Match{Login: *login, IP: *ip, Since: from}
	if *failed {
		m.Result = applog.ResultFailed
	}
	list := applog.Filter(all, m)
	if *format == "json" {
		if list == nil {
			list = []applog.Record{}
		}
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(list); err != nil {
			return c.fail("logins", err)
		}
		return exitOK
	}
	if len(all) == 0 {
		fmt.Fprintln(c.stdout, "No logins in this store: 'cdcaudit run' records them when app_log names Odoo's log file.")
		return exitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME (UTC)\tRESULT\tLOGIN\tIP\tDB")
	for _, r := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Time.UTC().Format("2006-01-02 15:04:05.000"), r.Result,
			clean(r.Login.Login), orDash(r.IP), clean(r.DB))
	}
	return exitCode(tw.Flush())
}

func exitCode(err error) int {
	if err != nil {
		return exitFail
	}
	return exitOK
}
