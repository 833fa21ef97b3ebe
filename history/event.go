package history

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cdcaudit/cdcaudit/audit"
)

// EventOf reads a stored record back into the event it was made from, as
// far as a line about it needs: where and when, the op, the rows, what
// changed, who and the flags, its source (not the actor's candidates, nor where the
// before-image came from).
func EventOf(record []byte) (*audit.Event, error) {
	r, err := audit.ParseRecord(record)
	if err != nil {
		return nil, err
	}
	op, err := audit.ParseOp(r.Op)
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", r.ID, err)
	}
	commitLSN, ordinal, err := audit.ParseID(r.ID)
	if err != nil {
		return nil, err
	}
	lsn, err := audit.ParseLSN(r.LSN)
	if err != nil {
		return nil, fmt.Errorf("event %s: lsn: %w", r.ID, err)
	}
	e := &audit.Event{LSN: lsn, CommitLSN: commitLSN, Ordinal: ordinal, XID: r.XID, CommitTime: r.CommitTime,
		Database: r.Database, Source: r.Source, Schema: r.Schema, Table: r.Table, Op: op}
	if r.Model != nil {
		e.Model = *r.Model
	}
	for _, f := range []struct {
		raw json.RawMessage
		row *audit.Row
	}{{r.Key, &e.Key}, {r.Before, &e.Before}, {r.After, &e.After}} {
		cols, err := Columns(f.raw)
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", r.ID, err)
		}
		for _, c := range cols {
			*f.row = append(*f.row, audit.Column{Name: c.Name, Value: c.Value})
		}
	}
	var actor struct {
		UserID     *int64  `json:"user_id"`
		Login      *string `json:"login"`
		UserVia    string  `json:"user_via"`
		SessionID  *string `json:"session_id"`
		SessionVia string  `json:"session_via"`
	}
	if err := errors.Join(json.Unmarshal(r.Changed, &e.Changed), json.Unmarshal(r.UnchangedToast, &e.UnchangedToast),
		json.Unmarshal(r.Redacted, &e.Redacted), json.Unmarshal(r.Flags, &e.Flags), json.Unmarshal(r.Actor, &actor)); err != nil {
		return nil, fmt.Errorf("event %s: %w", r.ID, err)
	}
	e.Actor = audit.Actor{UserID: actor.UserID, UserVia: actor.UserVia, SessionVia: actor.SessionVia}
	if actor.Login != nil {
		e.Actor.Login = *actor.Login
	}
	if actor.SessionID != nil {
		e.Actor.SessionID = *actor.SessionID
	}
	return e, nil
}
