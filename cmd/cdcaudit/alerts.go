package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/internal/pipeline"
	"github.com/cdcaudit/cdcaudit/sink"
)

const alertsAbout = `
List the alerts 'cdcaudit run' raised, newest first: when (UTC), kind, user,
summary, and where each was delivered. Kinds (docs/alerts.md):

  new_device          a sign-in from a browser/OS/device/country not seen for
                      that user within new_device_window (not a first sign-in)
  login               every sign-in (only when a route asks for kind=login)
  orm_bypass          a transaction that changed rows outside the application
  suspicious, failed_login_burst, session_terminated, direct_db
                      raised by the other watchers when they are configured

Every alert is kept in the store, queued in the same transaction as the
change that caused it; alert_routes says where they are delivered (mail,
webhook), and a delivery is recorded once made: none is made twice.

While 'cdcaudit run' holds the store, the daemon reads it for alerts (over
data-dir/cdcaudit.sock, which only the store's owner may use).

Exit status: 0 success, 1 unreadable store, 2 bad usage.`

const alertsExamples = `  cdcaudit alerts --data-dir /var/lib/cdcaudit --kind new_device --since 2026-11-01
  cdcaudit alerts --data-dir /var/lib/cdcaudit --user alice --format json`

func (c *cli) alerts(args []string) int {
	fs := c.flagSet("alerts", "--data-dir DIR [--kind KIND] [--user LOGIN] [--since T] [--format table|json]", alertsAbout, alertsExamples)
	set := config.Bind(fs.FlagSet, config.KeyDataDir).Require(config.KeyDataDir)
	fs.Lookup("data-dir").Usage = "`directory` of the audit store [CDCAUDIT_DATA_DIR]"
	kind := fs.String("kind", "", "only alerts of this `kind` (new_device, login, orm_bypass, suspicious, failed_login_burst, session_terminated, direct_db)")
	user := fs.String("user", "", "only alerts about the user with this `login` (or #ID for a user id)")
	since := fs.String("since", "", "only alerts of things that happened at or after `time`: RFC 3339 or a date (midnight UTC)")
	format := fs.String("format", "table", "output `format`: table, or json (an array of alerts, each with its deliveries)")
	fs.order = []string{"data-dir", "kind", "user", "since", "format", "config"}
	if code, done := c.parse(fs, args); done {
		return code
	}
	cfg, err := set.Load(c.env)
	if err != nil {
		return c.usageErr("alerts", err)
	}
	f, err := alertFilter(*kind, *user, *since)
	if err != nil {
		return c.usageErr("alerts", err)
	}
	if *format != "table" && *format != "json" {
		return c.usageErr("alerts", fmt.Errorf("--format: %q is not a format (want table or json)", *format))
	}
	store, err := openTrail(cfg.DataDir)
	if err != nil {
		return c.fail("alerts", err)
	}
	defer store.Close()
	list, err := alerts.List(store.LoadState, f)
	if err != nil {
		if !errors.Is(err, sink.ErrDamaged) {
			err = fmt.Errorf("%w: the alerts do not decode: %v", sink.ErrDamaged, err)
		}
		return c.fail("alerts", err)
	}
	if *format == "json" {
		if list == nil {
			list = []alerts.Listed{}
		}
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(list); err != nil {
			return c.fail("alerts", err)
		}
		return exitOK
	}
	writeAlerts(c.stdout, list)
	return exitOK
}

// alertFilter reads the command's (and the API's) filters.
func alertFilter(kind, user, since string) (alerts.Filter, error) {
	var f alerts.Filter
	if kind != "" && !slices.Contains(alerts.Kinds, kind) {
		return f, fmt.Errorf("--kind: %q is not an alert kind (want one of %s)", kind, strings.Join(alerts.Kinds, ", "))
	}
	f.Kind = kind
	if id, ok := strings.CutPrefix(user, "#"); ok {
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil || n <= 0 {
			return f, fmt.Errorf("--user: %q is not #<user id>", user)
		}
		f.UserID = n
	} else {
		f.Login = user
	}
	var err error
	f.Since, err = parseTime("--since", since)
	return f, err
}

func writeAlerts(w io.Writer, list []alerts.Listed) {
	if len(list) == 0 {
		fmt.Fprintln(w, "No alerts.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME (UTC)\tKIND\tUSER\tSUMMARY\tDELIVERED\tID")
	for _, a := range list {
		who := a.Login
		if who == "" && a.UserID > 0 {
			who = "#" + strconv.FormatInt(a.UserID, 10)
		}
		if who == "" {
			who = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Time.UTC().Format("2006-01-02 15:04:05"), a.Kind, clean(who),
			clean(a.Summary), a.DeliveryStatus(), clean(a.ID))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d %s\n", len(list), plural(len(list), "alert", "alerts"))
}

// alertSetup reads the alert settings: the stream stage's options and, when
// routes are configured, the deliverer as a source beside the stream.
func alertSetup(cfg *config.Config, store *sink.Store, m alerts.DeliveryMetrics, log *slog.Logger) (alerts.StageOptions, []pipeline.Source, error) {
	routes, err := alerts.ParseRoutes(cfg.AlertRoutes)
	if err != nil {
		return alerts.StageOptions{}, nil, fmt.Errorf("alert_routes: %w", err)
	}
	stage := alerts.StageOptions{NewDeviceWindow: cfg.NewDeviceWindow, Logins: alerts.RaisesLogins(routes)}
	if len(routes) == 0 {
		return stage, nil, nil
	}
	opts := alerts.DelivererOptions{Routes: routes, Mailbox: cfg.AlertMailbox, Log: log, Metrics: m}
	email, webhook := alerts.Channels(routes)
	if email {
		password, err := cfg.ReadSMTPPassword()
		if err != nil {
			return stage, nil, err
		}
		if opts.Mailer, err = alerts.NewMailer(alerts.MailConfig{Addr: cfg.SMTPAddr, TLS: cfg.SMTPTLS,
			User: cfg.SMTPUser, Password: password, From: cfg.SMTPFrom}); err != nil {
			return stage, nil, err
		}
	}
	if webhook {
		secret, err := cfg.ReadWebhookSecret()
		if err != nil {
			return stage, nil, err
		}
		if opts.Webhook, err = alerts.NewWebhook(cfg.WebhookURL, secret, 0); err != nil {
			return stage, nil, err
		}
	}
	d, err := alerts.NewDeliverer(store, opts)
	if err != nil {
		return stage, nil, err
	}
	log.Info("alerts are delivered", "routes", cfg.AlertRoutes)
	return stage, []pipeline.Source{d.Run}, nil
}
