// Package config is cdcaudit's configuration: built-in defaults, then a YAML
// file (--config or CDCAUDIT_CONFIG), then CDCAUDIT_* environment variables,
// then command-line flags, each layer overriding the ones before it.
//
// Keys are YAML snake_case; their environment variables
// CDCAUDIT_<KEY IN UPPER CASE>, their flags --<key-with-dashes>. Each is
// described, with its default, in docs/configuration.md (TestExampleFile
// holds the table to the keys and their defaults) and by `cdcaudit run
// --help`.
//
// Lists are YAML sequences (or one comma-separated string); in the
// environment and on the command line they are comma-separated, and list
// flags may be repeated. An environment variable set to the empty string
// counts as unset. Unknown YAML keys, unknown CDCAUDIT_* variables and
// malformed values are errors that name the key and where the value came
// from; nothing silently falls back to a default.
//
// # One owner per setting
//
// This package only maps sources to fields and says where each value came
// from. A setting's default and its rules belong to the package that uses
// the value, which exports them (replication.DefaultSlot and
// replication.ValidateSlotName, sessions.DefaultIdleAfter,
// redact.ReadKeyFile …) and applies the same ones in its own entry points.
// A new setting is, in this package:
//
//  1. a field of Config;
//  2. a Key constant, for the commands that bind it by name;
//  3. one entry in keys: setting(key, usage, field, owner's default, owner's
//     rule) for a string, bool, time.Duration, []string or sink.Retention,
//     or listOf(key, usage, field, items, owner's rule) for a list of items
//     the owner parses (items: its parse func, and its YAML mapping form if
//     it has one); then .rule(func(c *Config) error) for a rule that needs
//     other settings' values, .files(func(c *Config) error) for one that
//     reads the files the value names (run by CheckFiles, not Load);
//
// and a row in docs/configuration.md and a line in docs/cdcaudit.example.yml
// (TestExampleFile asks for both). Owners write their errors about the
// value alone ("%q is not a profile (want …)"); this package prefixes the
// key and adds the value's source: "config: profile: … (from --profile)".
// TestRulesAreTheOwners and TestDefaultsAreTheOwners keep it that way.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.yaml.in/yaml/v3"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/anchor"
	"github.com/cdcaudit/cdcaudit/applog"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/auth"
	"github.com/cdcaudit/cdcaudit/dbsessions"
	"github.com/cdcaudit/cdcaudit/internal/httpserver"
	"github.com/cdcaudit/cdcaudit/internal/logging"
	"github.com/cdcaudit/cdcaudit/kafkasink"
	"github.com/cdcaudit/cdcaudit/pgsink"
	"github.com/cdcaudit/cdcaudit/profile"
	"github.com/cdcaudit/cdcaudit/redact"
	"github.com/cdcaudit/cdcaudit/replication"
	"github.com/cdcaudit/cdcaudit/rules"
	"github.com/cdcaudit/cdcaudit/sessionctl"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
	"github.com/cdcaudit/cdcaudit/snapshot"
	"github.com/cdcaudit/cdcaudit/storewatch"
)

// Key names, as written in the YAML file.
const (
	KeyDSN            = "dsn"
	KeyDataDir        = "data_dir"
	KeyHTTPAddr       = "http_addr"
	KeyTLSCertFile    = "tls_cert_file"
	KeyTLSKeyFile     = "tls_key_file"
	KeyAllowPlainHTTP = "allow_plain_http"
	KeyPprof          = "pprof"
	KeySlot           = "slot"
	KeyPublication    = "publication"
	KeyTables         = "tables"
	KeyExclude        = "exclude"
	KeyStatusInterval = "status_interval"
	KeyLogFormat      = "log_format"
	KeyLogLevel       = "log_level"
	KeyAcceptGap      = "accept_gap"
	KeyAnchorFile     = "anchor_file"
	KeyAnchorSyslog   = "anchor_syslog"

	KeyProfile         = "profile"
	KeyProfileFile     = "profile_file"
	KeyRedact          = "redact"
	KeyRedactKeyFile   = "redact_key_file"
	KeyIdleAfter       = "idle_after"
	KeySessionLifetime = "session_lifetime"
	KeyGeoIPDB         = "geoip_db"

	KeyDBSessionsInterval = "db_sessions_interval"
	KeyDBSessionsAppRoles = "db_sessions_app_roles"
	KeyDBSessionsAppNames = "db_sessions_app_names"
	KeyDBSessionsAppAddrs = "db_sessions_app_addrs"

	KeySnapshot       = "snapshot"
	KeySnapshotTables = "snapshot_tables"

	KeyRetention = "retention"

	KeyAPITokens             = "api_tokens"
	KeyAPIViewerGroup        = "api_viewer_group"
	KeyAPISessionIdle        = "api_session_idle"
	KeyAPISessionLifetime    = "api_session_lifetime"
	KeyAPISigninLimitLogin   = "api_signin_limit_login"
	KeyAPISigninLimitAddress = "api_signin_limit_address"

	KeyAppLog               = "app_log"
	KeyFailedLoginBurst     = "failed_login_burst"
	KeyRuleMassChange       = "rule_mass_change"
	KeyRuleImpossibleTravel = "rule_impossible_travel"
	KeyRuleWorkingHours     = "rule_working_hours"
	KeyRuleSensitiveModels  = "rule_sensitive_models"
	KeyRuleBulkExport       = "rule_bulk_export"

	KeySMTPAddr          = "smtp_addr"
	KeySMTPTLS           = "smtp_tls"
	KeySMTPUser          = "smtp_user"
	KeySMTPPasswordFile  = "smtp_password_file"
	KeySMTPFrom          = "smtp_from"
	KeyAlertMailbox      = "alert_mailbox"
	KeyWebhookURL        = "webhook_url"
	KeyWebhookSecretFile = "webhook_secret_file"
	KeyAlertRoutes       = "alert_routes"
	KeyNewDeviceWindow   = "new_device_window"
	KeySessionStore      = "session_store"
	KeySessionEndSQL     = "session_end_sql"
	KeySessionEndWebhook = "session_end_webhook"
	KeyPolicyIdleTimeout = "policy_idle_timeout"
	KeyPolicyMaxAge      = "policy_max_age"
	KeyPolicyOneSession  = "policy_one_session"
	KeyPolicyExceptions  = "policy_exceptions"
	KeyPolicyDryRun      = "policy_dry_run"

	KeySinkPostgresDSN       = "sink_postgres_dsn"
	KeySinkPostgresTable     = "sink_postgres_table"
	KeySinkPostgresBatch     = "sink_postgres_batch"
	KeySinkKafkaBrokers      = "sink_kafka_brokers"
	KeySinkKafkaTopic        = "sink_kafka_topic"
	KeySinkKafkaTLS          = "sink_kafka_tls"
	KeySinkKafkaSASL         = "sink_kafka_sasl"
	KeySinkKafkaUser         = "sink_kafka_user"
	KeySinkKafkaPasswordFile = "sink_kafka_password_file"
	KeySinkKafkaCompression  = "sink_kafka_compression"
)

// EnvPrefix prefixes every environment variable; CDCAUDIT_CONFIG names the
// YAML file when --config is not given; CDCAUDIT_PG_BINDIR the directory of
// initdb and postgres for the demo's throwaway server (internal/pgtest).
// Any other CDCAUDIT_* variable is an error, like an unknown YAML key.
const (
	EnvPrefix   = "CDCAUDIT_"
	EnvConfig   = EnvPrefix + "CONFIG"
	EnvPGBinDir = EnvPrefix + "PG_BINDIR"
)

// Config is the resolved configuration.
type Config struct {
	DSN      string
	DataDir  string
	HTTPAddr string
	// TLSCertFile and TLSKeyFile, both set, make the HTTP server serve TLS.
	TLSCertFile, TLSKeyFile string
	// AllowPlainHTTP lets the HTTP server serve plain HTTP on an address
	// beyond loopback.
	AllowPlainHTTP bool
	// Pprof serves Go's profiler at /debug/pprof on the HTTP server, to
	// clients on the loopback interface only.
	Pprof       bool
	Slot        string
	Publication string
	// Source names the database's trail in every event and sink; after
	// Load it is always set when DSN is (DefaultSource).
	Source         string
	Tables         []string
	Exclude        []string
	StatusInterval time.Duration
	LogFormat      string // text | json
	LogLevel       string // debug | info | warn | error
	AcceptGap      bool
	// AnchorFile, when set, is appended a signed anchor of the chain head
	// whenever one is logged.
	AnchorFile string
	// AnchorSyslog, when set, is a syslog server (udp://, tcp:// or
	// unix:// address) that every anchor is sent to as well.
	AnchorSyslog string

	// Profile is auto (Odoo once its tables are there, else none), odoo,
	// generic (ProfileFile) or none.
	Profile     string
	ProfileFile string
	// Redact lists secret columns beyond the profile's.
	Redact []profile.ColumnRule
	// RedactKeyFile names the file of the HMAC key: the key itself is never
	// part of the configuration (see ReadRedactKey).
	RedactKeyFile   string
	IdleAfter       time.Duration
	SessionLifetime time.Duration
	GeoIPDB         string

	// DBSessionsInterval is how often pg_stat_activity is sampled for
	// database sessions outside the application (0: never); the
	// application's own are those matching DBSessionsAppRoles,
	// DBSessionsAppNames and DBSessionsAppAddrs (each empty: any).
	DBSessionsInterval                                         time.Duration
	DBSessionsAppRoles, DBSessionsAppNames, DBSessionsAppAddrs []string

	// Snapshot is initial (copy the published tables matching
	// SnapshotTables, all when empty, on a fresh start) or never; the
	// profile's users, models and sessions tables are loaded either way.
	Snapshot       string
	SnapshotTables []string

	// Retention is how long events are kept (zero: forever); the pipeline
	// adds the state to prune with them.
	Retention sink.Retention

	// APITokens are the API's tokens, by their SHA-256 (auth).
	APITokens []auth.Token
	// APIViewerGroup is the application group (an xml id) whose members
	// sign in as viewers.
	APIViewerGroup                     string
	APISessionIdle, APISessionLifetime time.Duration
	// APISigninLimitLogin and APISigninLimitAddress are failures/period.
	APISigninLimitLogin, APISigninLimitAddress string

	// AppLog is Odoo's log file, tailed for its logins; FailedLoginBurst
	// the failures/window that make a burst ("off": none).
	AppLog, FailedLoginBurst string
	// The suspicious-activity rules: each a threshold or "off" (rules).
	RuleMassChange, RuleImpossibleTravel, RuleWorkingHours, RuleBulkExport string
	RuleSensitiveModels                                                    []string
	// Alerts (package alerts): the SMTP server, the security mailbox, the
	// webhook and the routes. Passwords and secrets are in files (see
	// ReadSMTPPassword and ReadWebhookSecret), never configured inline.
	SMTPAddr, SMTPTLS, SMTPUser, SMTPPasswordFile, SMTPFrom string
	AlertMailbox                                            string
	WebhookURL, WebhookSecretFile                           string
	AlertRoutes                                             string
	NewDeviceWindow                                         time.Duration
	// Session control (sessionctl, storewatch): Odoo's file session store
	// (watched; its files removed to end a session), the generic end
	// statement and webhook, and the policies.
	SessionStore                     string
	SessionEndSQL, SessionEndWebhook string
	PolicyIdleTimeout, PolicyMaxAge  time.Duration
	PolicyOneSession, PolicyDryRun   bool
	PolicyExceptions                 []sessionctl.Exception

	// External sinks (outbox, docs/sinks.md): the PostgreSQL audit
	// database (none when SinkPostgresDSN is empty), its table and the
	// records per batch.
	SinkPostgresDSN   string
	SinkPostgresTable string
	SinkPostgresBatch int
	// The Kafka sink (kafkasink; off without brokers). Its password is in
	// a file (ReadKafkaPassword), never configured inline.
	SinkKafkaBrokers                                    []string
	SinkKafkaTopic, SinkKafkaTLS, SinkKafkaCompression  string
	SinkKafkaSASL, SinkKafkaUser, SinkKafkaPasswordFile string

	// DatabaseList is the databases key (defaults applied; nil without
	// it): use Databases, which also gives the one database of dsn.
	DatabaseList  []Database
	databaseItems []databaseItem

	// File is the YAML file that was read ("" when none).
	File string
	// Sources says where each key's value came from: "default", a file
	// position ("cdcaudit.yml:3"), an environment variable or a flag.
	Sources map[string]string
}

// Defaults returns the built-in defaults: the owners'.
func Defaults() Config {
	var c Config
	for _, k := range keys {
		k.setDefault(&c)
	}
	return c
}

type keyInfo struct {
	name  string
	usage string
	// value is the key's field of c, as the sources write it.
	value      func(c *Config) value
	setDefault func(c *Config)
	// check is the owner's rule, applied by Load to the value all layers
	// resolved to (nil: every value that parses); checkFiles the owner's
	// check of the files the value names, applied by CheckFiles.
	check, checkFiles func(c *Config) error
}

// setting declares a key: its name, its usage (for --help; a `word` names
// the flag's argument), its field of c, its default and its rule (nil:
// every value that parses), both the owner's.
func setting[T plain](name, usage string, field func(c *Config) *T, def T, valid func(T) error) keyInfo {
	k := keyInfo{name: name, usage: usage,
		value:      func(c *Config) value { return plainValue(field(c)) },
		setDefault: func(c *Config) { *field(c) = def }}
	if valid != nil {
		k.check = func(c *Config) error { return valid(*field(c)) }
	}
	return k
}

// listOf declares a list key whose items the owner parses (it); its
// default is the empty list.
func listOf[T fmt.Stringer](name, usage string, field func(c *Config) *[]T, it items[T], valid func([]T) error) keyInfo {
	k := keyInfo{name: name, usage: usage,
		value:      func(c *Config) value { return itemsValue[T]{field(c), it} },
		setDefault: func(c *Config) { *field(c) = nil }}
	if valid != nil {
		k.check = func(c *Config) error { return valid(*field(c)) }
	}
	return k
}

// rule adds a check that needs other settings' values (applied after the
// key's own rule).
func (k keyInfo) rule(check func(c *Config) error) keyInfo {
	own := k.check
	k.check = func(c *Config) error {
		if own != nil {
			if err := own(c); err != nil {
				return err
			}
		}
		return check(c)
	}
	return k
}

// files sets the check of the files the value names (CheckFiles).
func (k keyInfo) files(check func(c *Config) error) keyInfo {
	k.checkFiles = check
	return k
}

// optional applies a rule only to a value that is set.
func optional(valid func(string) error) func(string) error {
	return func(s string) error {
		if s == "" {
			return nil
		}
		return valid(s)
	}
}

// each applies a rule to every item of a list.
func each(valid func(string) error) func([]string) error {
	return func(items []string) error {
		for _, it := range items {
			if err := valid(it); err != nil {
				return err
			}
		}
		return nil
	}
}

// setHint adds how to set key to err when it is target ("generic needs
// profile_file" → "(set --profile-file or CDCAUDIT_PROFILE_FILE)").
func setHint(err, target error, key string) error {
	if err != nil && errors.Is(err, target) {
		return fmt.Errorf("%w (set --%s or %s)", err, FlagName(key), EnvName(key))
	}
	return err
}

func (k keyInfo) kind() valueKind { return k.value(&Config{}).kind() }

// keys lists every key, in documentation order.
var keys = []keyInfo{
	setting(KeyDSN, "PostgreSQL connection `URL` (postgres://user:pass@host:5432/db) or key=value string",
		func(c *Config) *string { return &c.DSN }, "", optional(replication.ValidateDSN)),
	setting(KeyDataDir, "`directory` of the audit store (created if missing)",
		func(c *Config) *string { return &c.DataDir }, "", nil),
	setting(KeyHTTPAddr, "`address` for /metrics and /healthz (port 0 picks a free port)",
		func(c *Config) *string { return &c.HTTPAddr }, httpserver.DefaultAddr, httpserver.ValidateAddr).
		rule(func(c *Config) error {
			return httpserver.ValidatePlain(c.HTTPAddr, c.TLSCertFile != "" || c.TLSKeyFile != "", c.AllowPlainHTTP)
		}),
	setting(KeyTLSCertFile, "PEM `file` of the HTTP server's certificate (with tls_key_file): serve TLS",
		func(c *Config) *string { return &c.TLSCertFile }, "", nil).
		files(func(c *Config) error { return httpserver.ValidateTLSFiles(c.TLSCertFile, c.TLSKeyFile) }),
	setting(KeyTLSKeyFile, "PEM `file` of the certificate's private key (with tls_cert_file)",
		func(c *Config) *string { return &c.TLSKeyFile }, "", nil),
	setting(KeyAllowPlainHTTP, "serve plain HTTP on an http_addr beyond loopback (without TLS, tokens, passwords and cookies cross the network in clear: for a TLS proxy on the same host)",
		func(c *Config) *bool { return &c.AllowPlainHTTP }, false, nil),
	setting(KeyPprof, "serve Go's profiler at /debug/pprof on the HTTP server, answering loopback clients only",
		func(c *Config) *bool { return &c.Pprof }, false, nil),
	setting(KeySlot, "logical replication slot `name` (created if missing)",
		func(c *Config) *string { return &c.Slot }, replication.DefaultSlot, replication.ValidateSlotName),
	setting(KeyPublication, "publication `name` (created if missing), and <name>_changes for updates and deletes",
		func(c *Config) *string { return &c.Publication }, replication.DefaultPublication, replication.ValidatePublicationName),
	setting(KeySource, "the `name` of this database's trail, in every event and sink record (default: the DSN's database name); 1-64 letters, digits, '.', '_', '-'",
		func(c *Config) *string { return &c.Source }, "", optional(audit.ValidSource)),
	setting(KeyTables, "tables to audit: comma-separated schema-qualified `globs`, e.g. public.sale_*,public.res_partner (default: all tables); tables created later that match are captured from their first insert",
		func(c *Config) *[]string { return &c.Tables }, nil, each(replication.ValidateTableGlob)),
	setting(KeyExclude, "tables not to audit: comma-separated schema-qualified `globs`",
		func(c *Config) *[]string { return &c.Exclude }, nil, each(replication.ValidateTableGlob)),
	setting(KeyStatusInterval, "`interval` between standby status updates to the server",
		func(c *Config) *time.Duration { return &c.StatusInterval }, replication.DefaultStatusInterval, replication.ValidateStatusInterval),
	setting(KeyLogFormat, "log `format`: text or json",
		func(c *Config) *string { return &c.LogFormat }, logging.DefaultFormat, logging.ValidateFormat),
	setting(KeyLogLevel, "log `level`: debug, info, warn or error",
		func(c *Config) *string { return &c.LogLevel }, logging.DefaultLevel, logging.ValidateLevel),
	setting(KeyAcceptGap, "start even when the slot is ahead of the store's checkpoint, or had to be created anew after it was lost (the changes in between are lost for good; without this cdcaudit refuses to start)",
		func(c *Config) *bool { return &c.AcceptGap }, false, nil),
	setting(KeyAnchorFile, "`file` to append signed chain anchors to, besides the log (outside data_dir, on storage the store's host cannot rewrite); check them with verify --anchor",
		func(c *Config) *string { return &c.AnchorFile }, "", nil).
		files(func(c *Config) error { return anchor.ValidateFile(c.AnchorFile, c.DataDir) }),
	setting(KeyAnchorSyslog, "syslog `address` to send signed chain anchors to as well: udp://host:514, tcp://host:601 or unix:///dev/log",
		func(c *Config) *string { return &c.AnchorSyslog }, "", nil).
		files(func(c *Config) error { return optional(anchor.ValidateSyslogAddr)(c.AnchorSyslog) }),
	setting(KeyProfile, "application `profile`: auto (odoo once res_users and res_users_log or res_device_log exist, at start or when they appear in the stream), odoo, generic (needs --profile-file) or none",
		func(c *Config) *string { return &c.Profile }, profile.DefaultChoice, nil).
		rule(func(c *Config) error {
			return setHint(profile.ValidateChoice(c.Profile, c.ProfileFile != ""), profile.ErrNoProfileFile, KeyProfileFile)
		}),
	setting(KeyProfileFile, "YAML `file` describing the application's users, sessions, audit columns and secrets, for --profile generic",
		func(c *Config) *string { return &c.ProfileFile }, "", nil).
		rule(func(c *Config) error { return profile.ValidateFileChoice(c.ProfileFile, c.Profile) }).
		files(func(c *Config) error {
			return optional(func(f string) error { _, err := profile.Load(f); return err })(c.ProfileFile)
		}),
	listOf(KeyRedact, "more secret columns, never stored: comma-separated schema.table.column `globs`, e.g. public.res_partner.vat,*.*.api_key (a where condition: public.settings.value[name=*secret*])",
		func(c *Config) *[]profile.ColumnRule { return &c.Redact }, columnRules, nil),
	setting(KeyRedactKeyFile, "`file` holding a key (at least 16 bytes): redacted values become an HMAC-SHA256 under it instead of \"[redacted]\", so equal values stay comparable",
		func(c *Config) *string { return &c.RedactKeyFile }, "", nil).
		files(func(c *Config) error { _, err := c.readRedactKey(); return err }),
	setting(KeyIdleAfter, "a session without activity for this `duration` is shown idle",
		func(c *Config) *time.Duration { return &c.IdleAfter }, sessions.DefaultIdleAfter, sessions.ValidateIdleAfter),
	setting(KeySessionLifetime, "a session without activity for this `duration` has ended (expired)",
		func(c *Config) *time.Duration { return &c.SessionLifetime }, sessions.DefaultLifetime, nil).
		rule(func(c *Config) error { return sessions.ValidateLifetime(c.SessionLifetime, c.IdleAfter) }),
	setting(KeyGeoIPDB, "MaxMind or DB-IP .mmdb `file` (country or city): session locations from IP addresses",
		func(c *Config) *string { return &c.GeoIPDB }, "", nil).
		files(func(c *Config) error { return optional(sessions.ValidateGeoIPFile)(c.GeoIPDB) }),
	setting(KeyDBSessionsInterval, "sample pg_stat_activity every `interval` for database sessions that are not the application's (0: never)",
		func(c *Config) *time.Duration { return &c.DBSessionsInterval }, dbsessions.DefaultInterval, dbsessions.ValidateInterval),
	setting(KeyDBSessionsAppRoles, "the application's database `roles`, comma-separated: its sessions are not listed (default: any role)",
		func(c *Config) *[]string { return &c.DBSessionsAppRoles }, nil, nil),
	setting(KeyDBSessionsAppNames, "the application's application_name `patterns`, comma-separated shell patterns",
		func(c *Config) *[]string { return &c.DBSessionsAppNames }, dbsessions.DefaultAppNames, each(dbsessions.ValidateAppName)).
		rule(func(c *Config) error { return c.DBSessionsApp().Validate() }),
	setting(KeyDBSessionsAppAddrs, "the application's client `addresses`, comma-separated IPs, CIDR prefixes or local (a Unix socket) (default: any)",
		func(c *Config) *[]string { return &c.DBSessionsAppAddrs }, nil, each(dbsessions.ValidateAppAddr)),
	setting(KeySnapshot, "`mode`: initial (when the slot is created, copy the published tables as op \"snapshot\" records, consistent with the stream) or never (only the application's users, models and sessions tables, always loaded once)",
		func(c *Config) *string { return &c.Snapshot }, snapshot.DefaultMode, snapshot.ValidateMode),
	setting(KeySnapshotTables, "tables the initial snapshot copies: comma-separated schema-qualified `globs`, e.g. public.res_*,public.sale_order (default: every published table)",
		func(c *Config) *[]string { return &c.SnapshotTables }, nil, each(replication.ValidateTableGlob)),
	setting(KeyRetention, "how long events are kept: a `window` (400d) for every table, and windows per table glob, first match wins: default=400d,public.account_move*=10y (units h, d, w, y = 365d; forever keeps; default: keep everything forever)",
		func(c *Config) *sink.Retention { return &c.Retention }, sink.Retention{}, nil),
	listOf(KeyAPITokens, "API `tokens`, each \"name=… role=admin|viewer|self:LOGIN sha256=<hex> [expires=…]\" as cdcaudit token new prints it (only the token's SHA-256 is configured)",
		func(c *Config) *[]auth.Token { return &c.APITokens }, items[auth.Token]{form: "token entries", parse: auth.ParseTokenSpec}, nil),
	setting(KeyAPIViewerGroup, "the application `group` (xml id, e.g. sales_team.group_sale_manager) whose members sign in to the API as viewers (settings administrators are admins, other internal users see their own)",
		func(c *Config) *string { return &c.APIViewerGroup }, "", optional(auth.ValidateGroupXMLID)),
	setting(KeyAPISessionIdle, "an API sign-in session ends after this `duration` without a request",
		func(c *Config) *time.Duration { return &c.APISessionIdle }, auth.DefaultSessionIdle, nil),
	setting(KeyAPISessionLifetime, "an API sign-in session ends this `duration` after sign-in, whatever happens",
		func(c *Config) *time.Duration { return &c.APISessionLifetime }, auth.DefaultSessionLifetime, nil).
		rule(func(c *Config) error { return auth.ValidateSessionTimes(c.APISessionIdle, c.APISessionLifetime) }),
	setting(KeyAPISigninLimitLogin, "failed sign-ins allowed per login: `failures/period`, then 429",
		func(c *Config) *string { return &c.APISigninLimitLogin }, auth.DefaultLoginLimit.String(), validLimit),
	setting(KeyAPISigninLimitAddress, "failed sign-ins allowed per client address: `failures/period`, then 429",
		func(c *Config) *string { return &c.APISigninLimitAddress }, auth.DefaultAddressLimit.String(), validLimit),
	setting(KeyAppLog, "Odoo's log `file` (its logfile): its login lines are recorded, failed-login bursts alerted",
		func(c *Config) *string { return &c.AppLog }, "", nil),
	setting(KeyFailedLoginBurst, "failed logins for one login or from one address that make a burst (one alert): `failures/window`, or off",
		func(c *Config) *string { return &c.FailedLoginBurst }, applog.DefaultBurst.String(), validBurst),
	setting(KeyRuleMassChange, "suspicious: more than N records of one model deleted or updated by one user within a window: `N/window`, or off",
		func(c *Config) *string { return &c.RuleMassChange }, rules.DefaultMassChange.String(), validRate),
	setting(KeyRuleImpossibleTravel, "suspicious: a user active from two places farther apart than this `speed` (km/h) allows (needs a geoip_db city edition), or off",
		func(c *Config) *string { return &c.RuleImpossibleTravel }, rules.DefaultTravel, validSpeed),
	setting(KeyRuleWorkingHours, "suspicious: changes outside a group's working `hours`, entries \"group=NAME [Mon-Fri] HH:MM-HH:MM TIMEZONE\" separated by ;, or off",
		func(c *Config) *string { return &c.RuleWorkingHours }, rules.Off, validHours),
	setting(KeyRuleSensitiveModels, "suspicious: a user's first change of one of these `models` (model or table names; account.move:post for a posting), or off",
		func(c *Config) *[]string { return &c.RuleSensitiveModels }, rules.DefaultSensitive, validModels),
	setting(KeyRuleBulkExport, "suspicious: more than N events exported by one principal within a window: `N/window`, or off",
		func(c *Config) *string { return &c.RuleBulkExport }, rules.DefaultBulkExport.String(), validRate),
	setting(KeySMTPAddr, "SMTP server `host:port` alerts are mailed through",
		func(c *Config) *string { return &c.SMTPAddr }, "", nil).
		rule(func(c *Config) error {
			return optional(func(a string) error { return alerts.ValidateSMTP(a, c.SMTPTLS) })(c.SMTPAddr)
		}),
	setting(KeySMTPTLS, "`mode` of the SMTP connection: starttls, implicit (TLS from the start, port 465) or none (only to a server on the loopback interface)",
		func(c *Config) *string { return &c.SMTPTLS }, alerts.TLSStartTLS, alerts.ValidateTLSMode),
	setting(KeySMTPUser, "SMTP `user` name (with smtp_password_file): authenticate",
		func(c *Config) *string { return &c.SMTPUser }, "", nil),
	setting(KeySMTPPasswordFile, "`file` holding the SMTP password (never the password itself)",
		func(c *Config) *string { return &c.SMTPPasswordFile }, "", nil).
		rule(func(c *Config) error {
			if (c.SMTPUser == "") != (c.SMTPPasswordFile == "") {
				return errors.New("smtp_user and smtp_password_file go together")
			}
			return nil
		}).
		files(func(c *Config) error { _, err := c.readSecret(c.SMTPPasswordFile, 1); return err }),
	setting(KeySMTPFrom, "the `address` alert mails come from",
		func(c *Config) *string { return &c.SMTPFrom }, "", optional(alerts.ValidateAddress)),
	setting(KeyAlertMailbox, "the security mailbox's `address` (alert_routes to=security)",
		func(c *Config) *string { return &c.AlertMailbox }, "", optional(alerts.ValidateAddress)),
	setting(KeyWebhookURL, "http(s) `URL` alerts are posted to as signed JSON (alert_routes channel=webhook)",
		func(c *Config) *string { return &c.WebhookURL }, "", optional(alerts.ValidateWebhookURL)),
	setting(KeyWebhookSecretFile, "`file` holding the webhook's HMAC-SHA256 key (at least 16 bytes)",
		func(c *Config) *string { return &c.WebhookSecretFile }, "", nil).
		files(func(c *Config) error { _, err := c.readSecret(c.WebhookSecretFile, alerts.MinSecretLen); return err }),
	setting(KeyAlertRoutes, "where alerts go: `routes` separated by ;, each \"kind=K[,K] channel=email|webhook [to=user,security] [users=LOGIN,…] [groups=XMLID,…]\" (docs/alerts.md); none: nothing is delivered",
		func(c *Config) *string { return &c.AlertRoutes }, "", func(s string) error { _, err := alerts.ParseRoutes(s); return err }).
		rule(func(c *Config) error {
			return alerts.CheckChannels(c.AlertRoutes, c.SMTPAddr, c.SMTPFrom, c.AlertMailbox, c.WebhookURL, c.WebhookSecretFile)
		}),
	setting(KeyNewDeviceWindow, "a device not seen for a user within this `duration` is new (alert new_device)",
		func(c *Config) *time.Duration { return &c.NewDeviceWindow }, alerts.DefaultNewDeviceWindow, alerts.ValidateNewDeviceWindow),
	setting(KeySessionStore, "Odoo's file session store `directory` (<data_dir>/sessions): watched for logouts and expiries, and where ending a session removes its files",
		func(c *Config) *string { return &c.SessionStore }, "", nil).
		files(func(c *Config) error { return optional(storewatch.ValidateDir)(c.SessionStore) }),
	setting(KeySessionEndSQL, "parameterised `statement` that ends a session ($1 its pseudonym, $2 its user id, $3 its login), run with cdcaudit's message in one transaction",
		func(c *Config) *string { return &c.SessionEndSQL }, "", nil),
	setting(KeySessionEndWebhook, "`URL` POSTed {action, session, user_id, login, asked_by} to end a session",
		func(c *Config) *string { return &c.SessionEndWebhook }, "", optional(sessionctl.ValidateWebhook)).
		rule(func(c *Config) error {
			if c.SessionEndWebhook != "" && c.WebhookSecretFile == "" {
				return errors.New("needs webhook_secret_file: its posts are signed with that key (X-Cdcaudit-Signature), so that the application can tell cdcaudit's requests to end a session from anyone's")
			}
			return nil
		}),
	setting(KeyPolicyIdleTimeout, "end sessions without activity for this `duration` (0: off)",
		func(c *Config) *time.Duration { return &c.PolicyIdleTimeout }, 0, sessionctl.ValidatePolicyDuration),
	setting(KeyPolicyMaxAge, "end sessions this `duration` after their first activity (0: off)",
		func(c *Config) *time.Duration { return &c.PolicyMaxAge }, 0, sessionctl.ValidatePolicyDuration),
	setting(KeyPolicyOneSession, "one session per user: a new login ends the user's older sessions",
		func(c *Config) *bool { return &c.PolicyOneSession }, false, nil),
	listOf(KeyPolicyExceptions, "`logins and groups` no policy ends: login:NAME, group:module.name (Odoo group xml id)",
		func(c *Config) *[]sessionctl.Exception { return &c.PolicyExceptions }, items[sessionctl.Exception]{form: "exceptions", parse: sessionctl.ParseException}, nil),
	setting(KeyPolicyDryRun, "session policies only log and record what they would end",
		func(c *Config) *bool { return &c.PolicyDryRun }, false, nil),
	setting(KeySinkPostgresDSN, "PostgreSQL audit database `URL` the trail is delivered to (docs/sinks.md; never logged with its password)",
		func(c *Config) *string { return &c.SinkPostgresDSN }, "", optional(replication.ValidateDSN)),
	setting(KeySinkPostgresTable, "the audit database's `table` (created and migrated by cdcaudit)",
		func(c *Config) *string { return &c.SinkPostgresTable }, pgsink.DefaultTable, pgsink.CheckTable),
	setting(KeySinkPostgresBatch, "records per `number` delivered to the audit database in one transaction",
		func(c *Config) *int { return &c.SinkPostgresBatch }, pgsink.DefaultBatch, pgsink.ValidateBatch),
	setting(KeySinkKafkaBrokers, "Kafka `brokers` (host:port, comma-separated) the audit trail is delivered to (docs/kafka.md); none: no Kafka sink",
		func(c *Config) *[]string { return &c.SinkKafkaBrokers }, nil, kafkasink.ValidateBrokers),
	setting(KeySinkKafkaTopic, "the Kafka `topic`: a name, or a template with {source}, {schema} and {table} (a topic per table)",
		func(c *Config) *string { return &c.SinkKafkaTopic }, kafkasink.DefaultTopic, kafkasink.ValidateTopic),
	setting(KeySinkKafkaTLS, "TLS to the Kafka brokers: off, on (the system's certificate authorities), or the `file` of the PEM certificate authorities to trust",
		func(c *Config) *string { return &c.SinkKafkaTLS }, kafkasink.TLSOff, nil).
		files(func(c *Config) error { return kafkasink.ValidateTLS(c.SinkKafkaTLS) }),
	setting(KeySinkKafkaSASL, "Kafka SASL `mechanism`: plain, scram-sha-256 or scram-sha-512 (with sink_kafka_user and sink_kafka_password_file); none: no SASL",
		func(c *Config) *string { return &c.SinkKafkaSASL }, kafkasink.SASLNone, kafkasink.ValidateSASL),
	setting(KeySinkKafkaUser, "Kafka SASL `user`",
		func(c *Config) *string { return &c.SinkKafkaUser }, "", nil),
	setting(KeySinkKafkaPasswordFile, "`file` holding the Kafka SASL password (never the password itself)",
		func(c *Config) *string { return &c.SinkKafkaPasswordFile }, "", nil).
		rule(func(c *Config) error {
			if (c.SinkKafkaSASL == "") != (c.SinkKafkaUser == "") || (c.SinkKafkaUser == "") != (c.SinkKafkaPasswordFile == "") {
				return errors.New("sink_kafka_sasl, sink_kafka_user and sink_kafka_password_file go together")
			}
			return nil
		}).
		files(func(c *Config) error { _, err := c.readSecret(c.SinkKafkaPasswordFile, 1); return err }),
	setting(KeySinkKafkaCompression, "compression of the Kafka record batches: `codec` zstd, lz4, snappy, gzip or none",
		func(c *Config) *string { return &c.SinkKafkaCompression }, kafkasink.DefaultCompression, kafkasink.ValidateCompression),
}

func validLimit(s string) error { _, err := auth.ParseLimit(s); return err }

func validBurst(s string) error    { _, err := applog.ParseBurst(s); return err }
func validRate(s string) error     { _, err := rules.ParseRate(s); return err }
func validSpeed(s string) error    { _, err := rules.ParseSpeed(s); return err }
func validHours(s string) error    { _, err := rules.ParseHours(s); return err }
func validModels(s []string) error { _, err := rules.ParseModels(strings.Join(s, ",")); return err }

func lookupKey(name string) (keyInfo, bool) {
	for _, k := range keys {
		if k.name == name {
			return k, true
		}
	}
	return keyInfo{}, false
}

// FlagName returns the command-line flag of a key ("data_dir" → "data-dir").
func FlagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// EnvName returns the environment variable of a key ("data_dir" → "CDCAUDIT_DATA_DIR").
func EnvName(key string) string { return EnvPrefix + strings.ToUpper(key) }

// Keys returns every key name in documentation order.
func Keys() []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.name
	}
	return out
}

// Set binds some configuration keys to a command's flag set.
type Set struct {
	fs       *flag.FlagSet
	keys     []string
	required map[string]bool
	file     *string
	vals     map[string]*flagValue
}

type flagValue struct {
	list bool
	vals []string
	set  bool
}

func (v *flagValue) String() string {
	if v == nil {
		return ""
	}
	return strings.Join(v.vals, ",")
}

func (v *flagValue) Set(s string) error {
	if v.list {
		v.vals = append(v.vals, s)
	} else {
		v.vals = []string{s}
	}
	v.set = true
	return nil
}

type boolFlag struct{ flagValue }

func (v *boolFlag) IsBoolFlag() bool { return true }

// Bind registers --config and one flag per key on fs. The keys' flags carry
// their defaults in their usage text; values are only checked in Load, so
// that every layer gets the same checks and the same error messages.
func Bind(fs *flag.FlagSet, names ...string) *Set {
	s := &Set{fs: fs, required: map[string]bool{}, vals: map[string]*flagValue{}}
	s.file = fs.String("config", "", "YAML configuration `file` (or "+EnvConfig+"); flags and "+EnvPrefix+"* variables override it")
	def := Defaults()
	for _, name := range names {
		k, ok := lookupKey(name)
		if !ok {
			panic("config: unknown key " + name)
		}
		s.keys = append(s.keys, name)
		usage := k.usage + " [" + EnvName(name) + "]"
		if v := k.value(&def); !v.empty() {
			usage += " (default " + v.String() + ")"
		}
		if k.kind() == boolean {
			bv := &boolFlag{}
			s.vals[name] = &bv.flagValue
			fs.Var(bv, FlagName(name), usage)
			continue
		}
		v := &flagValue{list: k.kind() == list}
		s.vals[name] = v
		fs.Var(v, FlagName(name), usage)
	}
	return s
}

// Require marks keys that must have a value after all layers are applied.
func (s *Set) Require(names ...string) *Set {
	for _, n := range names {
		s.required[n] = true
	}
	return s
}

// Load resolves the configuration after fs.Parse: defaults, the YAML file,
// the environment (environ, "KEY=value" as os.Environ returns it) and the
// flags. Only the bound keys are read from the environment and required,
// but every key of the YAML file and every CDCAUDIT_* variable is checked.
func (s *Set) Load(environ []string) (*Config, error) {
	if err := checkEnv(environ); err != nil {
		return nil, err
	}
	lookupEnv := func(name string) (string, bool) {
		for i := len(environ) - 1; i >= 0; i-- { // the last one wins, as with getenv
			if k, v, _ := strings.Cut(environ[i], "="); k == name {
				return v, true
			}
		}
		return "", false
	}
	c := Defaults()
	c.Sources = map[string]string{}
	for _, k := range keys {
		c.Sources[k.name] = "default"
	}

	file := *s.file
	if file == "" {
		if v, ok := lookupEnv(EnvConfig); ok && v != "" {
			file = v
		}
	}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := applyYAML(&c, file, data); err != nil {
			return nil, err
		}
		c.File = file
	}

	for _, name := range s.keys {
		env := EnvName(name)
		v, ok := lookupEnv(env)
		if !ok || v == "" {
			continue
		}
		k, _ := lookupKey(name)
		if err := k.value(&c).set(v); err != nil {
			return nil, fmt.Errorf("config: %s: %v (from %s)", name, err, env)
		}
		c.Sources[name] = env
	}

	for _, name := range s.keys {
		fv := s.vals[name]
		if !fv.set {
			continue
		}
		k, _ := lookupKey(name)
		src := "--" + FlagName(name)
		text := fv.vals[len(fv.vals)-1]
		if k.kind() == list {
			text = strings.Join(fv.vals, ",")
		}
		err := k.value(&c).set(text)
		if err != nil {
			return nil, fmt.Errorf("config: %s: %v (from %s)", name, err, src)
		}
		c.Sources[name] = src
	}

	if err := c.validate(); err != nil {
		return nil, err
	}
	if err := c.defaultSource(); err != nil {
		return nil, err
	}
	if err := c.resolveDatabases(); err != nil {
		return nil, err
	}
	for _, name := range s.keys {
		if name == KeyDSN && c.DatabaseList != nil {
			continue // the databases' DSNs
		}
		if k, _ := lookupKey(name); s.required[name] && k.value(&c).empty() {
			return nil, fmt.Errorf("config: %s is required: set --%s or %s (or %s in the --config file)", name, FlagName(name), EnvName(name), name)
		}
	}
	return &c, nil
}

// applyYAML reads a YAML mapping of keys to values into c.
func applyYAML(c *Config, file string, data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config: %s: %v", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // empty file
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config: %s:%d: want a mapping of keys to values (e.g. \"slot: cdcaudit\")", file, root.Line)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		kn, vn := root.Content[i], root.Content[i+1]
		pos := fmt.Sprintf("%s:%d", file, kn.Line)
		name := kn.Value
		if line, dup := seen[name]; dup {
			return fmt.Errorf("config: %s: key %q already defined at line %d", pos, name, line)
		}
		seen[name] = kn.Line
		if name == KeyDatabases {
			items, err := readDatabases(file, pos, vn)
			if err != nil {
				return fmt.Errorf("config: %w", err)
			}
			c.databaseItems, c.Sources[name] = items, pos
			continue
		}
		k, ok := lookupKey(name)
		if !ok {
			hint := ""
			if s := suggest(name); s != "" {
				hint = fmt.Sprintf(" (did you mean %s?)", s)
			}
			return fmt.Errorf("config: %s: unknown key %q%s; known keys: %s", pos, name, hint, strings.Join(Keys(), ", "))
		}
		if err := applyNode(c, k, vn); err != nil {
			return fmt.Errorf("config: %s: %v (from %s)", name, err, pos)
		}
		c.Sources[name] = pos
	}
	return nil
}

func applyNode(c *Config, k keyInfo, n *yaml.Node) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	v := k.value(c)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		if v.kind() == list {
			return v.set("")
		}
		return errors.New("no value (remove the key to use the default)")
	}
	return v.setYAML(n)
}

// checkEnv refuses a set CDCAUDIT_* variable that names no key: a misspelt
// variable would otherwise be ignored and its setting silently lost.
func checkEnv(environ []string) error {
	for _, kv := range environ {
		name, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || v == "" || name == EnvConfig || name == EnvPGBinDir {
			continue
		}
		key := strings.ToLower(strings.TrimPrefix(name, EnvPrefix))
		if key == KeyDatabases {
			return fmt.Errorf("config: %s: databases is a list set in the --config file only", name)
		}
		if _, ok := lookupKey(key); ok {
			continue
		}
		known := []string{EnvConfig, EnvPGBinDir}
		for _, k := range keys {
			known = append(known, EnvName(k.name))
		}
		hint := ""
		if k := suggest(key); k != "" {
			hint = EnvName(k)
		} else {
			hint = Closest(name, known)
		}
		if hint != "" {
			hint = fmt.Sprintf(" (did you mean %s?)", hint)
		}
		return fmt.Errorf("config: unknown environment variable %s%s; known variables: %s", name, hint, strings.Join(known, ", "))
	}
	return nil
}

// suggest returns the known key closest to a misspelt one.
func suggest(name string) string {
	n := strings.ToLower(strings.ReplaceAll(name, "-", "_"))
	names := make([]string, 0, len(keys))
	for _, k := range keys {
		if strings.HasPrefix(n, k.name+"_") || strings.HasPrefix(k.name, n+"_") { // slot_name, data
			return k.name
		}
		names = append(names, k.name)
	}
	return Closest(n, names)
}

// Closest returns the candidate nearest to name, within two edits, or "":
// the "did you mean" of a misspelt key or command.
func Closest(name string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(name, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// validate applies each key's rule, the owner's, to the resolved value.
func (c *Config) validate() error {
	for _, k := range keys {
		if k.check == nil {
			continue
		}
		if err := k.check(c); err != nil {
			return c.fail(k.name, err)
		}
	}
	return nil
}

// fail is err about key, with where its value came from.
func (c *Config) fail(key string, err error) error {
	return fmt.Errorf("config: %s: %v (from %s)", key, err, c.Sources[key])
}

// CheckFiles reads the files the configuration names — profile_file (a
// valid profile), redact_key_file (a usable key), geoip_db (a readable
// file) — and checks where anchors go, so that a bad one stops a command
// before it starts, with an error naming the key. Nothing of the key
// file's content is ever in an error.
func (c *Config) CheckFiles() error {
	for _, k := range keys {
		if k.checkFiles == nil {
			continue
		}
		if err := k.checkFiles(c); err != nil {
			return c.fail(k.name, err)
		}
	}
	return nil
}

// ReadRedactKey returns the HMAC key of redacted values from
// redact_key_file (redact.ReadKeyFile), nil when the key is not set.
func (c *Config) ReadRedactKey() ([]byte, error) {
	key, err := c.readRedactKey()
	if err != nil {
		return nil, c.fail(KeyRedactKeyFile, err)
	}
	return key, nil
}

// ReadSMTPPassword reads the SMTP password from smtp_password_file (""
// when none is configured).
func (c *Config) ReadSMTPPassword() (string, error) {
	b, err := c.readSecret(c.SMTPPasswordFile, 1)
	if err != nil {
		return "", c.fail(KeySMTPPasswordFile, err)
	}
	return string(b), nil
}

// ReadKafkaPassword reads the Kafka SASL password from
// sink_kafka_password_file ("" when none is configured).
func (c *Config) ReadKafkaPassword() (string, error) {
	b, err := c.readSecret(c.SinkKafkaPasswordFile, 1)
	if err != nil {
		return "", c.fail(KeySinkKafkaPasswordFile, err)
	}
	return string(b), nil
}

// KafkaSink returns the Kafka sink's configuration, its password read from
// its file; ok is false when no brokers are configured (no Kafka sink).
func (c *Config) KafkaSink() (cfg kafkasink.Config, ok bool, err error) {
	if len(c.SinkKafkaBrokers) == 0 {
		return cfg, false, nil
	}
	pass, err := c.ReadKafkaPassword()
	if err != nil {
		return cfg, false, err
	}
	return kafkasink.Config{
		Brokers:     c.SinkKafkaBrokers,
		Source:      c.Source,
		Topic:       c.SinkKafkaTopic,
		TLS:         c.SinkKafkaTLS,
		SASL:        c.SinkKafkaSASL,
		User:        c.SinkKafkaUser,
		Password:    kafkasink.Secret(pass),
		Compression: c.SinkKafkaCompression,
	}, true, nil
}

// ReadWebhookSecret reads the webhook's key from webhook_secret_file (nil
// when none is configured).
func (c *Config) ReadWebhookSecret() ([]byte, error) {
	b, err := c.readSecret(c.WebhookSecretFile, alerts.MinSecretLen)
	if err != nil {
		return nil, c.fail(KeyWebhookSecretFile, err)
	}
	return b, nil
}

func (c *Config) readSecret(path string, minLen int) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	return alerts.ReadSecretFile(path, minLen)
}

func (c *Config) readRedactKey() ([]byte, error) {
	if c.RedactKeyFile == "" {
		return nil, nil
	}
	return redact.ReadKeyFile(c.RedactKeyFile)
}

// DescribeDSN returns a password-free description of a connection string
// for logs: "postgres://user@host:port/dbname".
func DescribeDSN(dsn string) string {
	pc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "(unparsable connection string)"
	}
	u := url.URL{Scheme: "postgres", User: url.User(pc.User), Host: net.JoinHostPort(pc.Host, strconv.Itoa(int(pc.Port))), Path: "/" + pc.Database}
	if strings.HasPrefix(pc.Host, "/") {
		u.Host = ""
		q := url.Values{"host": {pc.Host}, "port": {strconv.Itoa(int(pc.Port))}}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// Describe lists every key with its value and source, one per line, with
// the DSN's password hidden: for `--log-level debug` start-up logs.
func (c *Config) Describe() []string {
	var out []string
	for _, k := range keys {
		v := k.value(c).String()
		if (k.name == KeyDSN || k.name == KeySinkPostgresDSN) && v != "" {
			v = DescribeDSN(v)
		}
		if k.name == KeyWebhookURL && v != "" {
			v = alerts.DescribeURL(v) // a token may be part of it
		}
		out = append(out, fmt.Sprintf("%s=%s (%s)", k.name, v, c.Sources[k.name]))
	}
	for i, d := range c.DatabaseList {
		out = append(out, fmt.Sprintf("%s[%d]=%s (%s)", KeyDatabases, i, d, c.databaseItems[i].pos))
	}
	return out
}

// DBSessionsApp says which database sessions are the application's.
func (c *Config) DBSessionsApp() dbsessions.App {
	return dbsessions.App{Roles: c.DBSessionsAppRoles, Names: c.DBSessionsAppNames, Addrs: c.DBSessionsAppAddrs}
}
