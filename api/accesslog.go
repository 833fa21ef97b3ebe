package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/sink"
)

// AccessLog is the store's access log (sink.Store): who signed in,
// exported or acted.
type AccessLog interface {
	AccessLog(ctx context.Context, after uint64, desc bool, limit int, fn func(sink.AccessRecord) error) (uint64, error)
}

// accessLog lists the access log, newest first by default: admins only
// (it names every reader of the trail), and each reading is recorded in it.
func (s *server) accessLog(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	if !p.IsAdmin() {
		return &httpError{http.StatusForbidden, "the access log is for admins"}
	}
	al, ok := s.store.(AccessLog)
	if !ok {
		return errNotFound("this store keeps no access log")
	}
	v, err := query(r, "order", "limit", "cursor")
	if err != nil {
		return err
	}
	desc := true
	switch o := v.Get("order"); o {
	case "", "desc":
	case "asc":
		desc = false
	default:
		return badRequest("order %q: want asc or desc", clip(o))
	}
	limit, err := parseLimit(v, defaultLimit, maxLimit)
	if err != nil {
		return err
	}
	var after uint64
	if c := v.Get("cursor"); c != "" {
		if after, err = strconv.ParseUint(c, 10, 64); err != nil || after == 0 {
			return badRequest("cursor: not a cursor this API returned")
		}
	}
	var entries [][]byte
	next, err := al.AccessLog(r.Context(), after, desc, limit, func(rec sink.AccessRecord) error {
		entries = append(entries, bytes.Clone(rec.Record))
		return nil
	})
	if err != nil {
		return err
	}
	// Reading who read the trail is an admin action: it is recorded too,
	// before the answer (an admin action that cannot be recorded is not
	// done).
	if log, ok := s.store.(accessAppender); ok {
		count, _ := json.Marshal(len(entries))
		e := sink.AccessEntry{Time: s.now(), Action: "access_log", Result: "ok", Role: string(p.Role), Login: p.Login, Via: p.Via,
			Address: clientIP(r.RemoteAddr), Detail: []sink.Field{{Name: "count", Value: count}}}
		if _, err := log.AppendAccess(e); err != nil {
			return err
		}
	}
	cursor := ""
	if next != 0 {
		cursor = strconv.FormatUint(next, 10)
	}
	return writeList(w, "entries", entries, cursor)
}
