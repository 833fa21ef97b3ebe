package sessionctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/cdcaudit/cdcaudit/correlate"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/storewatch"
)

// pseudonymSQL is sessions.Pseudonym computed by PostgreSQL: the rows of a
// session are found by its pseudonym without cdcaudit ever holding their
// identifier before it needs it.
const pseudonymSQL = `'s' || left(encode(sha256(convert_to(%s, 'UTF8')), 'hex'), 24)`

// The Odoo statements. res_device_log is read by the session's user when
// known (its index), else whole; http_sessions' sid is cut to the 42
// characters the device log keeps.
var (
	odooIdentifiersSQL = `SELECT DISTINCT session_identifier FROM res_device_log
WHERE ($2::int8 = 0 OR user_id = $2) AND ` + fmt.Sprintf(pseudonymSQL, "session_identifier") + ` = $1`
	// As Odoo's revoke writes them (ORM: write_uid, write_date = the
	// transaction's now in UTC); rows revoked already are left alone, so
	// a second end finds nothing.
	odooRevokeSQL = `UPDATE res_device_log SET revoked = true, write_uid = $2, write_date = (now() AT TIME ZONE 'UTC')
WHERE session_identifier = $1 AND revoked IS NOT TRUE`
	odooSessionDBSQL = `DELETE FROM http_sessions WHERE ` + fmt.Sprintf(pseudonymSQL, "left(sid, 42)") + ` = $1`
	odooUserSQL      = `SELECT id FROM res_users WHERE login = $1 LIMIT 1`
)

// message is the content of cdcaudit's logical message: correlate reads
// user_id (and session_id); the rest says what it was.
type message struct {
	UserID  int64  `json:"user_id"`
	By      string `json:"by"`
	Action  string `json:"action"`
	Session string `json:"session"` // the pseudonym: never the identifier
}

// database runs the database's actions in one transaction with cdcaudit's
// message, and returns the session's identifiers it read (for the file
// store) and the rows it changed.
func (c *Controller) database(ctx context.Context, s sessions.Session, by Requester) (ids []string, rows int64, err error) {
	conn, err := c.connect(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback(context.Background())

	actor := int64(systemUser)
	if c.cfg.Odoo && by.Login != "" {
		if ok, err := exists(ctx, tx, "public.res_users"); err != nil {
			return nil, 0, err
		} else if ok {
			var uid int64
			if err := tx.QueryRow(ctx, odooUserSQL, by.Login).Scan(&uid); err == nil && uid > 0 {
				actor = uid // an admin who is an Odoo user acts as that user, as in Odoo
			} else if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return nil, 0, err
			}
		}
	}
	content, _ := json.Marshal(message{UserID: actor, By: "cdcaudit", Action: Action, Session: s.ID})
	if _, err := tx.Exec(ctx, `SELECT pg_logical_emit_message(true, $1, $2::text)`, correlate.MessagePrefix, string(content)); err != nil {
		return nil, 0, fmt.Errorf("emitting cdcaudit's message: %w", err)
	}
	if c.cfg.Odoo {
		if ids, err = c.identifiers(ctx, tx, s); err != nil {
			return nil, 0, err
		}
		for _, id := range ids {
			tag, err := tx.Exec(ctx, odooRevokeSQL, id, actor)
			if err != nil {
				return nil, 0, fmt.Errorf("revoking res_device_log rows: %w", err)
			}
			rows += tag.RowsAffected()
		}
		if ok, err := exists(ctx, tx, "public.http_sessions"); err != nil {
			return nil, 0, err
		} else if ok {
			tag, err := tx.Exec(ctx, odooSessionDBSQL, s.ID)
			if err != nil {
				return nil, 0, fmt.Errorf("deleting http_sessions rows: %w", err)
			}
			rows += tag.RowsAffected()
		}
	}
	if c.cfg.EndSQL != "" {
		// The statement takes what it names of $1..$3.
		sd, err := tx.Prepare(ctx, "", c.cfg.EndSQL)
		if err != nil {
			return nil, 0, fmt.Errorf("session_end_sql: %w", err)
		}
		args := []any{s.ID, s.UserID, s.Login}
		if len(sd.ParamOIDs) > len(args) {
			return nil, 0, fmt.Errorf("session_end_sql: %d parameters, at most 3 ($1 session, $2 user id, $3 login)", len(sd.ParamOIDs))
		}
		tag, err := tx.Exec(ctx, c.cfg.EndSQL, args[:len(sd.ParamOIDs)]...)
		if err != nil {
			return nil, 0, fmt.Errorf("session_end_sql: %w", err)
		}
		rows += tag.RowsAffected()
	}
	if rows == 0 {
		return ids, 0, nil // nothing changed: no message in the stream either
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, 0, err
	}
	return ids, rows, nil
}

// identifiers reads the session's identifiers from res_device_log
// (validated: a row is untrusted input).
func (c *Controller) identifiers(ctx context.Context, tx pgx.Tx, s sessions.Session) ([]string, error) {
	ok, err := exists(ctx, tx, "public.res_device_log")
	if err != nil || !ok {
		return nil, err
	}
	rows, err := tx.Query(ctx, odooIdentifiersSQL, s.ID, s.UserID)
	if err != nil {
		return nil, fmt.Errorf("reading res_device_log: %w", err)
	}
	var ids []string
	var id string
	_, err = pgx.ForEachRow(rows, []any{&id}, func() error {
		if storewatch.ValidIdentifier(id) {
			ids = append(ids, id)
		} else {
			c.log.Warn("end session: a res_device_log identifier of the session is not an Odoo identifier; its files are left alone", "session", s.ID)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading res_device_log: %w", err)
	}
	return ids, nil
}

func exists(ctx context.Context, tx pgx.Tx, table string) (bool, error) {
	var ok bool
	err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok)
	return ok, err
}
