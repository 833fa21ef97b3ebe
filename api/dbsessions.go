package api

import (
	"net/http"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/dbsessions"
)

// dbSessionsBody is a page of database sessions.
type dbSessionsBody struct {
	Sessions   []dbsessions.Session `json:"db_sessions"`
	NextCursor string               `json:"next_cursor"`
}

// dbSessionCursor is the position after a database session in the list's
// order (dbsessions.Compare).
type dbSessionCursor struct {
	Closed *time.Time `json:"c,omitempty"`
	Start  time.Time  `json:"s"`
	ID     string     `json:"i"`
}

// dbSessions lists the database sessions outside the application, open
// ones first: admins and viewers (a role, an address and a program are
// not one application user's to see).
func (s *server) dbSessions(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	if !p.SeesAll() {
		return &httpError{http.StatusForbidden, "database sessions are for admins and viewers"}
	}
	v, err := query(r, "state", "limit", "cursor")
	if err != nil {
		return err
	}
	state := v.Get("state")
	switch state {
	case "", "open", "closed":
	default:
		return badRequest("state %q: want open or closed", clip(state))
	}
	limit, err := parseLimit(v, defaultLimit, maxLimit)
	if err != nil {
		return err
	}
	var cur dbSessionCursor
	hasCursor, err := decodeCursor(v, &cur)
	if err != nil {
		return err
	}
	book, err := dbsessions.ReadBook(func(fn func(k, v []byte) error) error { return s.store.LoadState(dbsessions.Bucket, fn) })
	if err != nil {
		return err
	}
	after := dbsessions.Session{ID: cur.ID, Start: cur.Start, Closed: cur.Closed}
	out := dbSessionsBody{Sessions: []dbsessions.Session{}}
	for _, ds := range book.List() {
		if hasCursor && dbsessions.Compare(after, ds) >= 0 || state == "open" && ds.Closed != nil || state == "closed" && ds.Closed == nil {
			continue
		}
		if len(out.Sessions) == limit {
			last := out.Sessions[limit-1]
			out.NextCursor = encodeCursor(dbSessionCursor{last.Closed, last.Start, last.ID})
			break
		}
		out.Sessions = append(out.Sessions, ds)
	}
	return writeJSON(w, http.StatusOK, out)
}
