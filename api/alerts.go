package api

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/alerts"
)

type alertsBody struct {
	Alerts     []alerts.Listed `json:"alerts"`
	NextCursor string          `json:"next_cursor"`
}

// alertCursor is the position after an alert in the list's order (newest
// first, then by id).
type alertCursor struct {
	Time time.Time `json:"t"`
	ID   string    `json:"i"`
}

func (c *alertCursor) after(a *alerts.Listed) bool {
	if !a.Time.Equal(c.Time) {
		return a.Time.Before(c.Time)
	}
	return a.ID > c.ID
}

// alerts lists the alerts raised, newest first. A self principal sees the
// alerts about itself only, without their deliveries (where its alerts
// went, and why a delivery failed, are the administrators').
func (s *server) alerts(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	v, err := query(r, "kind", "user", "since", "until", "limit", "cursor")
	if err != nil {
		return err
	}
	var f alerts.Filter
	if f.Kind = v.Get("kind"); f.Kind != "" && !slices.Contains(alerts.Kinds, f.Kind) {
		return badRequest("kind %q: want one of %s", clip(f.Kind), strings.Join(alerts.Kinds, ", "))
	}
	user := v.Get("user")
	if f.Since, err = parseTime(v, "since"); err != nil {
		return err
	}
	if f.Until, err = parseTime(v, "until"); err != nil {
		return err
	}
	limit, err := parseLimit(v, defaultLimit, maxLimit)
	if err != nil {
		return err
	}
	var cur alertCursor
	hasCursor, err := decodeCursor(v, &cur)
	if err != nil {
		return err
	}
	list, err := alerts.List(s.store.LoadState, f)
	if err != nil {
		return err
	}
	out := alertsBody{Alerts: []alerts.Listed{}}
	for i := range list {
		a := &list[i]
		who := a.Login
		if who == "" && a.UserID > 0 {
			who = "#" + strconv.FormatInt(a.UserID, 10)
		}
		if hasCursor && !cur.after(a) || !sees(p, who) ||
			user != "" && who != user && !(a.UserID > 0 && user == "#"+strconv.FormatInt(a.UserID, 10)) {
			continue
		}
		if len(out.Alerts) == limit {
			last := out.Alerts[limit-1]
			out.NextCursor = encodeCursor(alertCursor{last.Time, last.ID})
			break
		}
		if !p.SeesAll() {
			a.Deliveries = nil
		}
		out.Alerts = append(out.Alerts, *a)
	}
	return writeJSON(w, http.StatusOK, out)
}
