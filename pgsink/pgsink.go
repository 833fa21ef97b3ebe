// Package pgsink delivers the audit trail to a table in a PostgreSQL audit
// database (an outbox.Sink): created and migrated by cdcaudit (versioned
// migrations recorded in cdcaudit_schema_migrations), partitioned by month
// on commit_time, one column per member of the event (key, before, after
// … as jsonb) and the record exactly as exported (record, text: its hash
// covers it byte for byte, so Verify recomputes the chain from the table).
// Batches are copied into the table; one that holds rows already there
// (delivered again: at least once) is copied into a temporary staging
// table and inserted with ON CONFLICT (source, id, commit_time) DO NOTHING,
// so a record delivered twice is stored once. Several instances share a
// table: each row carries its store's source (the source column, of chain
// records too), and each source's rows are a chain of their own.
package pgsink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcaudit/cdcaudit/outbox"
)

// DefaultTable is the audit table's default name.
const DefaultTable = "cdcaudit_events"

// DefaultBatch is how many records one delivery writes by default.
const DefaultBatch = 1000

// ValidateBatch checks a batch size.
func ValidateBatch(n int) error {
	if n < 1 || n > 100000 {
		return fmt.Errorf("%d is out of range (1 to 100000)", n)
	}
	return nil
}

// MigrationsTable records the migrations applied, per audit table.
const MigrationsTable = "cdcaudit_schema_migrations"

var tableRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,40}$`)

// CheckTable checks an audit table name: lower case letters, digits and
// underscores, at most 41 bytes (its partitions add _pYYYYMM).
func CheckTable(name string) error {
	if !tableRE.MatchString(name) {
		return fmt.Errorf("pgsink: table %q: want lower-case letters, digits and _ (at most 41, not starting with a digit)", name)
	}
	return nil
}

// Sink is the PostgreSQL audit database sink. Use it from one goroutine
// (the outbox runner).
type Sink struct {
	dsn    string
	table  string
	source string // the store's: every row's source column
	conn   *pgx.Conn
	parts  map[string]bool // partitions known to exist (this connection)
}

// New returns the sink of the table (DefaultTable when "") in the database
// of dsn, for the records of the store of source (its name: config key
// source). It connects on its first delivery (the audit database may be
// down when cdcaudit starts).
func New(dsn, table, source string) (*Sink, error) {
	if table == "" {
		table = DefaultTable
	}
	if err := CheckTable(table); err != nil {
		return nil, err
	}
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return nil, errors.New("pgsink: the connection string does not parse") // never echo it: it may hold a password
	}
	if source == "" {
		return nil, errors.New("pgsink: no source: the rows of several instances would be told apart by nothing")
	}
	return &Sink{dsn: dsn, table: table, source: source}, nil
}

// Name is the sink's name in its cursor, logs and metrics.
func (s *Sink) Name() string { return "postgres" }

// Close closes the connection.
func (s *Sink) Close() {
	if s.conn != nil {
		s.conn.Close(context.Background())
		s.conn = nil
	}
}

func (s *Sink) connect(ctx context.Context) (*pgx.Conn, error) {
	if s.conn != nil && !s.conn.IsClosed() {
		return s.conn, nil
	}
	s.Close()
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		// pgconn's errors name the host, user and database, never the password.
		return nil, fmt.Errorf("pgsink: connect: %w", err)
	}
	if err := Migrate(ctx, conn, s.table, s.source); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	q := `CREATE TEMP TABLE IF NOT EXISTS cdcaudit_staging (LIKE ` + ident(s.table) + `) ON COMMIT DELETE ROWS`
	if _, err := conn.Exec(ctx, q); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("pgsink: staging table: %w", err)
	}
	s.conn, s.parts = conn, map[string]bool{}
	return conn, nil
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// columns of the audit table, in COPY order.
var columns = []string{"source", "id", "commit_time", "op", "lsn", "commit_lsn", "xid", "database", "schema_name", "table_name",
	"model", "key", "before", "before_source", "after", "changed", "unchanged_toast", "redacted", "actor",
	"user_id", "login", "session_id", "flags", "prev_hash", "hash", "record"}

// row turns a record of source into the values of columns.
func row(source string, r outbox.Record) ([]any, error) {
	m, err := members(r.JSON)
	if err != nil {
		return nil, fmt.Errorf("pgsink: record %s: %w", r.ID, err)
	}
	str := func(k string) any {
		v, ok := m[k]
		if !ok || string(v) == "null" {
			return nil
		}
		if n := len(v); n >= 2 && v[0] == '"' && v[n-1] == '"' && bytes.IndexByte(v, '\\') < 0 && utf8.Valid(v) {
			return string(v[1 : n-1]) // no escape: the text as it is
		}
		var s string
		if json.Unmarshal(v, &s) != nil {
			return string(v)
		}
		return s
	}
	js := func(k string) any {
		v, ok := m[k]
		if !ok || string(v) == "null" {
			return nil
		}
		return jsonbText(v)
	}
	num := func(k string) any {
		v, ok := m[k]
		if !ok || string(v) == "null" {
			return nil
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return nil
		}
		return n
	}
	var actor struct {
		UserID    *int64  `json:"user_id"`
		Login     *string `json:"login"`
		SessionID *string `json:"session_id"`
	}
	if a, ok := m["actor"]; ok && string(a) != "null" {
		_ = json.Unmarshal(a, &actor)
	}
	op := str("op")
	if op == nil {
		return nil, fmt.Errorf("pgsink: record %s has no op", r.ID)
	}
	return []any{
		source, r.ID, r.CommitTime, op, str("lsn"), str("commit_lsn"), num("xid"), str("database"), str("schema"), str("table"),
		str("model"), js("key"), js("before"), str("before_source"), js("after"), js("changed"), js("unchanged_toast"),
		js("redacted"), js("actor"), actor.UserID, actor.Login, actor.SessionID, js("flags"),
		str("prev_hash"), str("hash"), string(r.JSON),
	}, nil
}

// jsonbText is a member's JSON as jsonb takes it: PostgreSQL's json type
// holds a \u0000 escape (a json column of the ERP's may have one), jsonb
// refuses it, so it becomes \ufffd in the jsonb columns; the record column
// keeps it as it is.
func jsonbText(v []byte) string {
	if !bytes.Contains(v, []byte(`\u0000`)) {
		return string(v)
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] != '\\' || i+1 >= len(v) {
			out = append(out, v[i])
			continue
		}
		// An escape: \u0000 is replaced, any other is copied whole (so an
		// escaped backslash never starts one).
		if bytes.HasPrefix(v[i:], []byte(`\u0000`)) {
			out = append(out, `\ufffd`...)
			i += 5
			continue
		}
		out = append(out, v[i], v[i+1])
		i++
	}
	return string(out)
}

// Deliver stores a batch in one transaction: COPY into the audit table or,
// when the table holds some of it already, COPY into the staging table,
// then INSERT … ON CONFLICT DO NOTHING. It returns nil once the
// transaction committed.
func (s *Sink) Deliver(ctx context.Context, batch []outbox.Record) (err error) {
	if len(batch) == 0 {
		return nil
	}
	months := map[time.Time]bool{}
	for _, r := range batch {
		t := r.CommitTime.UTC()
		months[time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)] = true
	}
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.Close() // a fresh connection next time: no half-done state
		}
	}()
	for m := range months {
		if err := s.partition(ctx, conn, m); err != nil {
			return err
		}
	}
	// A batch delivered for the first time is copied straight into the
	// table: half the server's work of going through the staging table.
	// One the table already holds some of (delivered again after a
	// failure) breaks the primary key: then it goes the idempotent way.
	copied, err := s.copyInto(ctx, conn, s.table, rowsOf(s.source, batch))
	if err != nil {
		return err
	}
	if copied {
		return nil
	}
	return s.insertNew(ctx, conn, rowsOf(s.source, batch))
}

// rowsOf gives COPY the batch's rows as it asks for them: pgx encodes them
// while the server stores the ones it has, so turning records into rows
// overlaps with the server's work.
func rowsOf(source string, batch []outbox.Record) pgx.CopyFromSource {
	i := 0
	return pgx.CopyFromFunc(func() ([]any, error) {
		if i == len(batch) {
			return nil, nil
		}
		i++
		return row(source, batch[i-1])
	})
}

// uniqueViolation is PostgreSQL's SQLSTATE unique_violation.
const uniqueViolation = "23505"

// copyInto copies rows into table and commits; copied false (and no
// error) when some row is already there (a unique violation).
func (s *Sink) copyInto(ctx context.Context, conn *pgx.Conn, table string, rows pgx.CopyFromSource) (copied bool, err error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("pgsink: begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{table}, columns, rows); err != nil {
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == uniqueViolation {
			return false, nil
		}
		return false, fmt.Errorf("pgsink: copy: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("pgsink: commit: %w", err)
	}
	return true, nil
}

// insertNew stores the rows the table does not hold yet, in one
// transaction: COPY into the staging table, then INSERT … ON CONFLICT DO
// NOTHING.
func (s *Sink) insertNew(ctx context.Context, conn *pgx.Conn, rows pgx.CopyFromSource) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgsink: begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"cdcaudit_staging"}, columns, rows); err != nil {
		return fmt.Errorf("pgsink: copy: %w", err)
	}
	cols := strings.Join(columns, ", ")
	q := `INSERT INTO ` + ident(s.table) + ` (` + cols + `) SELECT ` + cols + ` FROM cdcaudit_staging ORDER BY id ON CONFLICT (source, id, commit_time) DO NOTHING`
	if _, err := tx.Exec(ctx, q); err != nil {
		return fmt.Errorf("pgsink: insert: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgsink: commit: %w", err)
	}
	return nil
}

// PartitionName is the partition of the month that begins at m.
func PartitionName(table string, m time.Time) string {
	return fmt.Sprintf("%s_p%04d%02d", table, m.Year(), int(m.Month()))
}

// partition creates the month's partition when missing. Several instances
// (or the sources of one daemon) writing into one table create it under an
// advisory lock: IF NOT EXISTS alone still lets two concurrent creations
// collide, which would count a delivery error at every month's start.
func (s *Sink) partition(ctx context.Context, conn *pgx.Conn, m time.Time) error {
	name := PartitionName(s.table, m)
	if s.parts[name] {
		return nil
	}
	q := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s')`,
		ident(name), ident(s.table), m.Format(time.RFC3339), m.AddDate(0, 1, 0).Format(time.RFC3339))
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('cdcaudit partition ' || $1))`, name); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, q)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgsink: partition %s: %w", name, err)
	}
	s.parts[name] = true
	return nil
}
