package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"

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
	WALStatus      string // reserved, extended, unreserved, lost
	RetainedBytes  int64  // WAL kept for the slot: current position − restart_lsn
	ServerLSN      uint64 // the server's current WAL position
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
	var confirmed, current string
	walStatus := "coalesce(wal_status, '')"
	if serverMajor(conn) < 13 {
		walStatus = "''" // wal_status is new in PostgreSQL 13
	}
	err := conn.QueryRow(ctx, `
		SELECT coalesce(plugin, ''), slot_type, coalesce(database::text, ''),
		       coalesce(confirmed_flush_lsn::text, '0/0'), active, coalesce(active_pid, 0),
		       `+walStatus+`, coalesce(pg_wal_lsn_diff(`+currentLSN+`, restart_lsn), 0)::bigint,
		       coalesce((`+currentLSN+`)::text, '0/0')
		FROM pg_replication_slots WHERE slot_name = $1`, slot).
		Scan(&s.Plugin, &s.SlotType, &s.Database, &confirmed, &s.Active, &s.ActivePID, &s.WALStatus, &s.RetainedBytes, &current)
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
	if lsn, err = pglogrepl.ParseLSN(current); err != nil {
		return s, err
	}
	s.ServerLSN = uint64(lsn)
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
		return SlotState{}, classify(ctx, &cfg, err)
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
		return slotLost(nil, cfg.Slot)
	}
	return nil
}

// Prepare runs the fatal preflight checks, checks the server's identity
// against cfg.Server, creates or migrates the publications and creates the
// slot when missing, and compares the stored checkpoint (0 = empty store)
// with the slot. It returns the server's identity and the LSN to stream
// from. Publications it created are dropped again when it fails before the
// slot exists.
func Prepare(ctx context.Context, cfg Config, checkpoint uint64) (Identity, uint64, error) {
	ident, start, _, err := PrepareExport(ctx, cfg, checkpoint, false)
	return ident, start, err
}

// Exported is the snapshot a newly created slot exported: the database as
// of exactly the slot's start. It stays importable (SET TRANSACTION
// SNAPSHOT) until Release, which closes the replication connection that
// made it and is idle since: call Release once it is imported.
type Exported struct {
	Name    string
	release func()
	once    sync.Once
}

// Release lets the exported snapshot go. Safe on nil and more than once.
func (x *Exported) Release() {
	if x != nil {
		x.once.Do(x.release)
	}
}

// PrepareExport is Prepare that, with export set, creates a missing slot
// with EXPORT_SNAPSHOT and returns that snapshot (nil when the slot
// existed, or was created by someone else meanwhile). Streaming may start
// at once: the exporting connection just stays open until Release.
func PrepareExport(ctx context.Context, cfg Config, checkpoint uint64, export bool) (Identity, uint64, *Exported, error) {
	ident, start, exported, err := prepareAll(ctx, cfg, checkpoint, export)
	if err != nil {
		exported.Release()
		exported = nil
	}
	return ident, start, exported, err
}

func prepareAll(ctx context.Context, cfg Config, checkpoint uint64, export bool) (Identity, uint64, *Exported, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return Identity{}, 0, nil, err
	}
	log := cfg.Logger.With(cfg.server(), "slot", cfg.Slot, "publication", cfg.Publication)
	conn, err := connectSQL(ctx, cfg.DSN)
	if err != nil {
		return Identity{}, 0, nil, fmt.Errorf("replication: connect to %s: %w", RedactDSN(cfg.DSN), classify(ctx, &cfg, err))
	}
	defer closeQuietly(conn)

	var walLevel, user string
	var privileged bool
	var server Identity
	if err := conn.QueryRow(ctx, `SELECT current_setting('wal_level'), current_user, `+privilegedSQL+`,
		(SELECT system_identifier::text FROM pg_control_system()), current_database()`).
		Scan(&walLevel, &user, &privileged, &server.SystemID, &server.Database); err != nil {
		return Identity{}, 0, nil, fmt.Errorf("replication: preflight: %w", err)
	}
	// Before anything is created or compared: another server or database is
	// not a gap in this one's history.
	if err := cfg.checkServer(server); err != nil {
		return server, 0, nil, err
	}
	if walLevel != "logical" {
		return Identity{}, 0, nil, fatalf(nil, "wal_level is %q on %s, logical decoding needs logical: ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL", walLevel, RedactDSN(cfg.DSN))
	}
	if !privileged {
		return Identity{}, 0, nil, fatalf(nil, "role %s on %s has no REPLICATION attribute: as a superuser, ALTER ROLE %s WITH REPLICATION", quoteIdent(user), RedactDSN(cfg.DSN), quoteIdent(user))
	}

	// The publications must exist before the slot: pgoutput looks them up
	// with the catalog as of each decoded change.
	created, err := ensurePublications(ctx, conn, &cfg, newKeeper(&cfg))
	var ident Identity
	var start uint64
	var exported *Exported
	slotCreated := false
	if err == nil {
		ident, start, slotCreated, exported, err = prepareSlot(ctx, conn, &cfg, checkpoint, export, log)
	}
	if err != nil && len(created) > 0 && !slotCreated {
		dropPublications(conn, created, log)
	}
	return ident, start, exported, err
}

// prepareSlot creates the slot when missing and compares it with the
// checkpoint; created says whether it made the slot.
func prepareSlot(ctx context.Context, conn *pgx.Conn, cfg *Config, checkpoint uint64, export bool, log *slog.Logger) (ident Identity, start uint64, created bool, exported *Exported, err error) {
	ident, start, created, exported, err = createSlot(ctx, conn, cfg, checkpoint, export, log)
	if err != nil {
		exported.Release()
		exported = nil
	}
	return ident, start, created, exported, err
}

func createSlot(ctx context.Context, conn *pgx.Conn, cfg *Config, checkpoint uint64, export bool, log *slog.Logger) (ident Identity, start uint64, created bool, exported *Exported, err error) {
	rconn, err := connectReplication(ctx, cfg.DSN)
	if err != nil {
		return ident, 0, false, nil, fmt.Errorf("replication: replication connection to %s: %w", RedactDSN(cfg.DSN), classify(ctx, cfg, err))
	}
	// The connection that exported a snapshot keeps it alive: it is handed
	// over, idle, and closed by Release.
	defer func() {
		if exported == nil {
			closeQuietly(rconn)
		}
	}()
	sys, err := pglogrepl.IdentifySystem(ctx, rconn)
	if err != nil {
		return ident, 0, false, nil, fmt.Errorf("replication: IDENTIFY_SYSTEM: %w", classify(ctx, cfg, err))
	}
	ident = Identity{SystemID: sys.SystemID, Timeline: sys.Timeline, Database: sys.DBName, XLogPos: uint64(sys.XLogPos)}
	if err := cfg.checkServer(ident); err != nil {
		return ident, 0, false, nil, err
	}

	slot, err := readSlot(ctx, conn, cfg.Slot)
	if err != nil {
		return ident, 0, false, nil, err
	}
	if !slot.Exists {
		if checkpoint != 0 && !cfg.AcceptGap {
			return ident, 0, false, nil, fatalf(nil, "replication slot %q does not exist, but the store holds events up to %s: changes since then cannot be recovered from this server; restart with --accept-gap to create a new slot and accept the gap", cfg.Slot, lsnString(checkpoint))
		}
		if checkpoint != 0 {
			log.Error("REPLICATION SLOT MISSING: creating a new one because --accept-gap is set; EVENTS AFTER THE CHECKPOINT UNTIL NOW ARE LOST", "checkpoint", lsnString(checkpoint))
		}
		log.Info("creating replication slot (waits for transactions running now to finish)")
		action := "NOEXPORT_SNAPSHOT"
		if export {
			action = "EXPORT_SNAPSHOT"
		}
		res, err := pglogrepl.CreateReplicationSlot(ctx, rconn, cfg.Slot, "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: action})
		var pe *pgconn.PgError
		if err != nil && !(errors.As(err, &pe) && pe.Code == "42710") { // 42710: created meanwhile by someone else
			return ident, 0, false, nil, fmt.Errorf("replication: create slot %q: %w", cfg.Slot, classify(ctx, cfg, err))
		}
		created = err == nil
		if created && export && res.SnapshotName != "" {
			exported = &Exported{Name: res.SnapshotName, release: func() { closeQuietly(rconn) }}
		}
		if slot, err = readSlot(ctx, conn, cfg.Slot); err != nil {
			return ident, 0, created, exported, err
		}
		if !slot.Exists {
			return ident, 0, created, exported, fmt.Errorf("replication: slot %q vanished right after it was created", cfg.Slot)
		}
		log.Info("replication slot created", "confirmed_flush_lsn", lsnString(slot.ConfirmedFlush))
	}
	if err := slot.usable(cfg, ident.Database); err != nil {
		return ident, 0, created, exported, err
	}
	if slot.Active {
		log.Warn("replication slot is in use by another process; streaming will wait for it", "active_pid", slot.ActivePID)
	}

	if checkpoint == 0 {
		return ident, slot.ConfirmedFlush, created, exported, nil
	}
	switch {
	case slot.ConfirmedFlush > checkpoint && !cfg.AcceptGap:
		return ident, 0, created, exported, fatalf(nil, "replication slot %q is confirmed up to %s, past the store's checkpoint %s: the changes in between were confirmed without being stored and are LOST (was the store restored from a backup?); restart with --accept-gap to continue with the gap", cfg.Slot, lsnString(slot.ConfirmedFlush), lsnString(checkpoint))
	case slot.ConfirmedFlush > checkpoint:
		log.Error("REPLICATION SLOT IS AHEAD OF THE CHECKPOINT: continuing because --accept-gap is set; EVENTS IN BETWEEN ARE LOST",
			"checkpoint", lsnString(checkpoint), "confirmed_flush_lsn", lsnString(slot.ConfirmedFlush))
		// Streaming starts there anyway; returning it lets the caller
		// record the gap (checkpoint, confirmed_flush_lsn) in its chain.
		return ident, slot.ConfirmedFlush, created, exported, nil
	case slot.ConfirmedFlush < checkpoint:
		log.Info("replication slot is behind the checkpoint: already stored changes may be sent again; the store ignores duplicates",
			"checkpoint", lsnString(checkpoint), "confirmed_flush_lsn", lsnString(slot.ConfirmedFlush))
	}
	return ident, checkpoint, created, exported, nil
}

// privilegedSQL: may the current role stream? Superuser, REPLICATION, or
// (Amazon RDS) membership of rds_replication.
const privilegedSQL = `(SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user)
	OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'rds_replication' AND pg_has_role(current_user, r.oid, 'member'))`

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
