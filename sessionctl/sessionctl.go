// Package sessionctl ends application sessions: on demand (the command
// line, the data-dir socket, the admin API) and by policy (idle timeout,
// maximum age, one session per user), with the application's own means:
//
//   - Odoo with file sessions (Config.SessionStore): the session's files
//     <dir>/<id[:2]>/<id>* are removed as Odoo's own revocation removes
//     them (res.device _revoke → delete_from_identifiers), the identifier
//     checked against ^[A-Za-z0-9_-]{42}$ so nothing outside the store is
//     touched;
//   - Odoo (Config.Odoo): its res_device_log rows are marked revoked (as
//     the revoke's ORM write: write_uid, write_date) and OCA session_db's
//     http_sessions rows deleted, when those tables exist;
//   - any profile: Config.EndSQL, a parameterised statement ($1 the
//     session's pseudonym, $2 its user id, $3 its login), and/or a webhook.
//
// The statements run on a normal (non-replication) connection, in one
// transaction that also emits pg_logical_emit_message(true, 'cdcaudit', …)
// naming the user it acts for (correlate.MessagePrefix): the change
// arrives in the stream attributed through the message (user_via
// "message").
//
// cdcaudit knows sessions by pseudonym only: the identifier of a session
// is found for the action, by reading res_device_log (the pseudonym is
// computed in the query) or listing the store's files, used, and
// forgotten; it is never written anywhere.
//
// Each action has a timeout and is idempotent (a second one finds nothing:
// not_found). Its outcome — ok, not_found, failed and why, or dry_run — is
// appended to the access log (action "end_session", who asked, or via
// "policy:<name>"), queued as a session_terminated alert when it ended the
// session (ok), and told to the session tracker (the session ends
// "terminated").
package sessionctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Results of an action.
const (
	ResultOK       = "ok"
	ResultNotFound = "not_found"
	ResultFailed   = "failed"
	ResultDryRun   = "dry_run"
)

// Action is the access log's action of an end.
const Action = "end_session"

// DefaultTimeout bounds one action.
const DefaultTimeout = 10 * time.Second

// systemUser is the user an action is attributed to when the one who asked
// is no user of the application (a token, a policy): Odoo's __system__
// (SUPERUSER_ID), as which Odoo's own automated work runs.
const systemUser = 1

// Config says how sessions are ended.
type Config struct {
	// DSN reaches the application's database (a normal connection).
	DSN string
	// Odoo: revoke res_device_log rows and delete http_sessions rows
	// (when the tables exist).
	Odoo bool
	// SessionStore is Odoo's <data_dir>/sessions ("": sessions not in
	// files).
	SessionStore string
	// EndSQL is a parameterised statement that ends a session: $1 its
	// pseudonym, $2 its user id (0 when unknown), $3 its login.
	EndSQL string
	// Webhook is a URL POSTed {"session","user_id","login","asked_by"}: a
	// 2xx answer is ok, 404 and 410 not_found. WebhookKey signs each post
	// as alert webhooks are signed (alerts.Sign, X-Cdcaudit-Signature):
	// the receiver ends sessions, so it must be able to tell cdcaudit's
	// requests from anyone's.
	Webhook    string
	WebhookKey []byte
	// Timeout bounds each action (default 10s).
	Timeout time.Duration
	// Policies end sessions without being asked (all off by default).
	Policies Policies
	Logger   *slog.Logger
	Now      func() time.Time
	// HTTP posts the webhook (default: a client with Timeout).
	HTTP *http.Client
	// Metrics counts each action's outcome (may be nil).
	Metrics Metrics
}

// Metrics is what the controller reports to (metrics.Metrics).
type Metrics interface {
	// SessionTerminated counts one action: the policy that asked ("":
	// asked on demand) and its result.
	SessionTerminated(policy, result string)
}

// Enabled says whether the configuration can end sessions at all.
func (c Config) Enabled() bool {
	return c.Odoo && c.DSN != "" || c.SessionStore != "" || c.EndSQL != "" && c.DSN != "" || c.Webhook != ""
}

// Requester is who asked: a principal (role, login, how it signed in, its
// address), or a policy (Via "policy:<name>").
type Requester struct {
	Role, Login, Via, Address string
}

// Policy returns the Requester of a policy.
func Policy(name string) Requester { return Requester{Via: "policy:" + name} }

func (r Requester) String() string {
	if r.Login != "" {
		return r.Login
	}
	if r.Via != "" {
		return r.Via
	}
	return r.Role
}

// Outcome is what one action did.
type Outcome struct {
	Session string `json:"session"`
	UserID  int64  `json:"user_id,omitempty"`
	Login   string `json:"login,omitempty"`
	Result  string `json:"result"`           // ok, not_found, failed, dry_run
	Reason  string `json:"reason,omitempty"` // why it failed
	Files   int    `json:"files,omitempty"`  // session files removed
	Rows    int64  `json:"rows,omitempty"`   // rows revoked or deleted
	Policy  string `json:"policy,omitempty"`
	// Access is the access log entry's sequence number (0: not recorded).
	Access uint64 `json:"access,omitempty"`
}

// SessionSource lists the sessions cdcaudit knows (sessions.Tracker in the
// daemon; the store's state when it is stopped).
type SessionSource interface {
	Sessions() []sessions.Session
}

// AccessLog records admin actions (sink.Store).
type AccessLog interface {
	AppendAccess(sink.AccessEntry) (uint64, error)
}

// StateSink stores state records durably (the pipeline's StateSink).
type StateSink = func(ctx context.Context, recs []sink.StateRecord) error

// Controller ends sessions. Safe for concurrent use.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	access AccessLog
	http   *http.Client

	mu      sync.Mutex
	src     SessionSource
	state   StateSink              // nil until the daemon's writer runs
	signals chan<- sessions.Signal // nil: no tracker to tell
	fired   map[string]firedRecord // policy fired, by session
	running sync.Mutex             // one action at a time: ends are rare, and races between them pointless
}

// New makes a controller recording to access.
func New(cfg Config, access AccessLog) (*Controller, error) {
	if access == nil {
		return nil, errors.New("sessionctl: no access log")
	}
	if err := cfg.Policies.Validate(); err != nil {
		return nil, err
	}
	if cfg.Policies.Any() && !cfg.Policies.DryRun && !cfg.Enabled() {
		return nil, fmt.Errorf("sessionctl: session policies are on but nothing can end a session: %w", ErrDisabled)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Controller{cfg: cfg, log: cfg.Logger, access: access, http: cfg.HTTP, fired: map[string]firedRecord{}}
	if c.http == nil {
		c.http = &http.Client{Timeout: cfg.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return c, nil
}

// SetSessions gives the controller the sessions to act on (the tracker,
// pipeline.Config.OnTracker).
func (c *Controller) SetSessions(src SessionSource) {
	c.mu.Lock()
	c.src = src
	c.mu.Unlock()
}

// SetSignals gives the channel terminations are told to the tracker on
// (pipeline.Config.SessionSignals).
func (c *Controller) SetSignals(ch chan<- sessions.Signal) {
	c.mu.Lock()
	c.signals = ch
	c.mu.Unlock()
}

// SetState gives the controller where alerts and policy records go (the
// pipeline's StateSink, or a writer of the store when the daemon is
// stopped).
func (c *Controller) SetState(s StateSink) {
	c.mu.Lock()
	c.state = s
	c.mu.Unlock()
}

// ErrUnknownUser: no session of cdcaudit names that login.
var ErrUnknownUser = errors.New("no session of that login is known")

// ErrBadID: not a session id (s + 24 hex digits).
var ErrBadID = errors.New("not a session id (s + 24 hex digits)")

// ErrDisabled: nothing is configured that could end a session.
var ErrDisabled = errors.New("ending sessions is not configured (session_store, session_end_sql or session_end_webhook; the Odoo profile with dsn)")

// End ends one session, by its pseudonym, for by.
func (c *Controller) End(ctx context.Context, id string, by Requester) (Outcome, error) {
	if !c.cfg.Enabled() {
		return Outcome{}, ErrDisabled
	}
	if !validPseudonym(id) {
		return Outcome{}, ErrBadID
	}
	s, _ := c.session(id)
	return c.end(ctx, s, by, "", false)
}

// EndUser ends every open session of the user login (all: open ones; the
// command and route ask for them all).
func (c *Controller) EndUser(ctx context.Context, login string, by Requester) ([]Outcome, error) {
	if !c.cfg.Enabled() {
		return nil, ErrDisabled
	}
	now := c.cfg.Now()
	var list []sessions.Session
	known := false
	for _, s := range c.sessions() {
		if s.Login != login {
			continue
		}
		known = true
		if end, _ := s.End(now, 0); end.IsZero() {
			list = append(list, s)
		}
	}
	if !known {
		return nil, ErrUnknownUser
	}
	out := make([]Outcome, 0, len(list))
	for _, s := range list {
		o, err := c.end(ctx, s, by, "", false)
		if err != nil {
			return out, err
		}
		out = append(out, o)
	}
	return out, nil
}

func (c *Controller) sessions() []sessions.Session {
	c.mu.Lock()
	src := c.src
	c.mu.Unlock()
	if src == nil {
		return nil
	}
	return src.Sessions()
}

// session returns what is known of a session (its pseudonym alone when
// nothing is).
func (c *Controller) session(id string) (sessions.Session, bool) {
	for _, s := range c.sessions() {
		if s.ID == id {
			return s, true
		}
	}
	return sessions.Session{ID: id}, false
}

// end runs the actions on one session and records the outcome. The error
// is one of recording (an action that cannot be recorded is reported
// failed to the caller all the same).
func (c *Controller) end(ctx context.Context, s sessions.Session, by Requester, policy string, dryRun bool) (Outcome, error) {
	c.running.Lock()
	defer c.running.Unlock()
	at := c.cfg.Now().UTC()
	o := Outcome{Session: s.ID, UserID: s.UserID, Login: s.Login, Policy: policy}
	if dryRun {
		o.Result = ResultDryRun
	} else {
		actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		err := c.act(actx, s, by, &o)
		cancel()
		switch {
		case err != nil:
			o.Result, o.Reason = ResultFailed, reason(err)
		case o.Files > 0 || o.Rows > 0 || o.Result == ResultOK:
			o.Result = ResultOK
		default:
			o.Result = ResultNotFound
		}
	}
	c.log.Info("end session", "session", o.Session, "login", o.Login, "asked_by", by.String(), "result", o.Result, "reason", o.Reason,
		"files", o.Files, "rows", o.Rows)
	if c.cfg.Metrics != nil {
		c.cfg.Metrics.SessionTerminated(policy, o.Result)
	}
	if o.Result == ResultOK {
		c.tell(sessions.Signal{ID: s.ID, At: at, End: sessions.EndTerminated})
	}
	seq, err := c.access.AppendAccess(c.entry(at, by, o))
	if err != nil {
		return o, fmt.Errorf("recording the end of session %s: %w", o.Session, err)
	}
	o.Access = seq
	if o.Result == ResultOK { // a dry run is in the access log only: nobody is to be told of an end that did not happen
		if err := c.store(ctx, []sink.StateRecord{alerts.Queue(c.alert(at, s, by, o))}); err != nil {
			c.log.Warn("session terminated: the alert could not be queued", "session", o.Session, "err", err)
		}
	}
	return o, nil
}

// tell gives the tracker the termination, without waiting for a pipeline
// that is busy or gone.
func (c *Controller) tell(sig sessions.Signal) {
	c.mu.Lock()
	ch := c.signals
	c.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- sig:
	case <-time.After(time.Second):
		c.log.Warn("session terminated: the session tracker did not take it; the revoke in the stream ends it", "session", sig.ID)
	}
}

func (c *Controller) store(ctx context.Context, recs []sink.StateRecord) error {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	if st == nil {
		return errors.New("the store's writer is not running")
	}
	sctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	return st(sctx, recs)
}

// act runs every configured action; o counts what they did.
func (c *Controller) act(ctx context.Context, s sessions.Session, by Requester, o *Outcome) error {
	var errs []error
	var ids []string
	if c.cfg.DSN != "" && (c.cfg.Odoo || c.cfg.EndSQL != "") {
		found, rows, err := c.database(ctx, s, by)
		ids = found
		o.Rows += rows
		if err != nil {
			errs = append(errs, fmt.Errorf("database: %w", err))
		}
	}
	if c.cfg.SessionStore != "" {
		n, err := c.files(s.ID, ids)
		o.Files += n
		if err != nil {
			errs = append(errs, fmt.Errorf("session store: %w", err))
		}
	}
	if c.cfg.Webhook != "" {
		ok, err := c.webhook(ctx, s, by)
		if ok {
			o.Result = ResultOK
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("webhook: %w", err))
		}
	}
	return errors.Join(errs...)
}

// reason is a failure as the access log keeps it: bounded, and free of
// secrets (errors here never carry identifiers or the DSN's password:
// pgx's connect errors name host, user and database only).
func reason(err error) string { return clip(err.Error()) }

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

func validPseudonym(id string) bool {
	if len(id) != 25 || id[0] != 's' {
		return false
	}
	for _, c := range id[1:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// entry is the access log entry of an outcome.
func (c *Controller) entry(at time.Time, by Requester, o Outcome) sink.AccessEntry {
	field := func(name string, v any) sink.Field {
		b, _ := json.Marshal(v) // strings and numbers
		return sink.Field{Name: name, Value: b}
	}
	d := []sink.Field{field("session", o.Session)}
	if o.UserID != 0 {
		d = append(d, field("user_id", o.UserID))
	}
	if o.Login != "" {
		d = append(d, field("user", o.Login))
	}
	if o.Reason != "" {
		d = append(d, field("reason", o.Reason))
	}
	if o.Files > 0 {
		d = append(d, field("files", o.Files))
	}
	if o.Rows > 0 {
		d = append(d, field("rows", o.Rows))
	}
	return sink.AccessEntry{Time: at, Action: Action, Result: o.Result, Role: by.Role, Login: by.Login, Via: by.Via,
		Address: by.Address, Detail: d}
}

// alert is the session_terminated alert of an outcome: one per session
// and time (a replay of the same action makes the same id).
func (c *Controller) alert(at time.Time, s sessions.Session, by Requester, o Outcome) alerts.Alert {
	a := alerts.Alert{
		ID: alerts.KindSessionTerminated + "/" + s.ID + "/" + at.Format(time.RFC3339Nano), Kind: alerts.KindSessionTerminated,
		Time: at, UserID: s.UserID, Login: s.Login, Session: s.ID, IP: s.IP, Browser: s.Browser, OS: s.OS,
		Device: s.Device, Country: s.Country, City: s.City, Sessions: []string{s.ID},
		Summary: fmt.Sprintf("session %s of %s ended by %s", s.ID, orUnknown(s.Login), by.String()),
		Detail:  map[string]string{"asked_by": by.String(), "result": o.Result},
	}
	if o.Policy != "" {
		a.Detail["policy"] = o.Policy
	}
	if o.Access != 0 {
		a.Detail["access"] = strconv.FormatUint(o.Access, 10)
	}
	return a
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown user"
	}
	return s
}

// connect opens a normal connection to the application's database.
func (c *Controller) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(c.cfg.DSN)
	if err != nil {
		return nil, errors.New("the dsn does not parse")
	}
	delete(cfg.RuntimeParams, "replication")
	cfg.RuntimeParams["application_name"] = "cdcaudit-sessionctl"
	return pgx.ConnectConfig(ctx, cfg)
}
