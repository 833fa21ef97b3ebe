package replication

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrSkippable, wrapped in an error returned by Consumer.Handle, marks a
// message that could not be used but must not stop the stream (unknown or
// unexpected pgoutput message types, e.g. PostgreSQL 18's stray
// STREAM_ABORT on protocol 1). It is logged and counted.
var ErrSkippable = errors.New("replication: skippable message")

// fatalError is an error that retrying cannot cure: the configuration or
// the server must be changed first.
type fatalError struct {
	msg string
	err error
}

func (e *fatalError) Error() string {
	if e.err == nil {
		return e.msg
	}
	return e.msg + ": " + e.err.Error()
}

func (e *fatalError) Unwrap() error { return e.err }

func fatalf(err error, format string, args ...any) error {
	return &fatalError{msg: "replication: " + fmt.Sprintf(format, args...), err: err}
}

// IsFatal reports whether err means retrying is pointless until someone
// changes the server or the configuration: missing slot, missing privilege,
// wal_level, an invalidated slot, a slot held elsewhere for too long, or a
// gap between the store and the slot.
func IsFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}

// errSlotBusy is a 55006: another process streams from our slot.
type errSlotBusy struct{ err error }

func (e *errSlotBusy) Error() string { return e.err.Error() }
func (e *errSlotBusy) Unwrap() error { return e.err }

// classify turns server errors that no retry can fix into fatal errors with
// a message that says what to do; everything else (a broken connection, a
// shutdown, too many connections) is returned as is, to be retried. It goes
// by SQLSTATE, and where one code has several causes, by the catalog — never
// by the server's message text, which lc_messages translates.
func classify(ctx context.Context, cfg *Config, err error) error {
	var pe *pgconn.PgError
	if err == nil || IsFatal(err) || !errors.As(err, &pe) {
		return err
	}
	user := "the role"
	if cc, perr := pgconn.ParseConfig(cfg.DSN); perr == nil {
		user = quoteIdent(cc.User)
	}
	switch pe.Code {
	case "42704": // undefined_object: the slot, or (while decoding) a publication
		facts := readFacts(ctx, cfg)
		if facts.known && facts.slot.Exists {
			// pgoutput reads the catalog as of each change: a publication
			// dropped and recreated is missing for the WAL in between.
			return fatalf(err, "a publication (%s or %s) did not exist when the changes now being decoded were written (was it dropped and recreated?): the slot cannot get past them; drop the slot (SELECT pg_drop_replication_slot('%s')) and restart with --accept-gap — changes in between are lost", cfg.Publication, cfg.changesPub(), cfg.Slot)
		}
		return fatalf(err, "replication slot %q does not exist (it was dropped, or the database was restored): changes since the last checkpoint cannot be recovered from this server; restart cdcaudit with --accept-gap to create a new slot and accept the gap", cfg.Slot)
	case "42501": // insufficient_privilege
		return fatalf(err, "insufficient privilege on %s: the role needs the REPLICATION attribute (as a superuser: ALTER ROLE %s WITH REPLICATION)", RedactDSN(cfg.DSN), user)
	case "28000", "28P01": // invalid_authorization_specification, invalid_password
		return fatalf(err, "authentication to %s failed: check the user and password, and that pg_hba.conf allows this client", RedactDSN(cfg.DSN))
	case "3D000": // invalid_catalog_name
		return fatalf(err, "database does not exist on %s", RedactDSN(cfg.DSN))
	case "55006": // object_in_use
		return &errSlotBusy{err: err}
	case "55000": // object_not_in_prerequisite_state
		facts := readFacts(ctx, cfg)
		switch {
		case facts.known && facts.walLevel != "logical":
			return fatalf(err, "logical decoding is not enabled (wal_level is %s): set wal_level = logical and restart PostgreSQL", facts.walLevel)
		case facts.known && (facts.slot.WALStatus == "lost" || facts.invalidated):
			return slotLost(err, cfg.Slot)
		}
		return fatalf(err, "replication slot %q cannot be used", cfg.Slot)
	}
	return err
}

// facts is what classify reads from the catalog; known is false when it
// could not be read.
type facts struct {
	known       bool
	walLevel    string
	slot        slotInfo
	invalidated bool // PostgreSQL 16+: pg_replication_slots.conflicting
}

func readFacts(ctx context.Context, cfg *Config) facts {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commandTimeout)
	defer cancel()
	conn, err := connectSQL(ctx, cfg.DSN)
	if err != nil {
		return facts{}
	}
	defer closeQuietly(conn)
	f := facts{known: true}
	if err := conn.QueryRow(ctx, "SELECT current_setting('wal_level')").Scan(&f.walLevel); err != nil {
		return facts{}
	}
	if f.slot, err = readSlot(ctx, conn, cfg.Slot); err != nil {
		return facts{}
	}
	if serverMajor(conn) >= 16 && f.slot.Exists {
		conn.QueryRow(ctx, "SELECT coalesce(conflicting, false) FROM pg_replication_slots WHERE slot_name = $1", cfg.Slot).Scan(&f.invalidated)
	}
	return f
}

// slotLost is the one message for an invalidated slot, whoever notices
// first (the monitor, the stream, Prepare).
func slotLost(err error, slot string) error {
	return fatalf(err, "replication slot %q was invalidated (wal_status lost: WAL it needed was removed, see max_slot_wal_keep_size): EVENTS WERE LOST; drop it (SELECT pg_drop_replication_slot('%s')) and restart with --accept-gap", slot, slot)
}
