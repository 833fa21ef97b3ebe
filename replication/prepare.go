package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Identity is what the server says about itself (IDENTIFY_SYSTEM).
type Identity struct {
	SystemID string
	Timeline int32
	Database string
	XLogPos  uint64
}

// SlotState is the slot as pg_replication_slots shows it.
type SlotState struct {
	Exists         bool
	Plugin         string
	ConfirmedFlush uint64
	Active         bool
	ActivePID      int
	WALStatus      string // reserved, extended, unreachable, lost
	RetainedBytes  int64  // WAL kept for the slot: current position − restart_lsn
}

// slotInfo adds what Prepare and Check need to refuse a foreign slot.
type slotInfo struct {
	SlotState
	SlotType string
	Database string
}

// currentLSN is the server's WAL position, on a primary or a standby.
const currentLSN = `CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END`

func readSlot(ctx context.Context, conn *pgx.Conn, slot string) (slotInfo, error) {
	var s slotInfo
	var confirmed string
	walStatus := "coalesce(wal_status, '')"
	if serverMajor(conn) < 13 {
		walStatus = "''" // wal_status is new in PostgreSQL 13
	}
	err := conn.QueryRow(ctx, `
		SELECT coalesce(plugin, ''), slot_type, coalesce(database::text, ''),
		       coalesce(confirmed_flush_lsn::text, '0/0'), active, coalesce(active_pid, 0),
		       `+walStatus+`, coalesce(pg_wal_lsn_diff(`+currentLSN+`, restart_lsn), 0)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, slot).
		Scan(&s.Plugin, &s.SlotType, &s.Database, &confirmed, &s.Active, &s.ActivePID, &s.WALStatus, &s.RetainedBytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read replication slot %q: %w", slot, err)
	}
	lsn, err := pglogrepl.ParseLSN(confirmed)
	if err != nil {
		return s, err
	}
	s.Exists, s.ConfirmedFlush = true, uint64(lsn)
	return s, nil
}

// InspectSlot returns the state of cfg's slot.
func InspectSlot(ctx context.Context, cfg Config) (SlotState, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return SlotState{}, err
	}
	conn, err := connectSQL(ctx, cfg.DSN)
	if err != nil {
		return SlotState{}, classify(&cfg, err)
	}
	defer closeQuietly(conn)
	s, err := readSlot(ctx, conn, cfg.Slot)
	return s.SlotState, err
}

// usable refuses a slot that is not a logical pgoutput slot of this
// database: streaming from it would silently audit something else.
func (s slotInfo) usable(cfg *Config, database string) error {
	switch {
	case s.SlotType != "logical":
		return fatalf(nil, "replication slot %q is a %s slot, not a logical one: choose another slot name", cfg.Slot, s.SlotType)
	case s.Plugin != "pgoutput":
		return fatalf(nil, "replication slot %q uses output plugin %q, not pgoutput: choose another slot name", cfg.Slot, s.Plugin)
	case s.Database != database:
		return fatalf(nil, "replication slot %q belongs to database %q, not %q: choose another slot name", cfg.Slot, s.Database, database)
	case s.WALStatus == "lost":
		return fatalf(nil, "replication slot %q was invalidated (wal_status lost: WAL it needed was removed, see max_slot_wal_keep_size): EVENTS WERE LOST; drop it (SELECT pg_drop_replication_slot('%s')) and restart with AcceptGap", cfg.Slot, cfg.Slot)
	}
	return nil
}

// Prepare runs the fatal preflight checks, creates or updates the
// publication and creates the slot when missing, and compares the stored
// checkpoint (0 = empty store) with the slot. It returns the server's
// identity and the LSN to stream from.
func Prepare(ctx context.Context, cfg Config, checkpoint uint64) (Identity, uint64, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return Identity{}, 0, err
	}
	log := cfg.Logger.With(cfg.server(), "slot", cfg.Slot, "publication", cfg.Publication)
	conn, err := connectSQL(ctx, cfg.DSN)
	if err != nil {
		return Identity{}, 0, fmt.Errorf("replication: connect to %s: %w", RedactDSN(cfg.DSN), classify(&cfg, err))
	}
	defer closeQuietly(conn)

	var walLevel, user string
	var privileged bool
	if err := conn.QueryRow(ctx, `SELECT current_setting('wal_level'), current_user, `+privilegedSQL).Scan(&walLevel, &user, &privileged); err != nil {
		return Identity{}, 0, fmt.Errorf("replication: preflight: %w", err)
	}
	if walLevel != "logical" {
		return Identity{}, 0, fatalf(nil, "wal_level is %q on %s, logical decoding needs logical: ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL", walLevel, RedactDSN(cfg.DSN))
	}
	if !privileged {
		return Identity{}, 0, fatalf(nil, "role %s on %s has no REPLICATION attribute: as a superuser, ALTER ROLE %s WITH REPLICATION", quoteIdent(user), RedactDSN(cfg.DSN), quoteIdent(user))
	}

	// The publication must exist before the slot: pgoutput looks it up
	// with the catalog as of each decoded change.
	if err := ensurePublication(ctx, conn, &cfg); err != nil {
		return Identity{}, 0, err
	}

	rconn, err := connectReplication(ctx, cfg.DSN)
	if err != nil {
		return Identity{}, 0, fmt.Errorf("replication: replication connection to %s: %w", RedactDSN(cfg.DSN), classify(&cfg, err))
	}
	defer closeQuietly(rconn)
	sys, err := pglogrepl.IdentifySystem(ctx, rconn)
	if err != nil {
		return Identity{}, 0, fmt.Errorf("replication: IDENTIFY_SYSTEM: %w", classify(&cfg, err))
	}
	ident := Identity{SystemID: sys.SystemID, Timeline: sys.Timeline, Database: sys.DBName, XLogPos: uint64(sys.XLogPos)}

	slot, err := readSlot(ctx, conn, cfg.Slot)
	if err != nil {
		return ident, 0, err
	}
	if !slot.Exists {
		if checkpoint != 0 && !cfg.AcceptGap {
			return ident, 0, fatalf(nil, "replication slot %q does not exist, but the store holds events up to %s: changes since then cannot be recovered from this server; restart with AcceptGap to create a new slot and accept the gap", cfg.Slot, lsnString(checkpoint))
		}
		if checkpoint != 0 {
			log.Error("REPLICATION SLOT MISSING: creating a new one because AcceptGap is set; EVENTS AFTER THE CHECKPOINT UNTIL NOW ARE LOST", "checkpoint", lsnString(checkpoint))
		}
		log.Info("creating replication slot (waits for transactions running now to finish)")
		_, err := pglogrepl.CreateReplicationSlot(ctx, rconn, cfg.Slot, "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"})
		var pe *pgconn.PgError
		if err != nil && !(errors.As(err, &pe) && pe.Code == "42710") { // 42710: created meanwhile by someone else
			return ident, 0, fmt.Errorf("replication: create slot %q: %w", cfg.Slot, classify(&cfg, err))
		}
		if slot, err = readSlot(ctx, conn, cfg.Slot); err != nil {
			return ident, 0, err
		}
		if !slot.Exists {
			return ident, 0, fmt.Errorf("replication: slot %q vanished right after it was created", cfg.Slot)
		}
		log.Info("replication slot created", "confirmed_flush_lsn", lsnString(slot.ConfirmedFlush))
	}
	if err := slot.usable(&cfg, ident.Database); err != nil {
		return ident, 0, err
	}
	if slot.Active {
		log.Warn("replication slot is in use by another process; streaming will wait for it", "active_pid", slot.ActivePID)
	}

	if checkpoint == 0 {
		return ident, slot.ConfirmedFlush, nil
	}
	switch {
	case slot.ConfirmedFlush > checkpoint && !cfg.AcceptGap:
		return ident, 0, fatalf(nil, "replication slot %q is confirmed up to %s, past the store's checkpoint %s: the changes in between were confirmed without being stored and are LOST (was the store restored from a backup?); restart with AcceptGap to continue with the gap", cfg.Slot, lsnString(slot.ConfirmedFlush), lsnString(checkpoint))
	case slot.ConfirmedFlush > checkpoint:
		log.Error("REPLICATION SLOT IS AHEAD OF THE CHECKPOINT: continuing because AcceptGap is set; EVENTS IN BETWEEN ARE LOST",
			"checkpoint", lsnString(checkpoint), "confirmed_flush_lsn", lsnString(slot.ConfirmedFlush))
		// Streaming starts there anyway; returning it lets the caller
		// record the gap (checkpoint, confirmed_flush_lsn) in its chain.
		return ident, slot.ConfirmedFlush, nil
	case slot.ConfirmedFlush < checkpoint:
		log.Info("replication slot is behind the checkpoint: already stored changes may be sent again; the store ignores duplicates",
			"checkpoint", lsnString(checkpoint), "confirmed_flush_lsn", lsnString(slot.ConfirmedFlush))
	}
	return ident, checkpoint, nil
}

// privilegedSQL: may the current role stream? Superuser, REPLICATION, or
// (Amazon RDS) membership of rds_replication.
const privilegedSQL = `(SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user)
	OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'rds_replication' AND pg_has_role(current_user, r.oid, 'member'))`

// publication is pg_publication's row for cfg.Publication.
type publication struct {
	exists, allTables                bool
	insert, update, delete, truncate bool
}

func readPublication(ctx context.Context, conn *pgx.Conn, name string) (publication, error) {
	p := publication{exists: true}
	err := conn.QueryRow(ctx, `SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = $1`, name).
		Scan(&p.allTables, &p.insert, &p.update, &p.delete, &p.truncate)
	if errors.Is(err, pgx.ErrNoRows) {
		return publication{}, nil
	}
	if err != nil {
		return p, fmt.Errorf("read publication %q: %w", name, err)
	}
	return p, nil
}

// missingOps lists the operations the publication does not publish.
func (p publication) missingOps() []string {
	var m []string
	for _, op := range []struct {
		on   bool
		name string
	}{{p.insert, "insert"}, {p.update, "update"}, {p.delete, "delete"}, {p.truncate, "truncate"}} {
		if !op.on {
			m = append(m, op.name)
		}
	}
	return m
}

func ensurePublication(ctx context.Context, conn *pgx.Conn, cfg *Config) error {
	log := cfg.Logger.With(cfg.server(), "publication", cfg.Publication)
	pub, err := readPublication(ctx, conn, cfg.Publication)
	if err != nil {
		return fmt.Errorf("replication: %w", err)
	}
	if pub.exists {
		if m := pub.missingOps(); len(m) > 0 {
			log.Warn("the publication does not publish every operation: these changes are NOT audited", "missing", strings.Join(m, ","),
				"fix", fmt.Sprintf("ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate')", cfg.pubIdent()))
		}
	}
	if !cfg.filtered() {
		switch {
		case !pub.exists:
			if _, err := conn.Exec(ctx, "CREATE PUBLICATION "+cfg.pubIdent()+" FOR ALL TABLES"); err != nil {
				return publicationError(cfg, err, "CREATE PUBLICATION "+cfg.pubIdent()+" FOR ALL TABLES")
			}
			log.Info("publication created FOR ALL TABLES")
		case !pub.allTables:
			log.Warn("the publication is not FOR ALL TABLES: only its own tables are audited")
		}
		return nil
	}
	if pub.allTables {
		return fatalf(nil, "publication %q is FOR ALL TABLES, but table filters (Tables/Exclude) are configured: drop it (DROP PUBLICATION %s) so cdcaudit creates it FOR TABLE, or remove the filters", cfg.Publication, cfg.pubIdent())
	}
	rels, err := listTables(ctx, conn)
	if err != nil {
		return fmt.Errorf("replication: list tables: %w", err)
	}
	var want []string
	for _, r := range rels {
		if r.publishable() && cfg.matches(r.schema+"."+r.name) {
			want = append(want, qualified(r.schema, r.name))
		}
	}
	if len(want) == 0 {
		return fatalf(nil, "no table matches Tables %q minus Exclude %q: nothing would be audited", cfg.Tables, cfg.Exclude)
	}
	list := strings.Join(want, ", ")
	if !pub.exists {
		sql := "CREATE PUBLICATION " + cfg.pubIdent() + " FOR TABLE " + list
		if _, err := conn.Exec(ctx, sql); err != nil {
			return publicationError(cfg, err, sql)
		}
		log.Info("publication created", "tables", len(want))
		return nil
	}
	have, err := publicationTables(ctx, conn, cfg.Publication)
	if err != nil {
		return fmt.Errorf("replication: %w", err)
	}
	if slices.Equal(have, want) {
		return nil
	}
	// Only when the list changed: ALTER PUBLICATION invalidates every
	// walsender's relation cache.
	sql := "ALTER PUBLICATION " + cfg.pubIdent() + " SET TABLE " + list
	if _, err := conn.Exec(ctx, sql); err != nil {
		return publicationError(cfg, err, sql)
	}
	log.Info("publication table list updated", "tables", len(want), "before", len(have))
	return nil
}

func publicationError(cfg *Config, err error, sql string) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		return fatalf(err, "cannot create or change publication %q with this role: run as a superuser (FOR ALL TABLES) or as the tables' owner: %s", cfg.Publication, sql)
	}
	return fmt.Errorf("replication: %s: %w", firstWords(sql, 4), err)
}

func firstWords(s string, n int) string {
	f := strings.Fields(s)
	if len(f) > n {
		f = f[:n]
	}
	return strings.Join(f, " ")
}

// publicationTables is the publication's explicit table list, quoted and
// sorted like listTables (pg_publication_tables would expand partitioned
// tables into their partitions).
func publicationTables(ctx context.Context, conn *pgx.Conn, pub string) ([]string, error) {
	rows, err := conn.Query(ctx, `
		SELECT n.nspname, c.relname FROM pg_publication_rel pr
		JOIN pg_publication p ON p.oid = pr.prpubid
		JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE p.pubname = $1 ORDER BY 1, 2`, pub)
	if err != nil {
		return nil, fmt.Errorf("read tables of publication %q: %w", pub, err)
	}
	var out []string
	var schema, name string
	_, err = pgx.ForEachRow(rows, []any{&schema, &name}, func() error {
		out = append(out, qualified(schema, name))
		return nil
	})
	slices.Sort(out) // the order listTables uses
	return out, err
}

// relation is a user table as listTables sees it.
type relation struct {
	oid                  uint32
	schema, name         string
	kind                 byte // r = table, p = partitioned table
	persistence          byte // p = permanent, u = unlogged
	replident            byte // d = default, n = nothing, f = full, i = index
	partition            bool
	rootSchema, rootName string // the top of its partition tree (itself when none)
	hasPK                bool
}

// publishable: may be named in a publication. Partitions are covered by
// their partitioned root, unlogged tables never reach the WAL.
func (r relation) publishable() bool { return !r.partition && r.persistence == 'p' }

// listTables lists user tables and partitioned tables ordered by schema
// and name.
func listTables(ctx context.Context, conn *pgx.Conn) ([]relation, error) {
	rows, err := conn.Query(ctx, `
		SELECT c.oid, n.nspname, c.relname, c.relkind::text, c.relpersistence::text, c.relreplident::text, c.relispartition,
		       rn.nspname, r.relname,
		       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_class r ON r.oid = coalesce(pg_partition_root(c.oid), c.oid)
		JOIN pg_namespace rn ON rn.oid = r.relnamespace
		WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
		  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
		ORDER BY 2, 3`)
	if err != nil {
		return nil, err
	}
	var out []relation
	var r relation
	var kind, persistence, replident string
	_, err = pgx.ForEachRow(rows, []any{&r.oid, &r.schema, &r.name, &kind, &persistence, &replident, &r.partition, &r.rootSchema, &r.rootName, &r.hasPK}, func() error {
		r.kind, r.persistence, r.replident = kind[0], persistence[0], replident[0]
		out = append(out, r)
		return nil
	})
	// The sort above is by the server's collation; ours must match what
	// publicationTables returns, so sort by the quoted names we compare.
	slices.SortStableFunc(out, func(a, b relation) int {
		return strings.Compare(qualified(a.schema, a.name), qualified(b.schema, b.name))
	})
	return out, err
}

func lsnString(lsn uint64) string { return pglogrepl.LSN(lsn).String() }

// serverMajor is the server's major version (15 for "15.8 (Debian …)").
func serverMajor(conn *pgx.Conn) int {
	v := conn.PgConn().ParameterStatus("server_version")
	if i := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		v = v[:i]
	}
	n, _ := strconv.Atoi(v)
	return n
}

// holder is the process that holds a slot.
type holder struct {
	pid                      int
	app, user, client, since string
}

func (h holder) String() string {
	if h.pid == 0 {
		return "no process holds it now"
	}
	return fmt.Sprintf("PID %d, application_name %q, user %q, from %s, connected since %s", h.pid, h.app, h.user, h.client, h.since)
}

// holderOf finds the process holding slot (pid 0 when none).
func holderOf(ctx context.Context, conn *pgx.Conn, slot string) (holder, error) {
	var h holder
	err := conn.QueryRow(ctx, `
		SELECT s.active_pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''),
		       coalesce(host(a.client_addr), 'local socket'), coalesce(to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'), '')
		FROM pg_replication_slots s LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid
		WHERE s.slot_name = $1 AND s.active_pid IS NOT NULL`, slot).Scan(&h.pid, &h.app, &h.user, &h.client, &h.since)
	if errors.Is(err, pgx.ErrNoRows) {
		return holder{}, nil
	}
	return h, err
}
