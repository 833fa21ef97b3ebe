// Package replication attaches cdcaudit to PostgreSQL as a logical
// replication client: it prepares the publication and the pgoutput slot,
// checks the server's configuration, and runs the stream loop (keepalives,
// standby status, idle-slot advance, reconnect with backoff). It knows
// nothing of audit events: raw pgoutput messages go to a Consumer, and the
// Consumer's durable position is what the slot is confirmed up to.
package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Config says where to stream from and what.
type Config struct {
	// DSN is an ordinary libpq URL or keyword/value connection string;
	// replication=database is added for the stream connection.
	DSN string
	// Slot and Publication default to DefaultSlot and DefaultPublication. Publication names two
	// publications: Publication itself (FOR ALL TABLES, inserts and
	// truncates) and Publication+"_changes" (updates and deletes of the
	// tables with a usable replica identity); see publication.go.
	Slot, Publication string
	// Tables and Exclude are schema-qualified globs ("public.sale_*",
	// "*.res_users"); empty Tables means all tables. They filter the stream,
	// so a table created later whose name matches is captured from its first
	// insert. A partition is in scope when its own name or its partitioned
	// root's matches; unlogged tables never reach the WAL.
	Tables, Exclude []string
	// Server, when its SystemID is set, is the server and database every
	// connection must reach (the one the store belongs to): Prepare and
	// every stream (re)connection refuse another one.
	Server Identity
	// CatalogInterval is how often Stream polls the catalog to keep the
	// changes publication's table list current (tables created, replica
	// identities changed). Default 5s.
	CatalogInterval time.Duration
	// OnCoverage, when set, is told when the capture of a table's
	// operations begins or ends (from Prepare and from Stream's keeper
	// goroutine).
	OnCoverage func(Coverage)
	// StatusInterval is the longest time between standby status updates,
	// whether or not the server asks (it never asks when
	// wal_sender_timeout = 0). Default DefaultStatusInterval.
	StatusInterval time.Duration
	// AcceptGap starts even though the slot is ahead of, or missing behind,
	// the stored checkpoint (events in between are lost for good).
	AcceptGap bool
	// ActiveSlotWait is how long Stream keeps retrying while another
	// process holds the slot before it gives up. Default 1 minute.
	ActiveSlotWait time.Duration
	// MonitorInterval is how often Stream checks the slot's wal_status and
	// retained WAL. Default 10s.
	MonitorInterval time.Duration
	Logger          *slog.Logger
	Observer        Observer // may be nil
}

// Observer receives metrics; implemented elsewhere. Stream calls it from
// two goroutines (the stream and the slot monitor): it must be safe for
// concurrent use.
type Observer interface {
	ServerWALEnd(lsn uint64)
	Confirmed(lsn uint64)
	Reconnected(reason error)
	SkippedMessage(kind byte)
	SlotStatus(walStatus string, retainedBytes int64, serverLSN uint64)
}

type nopObserver struct{}

func (nopObserver) ServerWALEnd(uint64)              {}
func (nopObserver) Confirmed(uint64)                 {}
func (nopObserver) Reconnected(error)                {}
func (nopObserver) SkippedMessage(byte)              {}
func (nopObserver) SlotStatus(string, int64, uint64) {}

// server names the server in log records, without the password.
func (c *Config) server() slog.Attr { return slog.String("server", RedactDSN(c.DSN)) }

// filtered: the publication is FOR TABLE, built from Tables and Exclude.
func (c *Config) filtered() bool { return len(c.Tables) > 0 || len(c.Exclude) > 0 }

func (c *Config) pubIdent() string              { return pgx.Identifier{c.Publication}.Sanitize() }
func (c *Config) changesPub() string            { return c.Publication + changesSuffix }
func (c *Config) changesIdent() string          { return pgx.Identifier{c.changesPub()}.Sanitize() }
func (c *Config) matches(qualified string) bool { return matchTable(c.Tables, c.Exclude, qualified) }

// publicationNames is the pgoutput publication_names option for both
// publications, or for the insert publication alone.
func (c *Config) publicationNames(insertsOnly bool) string {
	if insertsOnly {
		return c.pubIdent()
	}
	return c.pubIdent() + "," + c.changesIdent()
}

// checkServer refuses a server or database other than cfg.Server.
func (c *Config) checkServer(got Identity) error {
	want := c.Server
	if want.SystemID == "" || (got.SystemID == want.SystemID && got.Database == want.Database) {
		return nil
	}
	return fatalf(nil, "%s is database %q of PostgreSQL system %s, but this store belongs to database %q of system %s: a different server or database is not this store's history (nothing was streamed from it); point --dsn at the store's database, or use another --data-dir",
		RedactDSN(c.DSN), got.Database, got.SystemID, want.Database, want.SystemID)
}

// Defaults of the settings this package owns (internal/config shows them).
const (
	DefaultSlot           = "cdcaudit"
	DefaultPublication    = "cdcaudit"
	DefaultStatusInterval = time.Second
)

// ValidateDSN parses a connection string without connecting. Its error
// never repeats the string (it may hold a password).
func ValidateDSN(dsn string) error {
	if _, err := pgconn.ParseConfig(dsn); err != nil {
		return errors.New("cannot parse the connection string (want postgres://user:password@host:5432/dbname or \"host=… user=… dbname=…\")")
	}
	return nil
}

// ValidateSlotName accepts what PostgreSQL accepts as a slot name. Slot
// names go into replication commands unquoted, so anything else is refused
// up front.
func ValidateSlotName(s string) error {
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

// ValidatePublicationName accepts a name that leaves room for the second
// publication's suffix within PostgreSQL's 63 bytes.
func ValidatePublicationName(s string) error {
	if s == "" {
		return errors.New("empty name")
	}
	if len(s)+len(changesSuffix) > 63 || strings.ContainsRune(s, 0) {
		return fmt.Errorf("%q is not a valid name (at most %d bytes: %q is added for the second publication)", s, 63-len(changesSuffix), changesSuffix)
	}
	return nil
}

// ValidateTableGlob accepts a schema-qualified glob, "schema.table", where
// either part may use path.Match syntax (*, ?, [a-z]): the form of Tables,
// Exclude and the tables a snapshot copies.
func ValidateTableGlob(g string) error {
	schema, table, ok := strings.Cut(g, ".")
	if !ok || schema == "" || table == "" {
		return fmt.Errorf("%q is not a schema-qualified table glob (want e.g. public.sale_order, public.sale_* or *.res_partner)", g)
	}
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("%q: malformed glob", g)
	}
	return nil
}

// ValidateStatusInterval accepts 10ms to 10m: status updates must come
// well within the server's wal_sender_timeout.
func ValidateStatusInterval(d time.Duration) error {
	if d < 10*time.Millisecond || d > 10*time.Minute {
		return fmt.Errorf("%s is out of range (want 10ms to 10m; keep it well below the server's wal_sender_timeout)", d)
	}
	return nil
}

// WithDefaults returns cfg as Prepare, Stream and Check see it: defaults
// filled in (slot and publication names, intervals, logger, observer), or
// an error naming the bad field. The caller's Config is never modified.
func (c Config) WithDefaults() (Config, error) { return c.normalize() }

// normalize returns a copy with defaults filled in, or an error naming the
// bad field.
func (c Config) normalize() (Config, error) {
	if c.DSN == "" {
		return c, fmt.Errorf("replication: DSN is empty")
	}
	if c.Slot == "" {
		c.Slot = DefaultSlot
	}
	if c.Publication == "" {
		c.Publication = DefaultPublication
	}
	if err := ValidateSlotName(c.Slot); err != nil {
		return c, fmt.Errorf("replication: slot: %w", err)
	}
	if err := ValidatePublicationName(c.Publication); err != nil {
		return c, fmt.Errorf("replication: publication: %w", err)
	}
	for _, list := range [][]string{c.Tables, c.Exclude} {
		for _, p := range list {
			if err := ValidateTableGlob(p); err != nil {
				return c, fmt.Errorf("replication: tables: %w", err)
			}
		}
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = DefaultStatusInterval
	} else if err := ValidateStatusInterval(c.StatusInterval); err != nil {
		return c, fmt.Errorf("replication: status interval: %w", err)
	}
	if c.ActiveSlotWait <= 0 {
		c.ActiveSlotWait = time.Minute
	}
	if c.CatalogInterval <= 0 {
		c.CatalogInterval = 5 * time.Second
	}
	if c.MonitorInterval <= 0 {
		c.MonitorInterval = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	return c, nil
}

// matchTable reports whether "schema.table" is in scope: matched by an
// include glob (or there are none) and by no exclude glob.
func matchTable(include, exclude []string, qualified string) bool {
	in := len(include) == 0
	for _, p := range include {
		if ok, _ := path.Match(p, qualified); ok {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, p := range exclude {
		if ok, _ := path.Match(p, qualified); ok {
			return false
		}
	}
	return true
}

// RedactDSN returns dsn with any password replaced by "xxxxx", for logs and
// error messages. It handles URLs and keyword/value strings.
func RedactDSN(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			// Unparseable: blank everything between "user:" and "@".
			return urlPassword.ReplaceAllString(dsn, "${1}xxxxx@")
		}
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		for _, k := range []string{"password", "sslpassword"} {
			if q.Has(k) {
				q.Set(k, "xxxxx")
			}
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	return kvPassword.ReplaceAllString(dsn, "${1}xxxxx")
}

var (
	urlPassword = regexp.MustCompile(`(://[^:/@]*:)[^@]*@`)
	kvPassword  = regexp.MustCompile(`(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
)

// connConfig parses dsn; our connections name themselves "cdcaudit" in
// pg_stat_activity unless the DSN says otherwise, so `check` can tell who
// holds a slot.
func connConfig(dsn string) (*pgx.ConnConfig, error) {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err // pgconn already redacts the password in parse errors
	}
	if _, ok := cc.RuntimeParams["application_name"]; !ok {
		cc.RuntimeParams["application_name"] = "cdcaudit"
	}
	return cc, nil
}

// connectSQL opens an ordinary connection.
func connectSQL(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cc, err := connConfig(dsn)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	return pgx.ConnectConfig(ctx, cc)
}

// connectReplication opens a logical replication (walsender) connection.
func connectReplication(ctx context.Context, dsn string) (*pgconn.PgConn, error) {
	cc, err := connConfig(dsn)
	if err != nil {
		return nil, err
	}
	cc.RuntimeParams["replication"] = "database"
	dial := cc.Config.DialFunc
	cc.Config.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &coalescingConn{Conn: c}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	return pgconn.ConnectConfig(ctx, &cc.Config)
}

// closeQuietly closes a connection without hanging on a dead peer.
func closeQuietly(conn interface{ Close(context.Context) error }) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn.Close(ctx)
}

// quoteIdent quotes an identifier only when it needs it, so fixes shown to
// people read like what they would type.
func quoteIdent(s string) string {
	if simpleIdent.MatchString(s) && !reserved[s] {
		return s
	}
	return pgx.Identifier{s}.Sanitize()
}

func qualified(schema, table string) string { return quoteIdent(schema) + "." + quoteIdent(table) }

var simpleIdent = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)

// reserved are the SQL key words most likely to be used as table or column
// names; they must be quoted.
var reserved = map[string]bool{
	"all": true, "analyse": true, "analyze": true, "and": true, "any": true, "array": true, "as": true, "asc": true,
	"both": true, "case": true, "cast": true, "check": true, "collate": true, "column": true, "constraint": true,
	"create": true, "default": true, "desc": true, "distinct": true, "do": true, "else": true, "end": true,
	"except": true, "false": true, "for": true, "foreign": true, "from": true, "grant": true, "group": true,
	"having": true, "in": true, "into": true, "is": true, "join": true, "limit": true, "not": true, "null": true,
	"offset": true, "on": true, "only": true, "or": true, "order": true, "primary": true, "references": true,
	"select": true, "table": true, "then": true, "to": true, "true": true, "union": true, "unique": true,
	"user": true, "using": true, "when": true, "where": true, "window": true, "with": true,
}
