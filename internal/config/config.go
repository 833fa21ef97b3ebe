// Package config is cdcaudit's configuration: built-in defaults, then a YAML
// file (--config or CDCAUDIT_CONFIG), then CDCAUDIT_* environment variables,
// then command-line flags, each layer overriding the ones before it.
//
// Keys (YAML snake_case; environment CDCAUDIT_<KEY IN UPPER CASE>; flag
// --<key-with-dashes>):
//
//	dsn              PostgreSQL connection URL or key=value string     (required by run, check)
//	data_dir         directory of the audit store                       (required by run, export, verify)
//	http_addr        address of /metrics and /healthz                  default 127.0.0.1:9187
//	pprof            serve /debug/pprof to loopback clients             default false
//	slot             logical replication slot name                      default cdcaudit
//	publication      publication name                                   default cdcaudit
//	tables           schema-qualified globs of tables to publish        default: all tables
//	exclude          schema-qualified globs of tables not to publish
//	status_interval  interval of standby status updates                 default 1s
//	log_format       text or json                                       default text
//	log_level        debug, info, warn or error                         default info
//	accept_gap       start although the slot is ahead of the store      default false
//	profile          application profile: auto, odoo, generic or none   default auto
//	profile_file     YAML profile of the application                    (required by profile generic)
//	redact           extra secret columns (schema.table.column globs)
//	redact_key_file  file holding the HMAC key for redacted values
//	idle_after       a session without activity this long is idle       default 5m
//	session_lifetime a session without activity this long has ended     default 168h
//	geoip_db         MaxMind/DB-IP .mmdb file for session locations
//	snapshot         initial or never: copy the tables on a fresh start  default initial
//	snapshot_tables  schema-qualified globs of the tables to snapshot   default: all published
//	retention        how long events are kept: a window, and windows    default: forever
//	                 per table (default=400d,public.account_move*=10y)
//
// Lists are YAML sequences (or one comma-separated string); in the
// environment and on the command line they are comma-separated, and list
// flags may be repeated. An environment variable set to the empty string
// counts as unset. Unknown YAML keys, unknown CDCAUDIT_* variables and
// malformed values are errors that name the key and where the value came
// from; nothing silently falls back to a default.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.yaml.in/yaml/v3"

	"github.com/cdcaudit/cdcaudit/anchor"
	"github.com/cdcaudit/cdcaudit/profile"
)

// Key names, as written in the YAML file.
const (
	KeyDSN            = "dsn"
	KeyDataDir        = "data_dir"
	KeyHTTPAddr       = "http_addr"
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

	KeySnapshot       = "snapshot"
	KeySnapshotTables = "snapshot_tables"

	KeyRetention = "retention"
)

// SnapshotModes are the values of the snapshot key.
var SnapshotModes = []string{"initial", "never"}

// Profiles are the values of the profile key.
var Profiles = []string{"auto", "odoo", "generic", "none"}

// MinRedactKeyLen is the shortest HMAC key accepted in redact_key_file.
const MinRedactKeyLen = 16

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
	// Pprof serves Go's profiler at /debug/pprof on the HTTP server, to
	// clients on the loopback interface only.
	Pprof          bool
	Slot           string
	Publication    string
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

	// Snapshot is initial (copy the published tables matching
	// SnapshotTables, all when empty, on a fresh start) or never; the
	// profile's users, models and sessions tables are loaded either way.
	Snapshot       string
	SnapshotTables []string

	// Retention is how long events are kept (zero: forever).
	Retention Retention

	// File is the YAML file that was read ("" when none).
	File string
	// Sources says where each key's value came from: "default", a file
	// position ("cdcaudit.yml:3"), an environment variable or a flag.
	Sources map[string]string
}

// Defaults returns the built-in defaults.
func Defaults() Config {
	return Config{
		HTTPAddr:       "127.0.0.1:9187",
		Slot:           "cdcaudit",
		Publication:    "cdcaudit",
		StatusInterval: time.Second,
		LogFormat:      "text",
		LogLevel:       "info",

		Profile:         "auto",
		IdleAfter:       5 * time.Minute,
		SessionLifetime: 7 * 24 * time.Hour,
		Snapshot:        "initial",
	}
}

type keyInfo struct {
	name  string
	usage string
	// field points at the key's member of c; its type decides how values
	// are parsed, shown and tested for emptiness.
	field func(c *Config) any
}

func (k keyInfo) isList() bool {
	switch k.field(&Config{}).(type) {
	case *[]string, *[]profile.ColumnRule:
		return true
	}
	return false
}

func (k keyInfo) isBool() bool {
	_, ok := k.field(&Config{}).(*bool)
	return ok
}

// keys lists every key, in documentation order.
var keys = []keyInfo{
	{KeyDSN, "PostgreSQL connection `URL` (postgres://user:pass@host:5432/db) or key=value string", func(c *Config) any { return &c.DSN }},
	{KeyDataDir, "`directory` of the audit store (created if missing)", func(c *Config) any { return &c.DataDir }},
	{KeyHTTPAddr, "`address` for /metrics and /healthz (port 0 picks a free port)", func(c *Config) any { return &c.HTTPAddr }},
	{KeyPprof, "serve Go's profiler at /debug/pprof on the HTTP server, answering loopback clients only", func(c *Config) any { return &c.Pprof }},
	{KeySlot, "logical replication slot `name` (created if missing)", func(c *Config) any { return &c.Slot }},
	{KeyPublication, "publication `name` (created if missing), and <name>_changes for updates and deletes", func(c *Config) any { return &c.Publication }},
	{KeyTables, "tables to audit: comma-separated schema-qualified `globs`, e.g. public.sale_*,public.res_partner (default: all tables); tables created later that match are captured from their first insert", func(c *Config) any { return &c.Tables }},
	{KeyExclude, "tables not to audit: comma-separated schema-qualified `globs`", func(c *Config) any { return &c.Exclude }},
	{KeyStatusInterval, "`interval` between standby status updates to the server", func(c *Config) any { return &c.StatusInterval }},
	{KeyLogFormat, "log `format`: text or json", func(c *Config) any { return &c.LogFormat }},
	{KeyLogLevel, "log `level`: debug, info, warn or error", func(c *Config) any { return &c.LogLevel }},
	{KeyAcceptGap, "start even when the slot is ahead of the store's checkpoint, or had to be created anew after it was lost (the changes in between are lost for good; without this cdcaudit refuses to start)", func(c *Config) any { return &c.AcceptGap }},
	{KeyAnchorFile, "`file` to append signed chain anchors to, besides the log (outside data_dir, on storage the store's host cannot rewrite); check them with verify --anchor", func(c *Config) any { return &c.AnchorFile }},
	{KeyAnchorSyslog, "syslog `address` to send signed chain anchors to as well: udp://host:514, tcp://host:601 or unix:///dev/log", func(c *Config) any { return &c.AnchorSyslog }},
	{KeyProfile, "application `profile`: auto (odoo once res_users and res_users_log or res_device_log exist, at start or when they appear in the stream), odoo, generic (needs --profile-file) or none", func(c *Config) any { return &c.Profile }},
	{KeyProfileFile, "YAML `file` describing the application's users, sessions, audit columns and secrets, for --profile generic", func(c *Config) any { return &c.ProfileFile }},
	{KeyRedact, "more secret columns, never stored: comma-separated schema.table.column `globs`, e.g. public.res_partner.vat,*.*.api_key (a where condition: public.settings.value[name=*secret*])", func(c *Config) any { return &c.Redact }},
	{KeyRedactKeyFile, "`file` holding a key (at least 16 bytes): redacted values become an HMAC-SHA256 under it instead of \"[redacted]\", so equal values stay comparable", func(c *Config) any { return &c.RedactKeyFile }},
	{KeyIdleAfter, "a session without activity for this `duration` is shown idle", func(c *Config) any { return &c.IdleAfter }},
	{KeySessionLifetime, "a session without activity for this `duration` has ended (expired)", func(c *Config) any { return &c.SessionLifetime }},
	{KeyGeoIPDB, "MaxMind or DB-IP .mmdb `file` (country or city): session locations from IP addresses", func(c *Config) any { return &c.GeoIPDB }},
	{KeySnapshot, "`mode`: initial (when the slot is created, copy the published tables as op \"snapshot\" records, consistent with the stream) or never (only the application's users, models and sessions tables, always loaded once)", func(c *Config) any { return &c.Snapshot }},
	{KeySnapshotTables, "tables the initial snapshot copies: comma-separated schema-qualified `globs`, e.g. public.res_*,public.sale_order (default: every published table)", func(c *Config) any { return &c.SnapshotTables }},
	{KeyRetention, "how long events are kept: a `window` (400d) for every table, and windows per table glob, first match wins: default=400d,public.account_move*=10y (units h, d, w, y = 365d; forever keeps; default: keep everything forever)", func(c *Config) any { return &c.Retention }},
}

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

type boolValue struct{ flagValue }

func (v *boolValue) IsBoolFlag() bool { return true }

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
		if !isEmpty(&def, k) {
			usage += " (default " + format(&def, k) + ")"
		}
		if k.isBool() {
			bv := &boolValue{}
			s.vals[name] = &bv.flagValue
			fs.Var(bv, FlagName(name), usage)
			continue
		}
		v := &flagValue{list: k.isList()}
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
		if err := setString(&c, k, v); err != nil {
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
		var err error
		if k.isList() {
			var items []string
			for _, v := range fv.vals {
				items = append(items, splitList(v)...)
			}
			err = setList(&c, k, items)
		} else {
			err = setString(&c, k, fv.vals[len(fv.vals)-1])
		}
		if err != nil {
			return nil, fmt.Errorf("config: %s: %v (from %s)", name, err, src)
		}
		c.Sources[name] = src
	}

	if err := c.validate(); err != nil {
		return nil, err
	}
	for _, name := range s.keys {
		if k, _ := lookupKey(name); s.required[name] && isEmpty(&c, k) {
			return nil, fmt.Errorf("config: %s is required: set --%s or %s (or %s in the --config file)", name, FlagName(name), EnvName(name), name)
		}
	}
	return &c, nil
}

// isEmpty reports whether k has no value (false for a bool).
func isEmpty(c *Config, k keyInfo) bool {
	switch p := k.field(c).(type) {
	case *string:
		return *p == ""
	case *[]string:
		return len(*p) == 0
	case *[]profile.ColumnRule:
		return len(*p) == 0
	case *time.Duration:
		return *p == 0
	case *bool:
		return !*p
	case *Retention:
		return p.IsZero()
	}
	panic("config: unhandled field type of " + k.name)
}

// format returns k's value as it would be written on the command line.
func format(c *Config, k keyInfo) string {
	switch p := k.field(c).(type) {
	case *string:
		return *p
	case *[]string:
		return strings.Join(*p, ",")
	case *[]profile.ColumnRule:
		rules := make([]string, len(*p))
		for i, r := range *p {
			rules[i] = r.String()
		}
		return strings.Join(rules, ",")
	case *time.Duration:
		return p.String()
	case *bool:
		return strconv.FormatBool(*p)
	case *Retention:
		return p.String()
	}
	panic("config: unhandled field type of " + k.name)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// setString parses one value given as text (environment, flag, YAML
// scalar); a list is comma-separated.
func setString(c *Config, k keyInfo, v string) error {
	switch p := k.field(c).(type) {
	case *string:
		*p = v
	case *time.Duration:
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		*p = d
	case *bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("invalid boolean %q (want true or false)", v)
		}
		*p = b
	case *Retention:
		r, err := ParseRetention(v)
		if err != nil {
			return err
		}
		*p = r
	default:
		return setList(c, k, splitList(v))
	}
	return nil
}

// setList sets a list key: table globs, or redaction rules.
func setList(c *Config, k keyInfo, items []string) error {
	switch p := k.field(c).(type) {
	case *[]profile.ColumnRule:
		var rules []profile.ColumnRule
		for _, it := range items {
			r, err := profile.ParseColumnRule(it)
			if err != nil {
				return err
			}
			rules = append(rules, r)
		}
		*p = rules
	case *[]string:
		for _, it := range items {
			if err := checkGlob(it); err != nil {
				return err
			}
		}
		*p = items
	default:
		panic("config: " + k.name + " is not a list")
	}
	return nil
}

// checkGlob accepts a schema-qualified glob: "schema.table", where either
// part may use path.Match syntax (*, ?, [a-z]).
func checkGlob(g string) error {
	schema, table, ok := strings.Cut(g, ".")
	if !ok || schema == "" || table == "" {
		return fmt.Errorf("%q is not a schema-qualified table glob (want e.g. public.sale_order, public.sale_* or *.res_partner)", g)
	}
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("%q: malformed glob", g)
	}
	return nil
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
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		if k.isList() {
			return setList(c, k, nil)
		}
		return errors.New("no value (remove the key to use the default)")
	}
	switch k.field(c).(type) {
	case *[]profile.ColumnRule:
		return applyRules(c, k, n)
	case *Retention:
		return applyRetention(c, n)
	case *[]string:
		switch n.Kind {
		case yaml.ScalarNode:
			return setList(c, k, splitList(n.Value))
		case yaml.SequenceNode:
			var items []string
			for _, e := range n.Content {
				if e.Kind != yaml.ScalarNode || e.Tag == "!!null" {
					return fmt.Errorf("line %d: want a list of strings", e.Line)
				}
				items = append(items, strings.TrimSpace(e.Value))
			}
			return setList(c, k, items)
		}
		return errors.New("want a list of strings")
	default:
		if n.Kind != yaml.ScalarNode {
			return fmt.Errorf("want a single value, not a %s", kindName(n.Kind))
		}
		// A scalar YAML typed as a number ("slot: 123") is taken as written.
		return setString(c, k, n.Value)
	}
}

// applyRules reads redact: a list whose items are "schema.table.column"
// strings or mappings {table, column, where, values}, or one
// comma-separated string.
func applyRules(c *Config, k keyInfo, n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		return setList(c, k, splitList(n.Value))
	case yaml.SequenceNode:
	default:
		return errors.New("want a list of rules (schema.table.column, or {table: …, column: …, where: …, values: […]})")
	}
	var rules []profile.ColumnRule
	for _, e := range n.Content {
		if e.Kind == yaml.AliasNode {
			e = e.Alias
		}
		switch {
		case e.Kind == yaml.ScalarNode && e.Tag != "!!null":
			r, err := profile.ParseColumnRule(e.Value)
			if err != nil {
				return fmt.Errorf("line %d: %v", e.Line, err)
			}
			rules = append(rules, r)
		case e.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(e.Content); i += 2 {
				switch f := e.Content[i].Value; f {
				case "table", "column", "where", "values":
				default:
					return fmt.Errorf("line %d: unknown field %q (want table, column, where, values)", e.Content[i].Line, f)
				}
			}
			var r profile.ColumnRule
			if err := e.Decode(&r); err != nil {
				return fmt.Errorf("line %d: %v", e.Line, strings.TrimPrefix(err.Error(), "yaml: "))
			}
			if err := r.Validate(); err != nil {
				return fmt.Errorf("line %d: %v", e.Line, err)
			}
			rules = append(rules, r)
		default:
			return fmt.Errorf("line %d: want schema.table.column or a mapping {table, column, where, values}", e.Line)
		}
	}
	c.Redact = rules
	return nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "complex value"
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

// validate checks the values that passed parsing.
func (c *Config) validate() error {
	fail := func(key string, format string, args ...any) error {
		return fmt.Errorf("config: %s: %s (from %s)", key, fmt.Sprintf(format, args...), c.Sources[key])
	}
	if c.DSN != "" {
		if err := checkDSN(c.DSN); err != nil {
			return fail(KeyDSN, "%v", err)
		}
	}
	if err := checkAddr(c.HTTPAddr); err != nil {
		return fail(KeyHTTPAddr, "%v", err)
	}
	if err := checkSlotName(c.Slot); err != nil {
		return fail(KeySlot, "%v", err)
	}
	if c.Publication == "" {
		return fail(KeyPublication, "empty name")
	}
	if len(c.Publication) > 55 || strings.ContainsRune(c.Publication, 0) {
		return fail(KeyPublication, "%q is not a valid name (at most 55 bytes: %q is added for the second publication)", c.Publication, "_changes")
	}
	if c.StatusInterval < 10*time.Millisecond || c.StatusInterval > 10*time.Minute {
		return fail(KeyStatusInterval, "%s is out of range (want 10ms to 10m; keep it well below the server's wal_sender_timeout)", c.StatusInterval)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fail(KeyLogFormat, "%q is not a log format (want text or json)", c.LogFormat)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fail(KeyLogLevel, "%q is not a log level (want debug, info, warn or error)", c.LogLevel)
	}
	switch c.Profile {
	case "auto", "odoo", "none":
		if c.ProfileFile != "" {
			return fail(KeyProfileFile, "set, but profile is %s: the file is read only with profile generic (set profile: generic, or remove profile_file)", c.Profile)
		}
	case "generic":
		if c.ProfileFile == "" {
			return fail(KeyProfile, "generic needs profile_file, the YAML description of the application (set --profile-file or %s)", EnvName(KeyProfileFile))
		}
	default:
		return fail(KeyProfile, "%q is not a profile (want %s)", c.Profile, strings.Join(Profiles, ", "))
	}
	if !slices.Contains(SnapshotModes, c.Snapshot) {
		return fail(KeySnapshot, "%q is not a snapshot mode (want %s)", c.Snapshot, strings.Join(SnapshotModes, " or "))
	}
	if c.IdleAfter < time.Second || c.IdleAfter > 24*time.Hour {
		return fail(KeyIdleAfter, "%s is out of range (want 1s to 24h)", c.IdleAfter)
	}
	if c.SessionLifetime < time.Minute || c.SessionLifetime > 366*24*time.Hour {
		return fail(KeySessionLifetime, "%s is out of range (want 1m to 8784h, a year)", c.SessionLifetime)
	}
	if c.SessionLifetime < c.IdleAfter {
		return fail(KeySessionLifetime, "%s is shorter than idle_after (%s): a session would end before it is idle", c.SessionLifetime, c.IdleAfter)
	}
	return nil
}

// CheckFiles reads the files the configuration names — profile_file (a
// valid profile), redact_key_file (a usable key), geoip_db (a readable
// file) — so that a bad one stops a command before it starts, with an
// error naming the key. Nothing of the key file's content is ever in an
// error.
func (c *Config) CheckFiles() error {
	if c.AnchorSyslog != "" {
		if _, _, err := anchor.SyslogAddr(c.AnchorSyslog); err != nil {
			return fmt.Errorf("config: %s: %v (from %s)", KeyAnchorSyslog, err, c.Sources[KeyAnchorSyslog])
		}
	}
	if c.AnchorFile != "" && c.DataDir != "" {
		// Anchors next to the store protect nothing: whoever can rewrite the
		// store can rewrite them.
		if rel, err := filepath.Rel(filepath.Clean(c.DataDir), filepath.Clean(c.AnchorFile)); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return fmt.Errorf("config: %s: %s is inside %s %s: put the anchors where whoever holds the store cannot rewrite them (from %s)",
				KeyAnchorFile, c.AnchorFile, KeyDataDir, c.DataDir, c.Sources[KeyAnchorFile])
		}
	}
	if c.ProfileFile != "" {
		if _, err := profile.Load(c.ProfileFile); err != nil {
			return fmt.Errorf("config: %s: %v (from %s)", KeyProfileFile, err, c.Sources[KeyProfileFile])
		}
	}
	if _, err := c.ReadRedactKey(); err != nil {
		return err
	}
	if c.GeoIPDB != "" {
		f, err := os.Open(c.GeoIPDB)
		if err == nil {
			var st os.FileInfo
			if st, err = f.Stat(); err == nil && !st.Mode().IsRegular() {
				err = errors.New("not a regular file")
			} else if err == nil && st.Size() == 0 {
				err = errors.New("empty file (want a MaxMind or DB-IP .mmdb database)")
			}
			f.Close()
		}
		if err != nil {
			return fmt.Errorf("config: %s: %v (from %s)", KeyGeoIPDB, err, c.Sources[KeyGeoIPDB])
		}
	}
	return nil
}

// ReadRedactKey returns the HMAC key of redacted values from
// redact_key_file, nil when the key is not set. Surrounding white space (a
// final newline) is not part of the key; at least MinRedactKeyLen bytes
// must remain. Generate one with e.g. `openssl rand -hex 32 > key; chmod
// 600 key`.
func (c *Config) ReadRedactKey() ([]byte, error) {
	if c.RedactKeyFile == "" {
		return nil, nil
	}
	fail := func(msg string) error {
		return fmt.Errorf("config: %s: %s (from %s)", KeyRedactKeyFile, msg, c.Sources[KeyRedactKeyFile])
	}
	st, err := os.Stat(c.RedactKeyFile)
	if err != nil {
		return nil, fail(err.Error())
	}
	if !st.Mode().IsRegular() {
		return nil, fail(c.RedactKeyFile + ": not a regular file")
	}
	if st.Size() > 1<<16 {
		return nil, fail(c.RedactKeyFile + ": larger than 64 KiB: not a key file")
	}
	data, err := os.ReadFile(c.RedactKeyFile)
	if err != nil {
		return nil, fail(err.Error())
	}
	key := bytes.TrimSpace(data)
	if len(key) < MinRedactKeyLen {
		return nil, fail(fmt.Sprintf("%s: the key has %d bytes, want at least %d (e.g. openssl rand -hex 32 > %s)", c.RedactKeyFile, len(key), MinRedactKeyLen, c.RedactKeyFile))
	}
	return key, nil
}

func checkSlotName(s string) error {
	if s == "" {
		return errors.New("empty name")
	}
	if len(s) > 63 {
		return fmt.Errorf("%q is longer than 63 characters", s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return fmt.Errorf("%q: replication slot names may contain only lower-case letters, digits and underscores", s)
		}
	}
	return nil
}

func checkAddr(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:9187, or :9187 for all interfaces)", a)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: bad port %q (want 0 to 65535; 0 picks a free port)", a, port)
	}
	return nil
}

// checkDSN parses a connection string without connecting. Its errors never
// repeat the string (it may hold a password).
func checkDSN(dsn string) error {
	if _, err := pgconn.ParseConfig(dsn); err != nil {
		return errors.New("cannot parse the connection string (want postgres://user:password@host:5432/dbname or \"host=… user=… dbname=…\")")
	}
	return nil
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
		v := format(c, k)
		if k.name == KeyDSN && v != "" {
			v = DescribeDSN(v)
		}
		out = append(out, fmt.Sprintf("%s=%s (%s)", k.name, v, c.Sources[k.name]))
	}
	return out
}
