package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cdcaudit/cdcaudit/backup"
	"github.com/cdcaudit/cdcaudit/internal/config"
	"github.com/cdcaudit/cdcaudit/internal/pipeline"
	"github.com/cdcaudit/cdcaudit/metrics"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/sessionctl"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
	"github.com/cdcaudit/cdcaudit/storewatch"
)

const sessionsEndAbout = `
End application sessions: one by its id (as 'cdcaudit sessions' shows it; a
prefix that names one session will do), or with --user LOGIN --all every
open session of that login. The application's own means are used, as its
own revocation would (docs/session-control.md): with Odoo, the session's
files in --session-store are removed and its res_device_log rows marked
revoked (on a normal connection, in one transaction with cdcaudit's
logical message, so the change arrives in the trail attributed through
it); --session-end-sql and --session-end-webhook for other applications.

While 'cdcaudit run' holds the store, the daemon does it (over
data-dir/cdcaudit.sock, which only the store's owner may use) with its own
configuration; otherwise this command does it with the configuration it is
given. Every outcome — ok, not_found, failed and why — is appended to the
access log (action end_session), with who asked (this command's OS user).

Exit status: 0 every session ended or already gone, 1 an action failed or
the store cannot be written, 2 bad usage.`

const sessionsEndExamples = `  cdcaudit sessions end s3f2a9c41 --data-dir /var/lib/cdcaudit
  cdcaudit sessions end --user alice@example.com --all --config /etc/cdcaudit.yml`

// sessionsEndKeys are the configuration sessions end reads when it acts
// itself.
var sessionsEndKeys = []string{config.KeyDataDir, config.KeyDSN, config.KeyProfile, config.KeySessionStore,
	config.KeySessionEndSQL, config.KeySessionEndWebhook}

func (c *cli) sessionsEnd(args []string) int {
	const name = "sessions end"
	fs := c.flagSet(name, "ID | --user LOGIN --all  --data-dir DIR [flags]", sessionsEndAbout, sessionsEndExamples)
	set := config.Bind(fs.FlagSet, sessionsEndKeys...).Require(config.KeyDataDir)
	fs.Lookup("data-dir").Usage = "`directory` of the audit store [CDCAUDIT_DATA_DIR]"
	userFlag := fs.String("user", "", "end the sessions of the user with this `login` (with --all)")
	all := fs.Bool("all", false, "with --user: every open session of the user")
	format := fs.String("format", "table", "output `format`: table, or json (the outcomes)")
	fs.order = append(append([]string{}, sessionsEndKeys...), "user", "all", "format", "config")
	for i, k := range fs.order {
		fs.order[i] = config.FlagName(k)
	}
	id, args := sessionArg(args)
	if code, done := c.parse(fs, args); done {
		return code
	}
	switch {
	case (id == "") == (*userFlag == ""):
		return c.usageErr(name, errors.New("give one session ID, or --user LOGIN --all"))
	case *userFlag != "" && !*all:
		return c.usageErr(name, errors.New("--user ends every open session of the user: say so with --all"))
	case *format != "table" && *format != "json":
		return c.usageErr(name, fmt.Errorf("--format: %q is not a format (want table or json)", *format))
	}
	cfg, err := set.Load(c.env)
	if err != nil {
		return c.usageErr(name, err)
	}
	if err := cfg.CheckFiles(); err != nil {
		return c.usageErr(name, err)
	}
	// With databases, the database whose store --data-dir is: its DSN.
	dbCfg, ok := cfg.DatabaseAt(cfg.DataDir)
	if !ok {
		return c.usageErr(name, fmt.Errorf("with databases in the configuration, --data-dir names one database's store, <data_dir>/<source>: %s is none", cfg.DataDir))
	}
	cfg = dbCfg
	if id != "" {
		if id, err = c.expandSessionID(cfg.DataDir, id); err != nil {
			return c.fail(name, err)
		}
	}
	by := osUser()
	var outcomes []sessionctl.Outcome
	reply, err := backup.AskEndSession(cfg.DataDir, backup.EndSessionRequest{ID: id, User: *userFlag, By: by})
	switch {
	case err == nil:
		if err := json.Unmarshal(reply, &outcomes); err != nil {
			return c.fail(name, fmt.Errorf("the daemon's reply: %w", err))
		}
	case errors.Is(err, backup.ErrNoDaemon):
		if outcomes, err = endDirectly(cfg, id, *userFlag, by); err != nil {
			return c.fail(name, err)
		}
	default:
		return c.fail(name, err)
	}
	if *format == "json" {
		b, _ := json.MarshalIndent(outcomes, "", "  ")
		fmt.Fprintf(c.stdout, "%s\n", b)
	} else {
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SESSION\tUSER\tRESULT\tFILES\tROWS\tREASON")
		for _, o := range outcomes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", o.Session, dash(o.Login), o.Result, o.Files, o.Rows, dash(o.Reason))
		}
		tw.Flush()
		if len(outcomes) == 0 {
			fmt.Fprintf(c.stdout, "%s has no open session.\n", *userFlag)
		}
	}
	for _, o := range outcomes {
		if o.Result == sessionctl.ResultFailed {
			return exitFail
		}
	}
	return exitOK
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// sessionArg takes the session id out of args: the first argument that is
// no flag nor a flag's value (flags here take their value as --flag=v or
// --flag v; --all is the only boolean).
func sessionArg(args []string) (string, []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if i+1 < len(args) {
				return args[i+1], append(append([]string{}, args[:i]...), args[i+2:]...)
			}
			return "", args
		}
		if strings.HasPrefix(a, "-") {
			if !strings.Contains(a, "=") && strings.TrimLeft(a, "-") != "all" && !strings.HasPrefix(strings.TrimLeft(a, "-"), "h") {
				i++ // its value
			}
			continue
		}
		return a, append(append([]string{}, args[:i]...), args[i+1:]...)
	}
	return "", args
}

// expandSessionID turns a prefix into the session's full pseudonym.
func (c *cli) expandSessionID(dir, id string) (string, error) {
	store, err := openTrail(dir)
	if err != nil {
		return "", err
	}
	defer store.Close()
	st, err := readSessions(store)
	if err != nil {
		return "", err
	}
	full, err := expandSession(st, id)
	if err != nil {
		return "", errors.New(strings.Replace(err.Error(), "--session: ", "", 1))
	}
	return full, nil
}

// osUser names who runs the command, for the access log.
func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "unknown"
}

// controllerConfig maps the configuration onto sessionctl's.
func controllerConfig(cfg *config.Config, log *slog.Logger) (sessionctl.Config, error) {
	logins, groups := sessionctl.Exceptions(cfg.PolicyExceptions)
	var secret []byte
	if cfg.SessionEndWebhook != "" {
		var err error
		if secret, err = cfg.ReadWebhookSecret(); err != nil {
			return sessionctl.Config{}, err
		}
	}
	return sessionctl.Config{
		DSN:          cfg.DSN,
		Odoo:         cfg.Profile == profile.ChoiceOdoo || cfg.Profile == profile.ChoiceAuto || cfg.Profile == "",
		SessionStore: cfg.SessionStore,
		EndSQL:       cfg.SessionEndSQL,
		Webhook:      cfg.SessionEndWebhook,
		WebhookKey:   secret,
		Policies: sessionctl.Policies{IdleTimeout: cfg.PolicyIdleTimeout, MaxAge: cfg.PolicyMaxAge,
			OneSession: cfg.PolicyOneSession, ExceptLogins: logins, ExceptGroups: groups, DryRun: cfg.PolicyDryRun},
		Logger: log.With("component", "sessionctl"),
	}, nil
}

// endDirectly ends sessions without a daemon: the store is opened for
// writing (its access log, the alert's queue), the sessions are those it
// persisted.
func endDirectly(cfg *config.Config, id, login, by string) ([]sessionctl.Outcome, error) {
	if _, err := os.Stat(filepath.Join(cfg.DataDir, sink.FileName)); err != nil {
		return nil, fmt.Errorf("no store in %s: %w", cfg.DataDir, err)
	}
	store, err := sink.Open(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	st, err := sessions.ReadState(func(fn func(k, v []byte) error) error { return store.LoadState("sessions", fn) })
	if err != nil {
		return nil, err
	}
	w := sink.NewWriter(store, sink.WriterOptions{Queue: 1})
	defer w.Close()
	scfg, err := controllerConfig(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	scfg.Policies = sessionctl.Policies{}
	ctl, err := sessionctl.New(scfg, store)
	if err != nil {
		return nil, err
	}
	ctl.SetSessions(stateSessions(st.Sessions))
	ctl.SetState(func(ctx context.Context, recs []sink.StateRecord) error {
		if err := w.Submit(ctx, sink.Batch{State: recs}); err != nil {
			return err
		}
		return w.Flush(ctx)
	})
	return endRequest(ctl, backup.EndSessionRequest{ID: id, User: login, By: by}, sessionctl.Requester{Role: "admin", Login: by, Via: "cli"})
}

type stateSessions []sessions.Session

func (s stateSessions) Sessions() []sessions.Session { return s }

// endRequest runs one end_session request.
func endRequest(ctl *sessionctl.Controller, req backup.EndSessionRequest, by sessionctl.Requester) ([]sessionctl.Outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if req.User != "" {
		out, err := ctl.EndUser(ctx, req.User, by)
		if errors.Is(err, sessionctl.ErrUnknownUser) {
			return nil, fmt.Errorf("no session of %q is known", req.User)
		}
		return out, err
	}
	o, err := ctl.End(ctx, req.ID, by)
	if err != nil {
		return nil, err
	}
	return []sessionctl.Outcome{o}, nil
}

// daemonSessions is session control in the daemon: the controller, the
// store watcher, and what the pipeline is given of them.
type daemonSessions struct {
	ctl     *sessionctl.Controller
	signals chan sessions.Signal
	watcher *storewatch.Watcher
}

// newDaemonSessions makes session control for run. Without anything that
// can end a session its requests say so (sessionctl.ErrDisabled).
func newDaemonSessions(cfg *config.Config, store *sink.Store, m *metrics.Metrics, log *slog.Logger) (*daemonSessions, error) {
	scfg, err := controllerConfig(cfg, log)
	if err != nil {
		return nil, err
	}
	if m != nil {
		scfg.Metrics = m
	}
	ctl, err := sessionctl.New(scfg, store)
	if err != nil {
		return nil, err
	}
	if err := store.LoadState(sessionctl.Bucket, ctl.Load); err != nil {
		return nil, fmt.Errorf("loading the session policies' state: %w", err)
	}
	d := &daemonSessions{ctl: ctl, signals: make(chan sessions.Signal, 1024)}
	ctl.SetSignals(d.signals)
	if cfg.SessionStore != "" {
		if d.watcher, err = storewatch.New(storewatch.Options{Dir: cfg.SessionStore, ExpiredAfter: cfg.SessionLifetime,
			Logger: log.With("component", "storewatch")}); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// wire gives the pipeline the signals, the sources and the socket's
// end_session request.
func (d *daemonSessions) wire(pc *pipeline.Config) {
	pc.SessionSignals = d.signals
	pc.OnTracker = func(t *sessions.Tracker) { d.ctl.SetSessions(t) }
	pc.Sources = append(pc.Sources, d.ctl.Run)
	if w := d.watcher; w != nil {
		pc.Sources = append(pc.Sources, func(ctx context.Context, _ pipeline.StateSink) error { return w.Run(ctx, d.signals) })
	}
	if pc.Control == nil {
		pc.Control = map[string]backup.Handler{}
	}
	pc.Control[backup.VerbEndSession] = func(arg string) ([]byte, error) {
		var req backup.EndSessionRequest
		if err := json.Unmarshal([]byte(arg), &req); err != nil || (req.ID == "") == (req.User == "") {
			return nil, errors.New("end_session: want {\"id\":…} or {\"user\":…}")
		}
		out, err := endRequest(d.ctl, req, sessionctl.Requester{Role: "admin", Login: clipLogin(req.By), Via: "socket"})
		if err != nil {
			return nil, err
		}
		return json.Marshal(out)
	}
}

func clipLogin(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}
