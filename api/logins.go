package api

import (
	"net/http"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/applog"
)

type loginPage struct {
	Logins     []applog.Record `json:"logins"`
	NextCursor string          `json:"next_cursor"`
}

type loginCursor struct {
	Key string `json:"k"`
}

// logins lists the logins read in the application's log (app_log), newest
// first. A self principal sees the attempts made with its own login.
func (s *server) logins(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	v, err := query(r, "login", "ip", "result", "since", "until", "limit", "cursor")
	if err != nil {
		return err
	}
	m := applog.Match{Login: v.Get("login"), IP: v.Get("ip"), Result: v.Get("result")}
	switch m.Result {
	case "", applog.ResultFailed, applog.ResultOK:
	default:
		return badRequest("result %q: want ok or failed", clip(m.Result))
	}
	if m.Since, err = parseTime(v, "since"); err != nil {
		return err
	}
	until, err := parseTime(v, "until")
	if err != nil {
		return err
	}
	limit, err := parseLimit(v, defaultLimit, maxLimit)
	if err != nil {
		return err
	}
	var cur loginCursor
	hasCursor, err := decodeCursor(v, &cur)
	if err != nil {
		return err
	}
	all, err := applog.ReadLogins(s.store.LoadState)
	if err != nil {
		return err
	}
	out := loginPage{Logins: []applog.Record{}}
	list := applog.Filter(all, m)
	for i := len(list) - 1; i >= 0; i-- {
		l := list[i]
		if hasCursor && l.Key >= cur.Key || !until.IsZero() && !l.Time.Before(until) || !sees(p, l.Login.Login) {
			continue
		}
		if len(out.Logins) == limit {
			out.NextCursor = encodeCursor(loginCursor{out.Logins[limit-1].Key})
			break
		}
		out.Logins = append(out.Logins, l)
	}
	return writeJSON(w, http.StatusOK, out)
}
