package api

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/audit"
	"github.com/cdcaudit/cdcaudit/sink"
)

// A summary covers a bounded time range: until defaults to now, since to
// until minus the summary's default span, and no range may be longer than
// its maximum span, so no request reads the whole store.
type span struct{ def, max time.Duration }

const day = 24 * time.Hour

var (
	changesSpan  = span{day, 7 * day}
	loginsSpan   = span{30 * day, 366 * day}
	sessionsSpan = span{30 * day, 366 * day}
	usersSpan    = span{7 * day, 31 * day}
	bypassSpan   = span{30 * day, 366 * day}
	// orm_bypass per hour: at most a month of hours.
	bypassHourlyMax = 31 * day
)

// scanPage is how many events one read transaction of a summary reads.
const scanPage = 4096

// timeRange reads since and until for a summary.
func (s *server) timeRange(v url.Values, sp span) (since, until time.Time, err error) {
	if since, err = parseTime(v, "since"); err != nil {
		return
	}
	if until, err = parseTime(v, "until"); err != nil {
		return
	}
	if until.IsZero() {
		until = s.now()
	}
	if since.IsZero() {
		since = until.Add(-sp.def)
	}
	since, until = since.UTC(), until.UTC()
	switch {
	case !since.Before(until):
		err = badRequest("since must be before until")
	case until.Sub(since) > sp.max:
		err = badRequest("the range is longer than this summary's maximum of %s: narrow since and until", days(sp.max))
	}
	return
}

func days(d time.Duration) string { return fmt.Sprintf("%d days", d/day) }

// scan hands fn the terms of every event q selects, a page (one short read
// transaction) at a time; n counts them (fn nil: count only).
func (s *server) scan(ctx context.Context, q sink.Query, fn func(*audit.Terms)) (n uint64, err error) {
	q.Limit = scanPage
	for {
		next, err := s.query(ctx, q, func(_, rec []byte) error {
			n++
			if fn == nil {
				return nil
			}
			t, err := audit.ParseTerms(rec)
			if err != nil {
				return err
			}
			fn(&t)
			return nil
		})
		if err != nil || next == "" {
			return n, err
		}
		q.Cursor = next
	}
}

type rangeBody struct {
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
}

type changesPoint struct {
	Hour  time.Time `json:"hour"`
	Table string    `json:"table"` // schema.table
	Op    string    `json:"op"`
	Count uint64    `json:"count"`
}

type changesBody struct {
	rangeBody
	Changes []changesPoint `json:"changes"`
}

// summaryChanges counts changes per hour, table and op.
func (s *server) summaryChanges(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	v, err := query(r, "since", "until", "table", "op")
	if err != nil {
		return err
	}
	since, until, err := s.timeRange(v, changesSpan)
	if err != nil {
		return err
	}
	q, err := parseFilter(v)
	if err != nil {
		return err
	}
	q.Since, q.Until = since, until
	out := changesBody{rangeBody: rangeBody{since, until}, Changes: []changesPoint{}}
	if keepToOwn(&q, p) {
		type bucket struct {
			hour      int64
			table, op string
		}
		counts := map[bucket]uint64{}
		_, err := s.scan(r.Context(), q, func(t *audit.Terms) {
			counts[bucket{t.CommitTime.Truncate(time.Hour).Unix(), t.Schema + "." + t.Table, t.Op.String()}]++
		})
		if err != nil {
			return err
		}
		for b, n := range counts {
			out.Changes = append(out.Changes, changesPoint{time.Unix(b.hour, 0).UTC(), b.table, b.op, n})
		}
		slices.SortFunc(out.Changes, func(a, b changesPoint) int {
			return cmp.Or(a.Hour.Compare(b.Hour), cmp.Compare(a.Table, b.Table), cmp.Compare(a.Op, b.Op))
		})
	}
	return writeJSON(w, http.StatusOK, out)
}

type dayPoint struct {
	Day   string `json:"day"` // YYYY-MM-DD, UTC
	Count int    `json:"count"`
}

type loginsBody struct {
	rangeBody
	Logins []dayPoint `json:"logins"`
}

// summaryLogins counts logins per day (UTC), from the session state.
func (s *server) summaryLogins(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	v, err := query(r, "since", "until")
	if err != nil {
		return err
	}
	since, until, err := s.timeRange(v, loginsSpan)
	if err != nil {
		return err
	}
	st, err := s.sessionState()
	if err != nil {
		return err
	}
	counts := map[string]int{}
	for i := range st.Logins {
		l := &st.Logins[i]
		if l.At.Before(since) || !l.At.Before(until) || !sees(p, st.loginOf(l)) {
			continue
		}
		counts[l.At.UTC().Format(time.DateOnly)]++
	}
	out := loginsBody{rangeBody{since, until}, []dayPoint{}}
	for d, n := range counts {
		out.Logins = append(out.Logins, dayPoint{d, n})
	}
	slices.SortFunc(out.Logins, func(a, b dayPoint) int { return cmp.Compare(a.Day, b.Day) })
	return writeJSON(w, http.StatusOK, out)
}

type valueCount struct {
	Value string `json:"value"` // "" when unknown
	Count int    `json:"count"`
}

type sessionsSummaryBody struct {
	rangeBody
	Sessions int          `json:"sessions"`
	Browser  []valueCount `json:"browser"`
	OS       []valueCount `json:"os"`
	Device   []valueCount `json:"device"`
	Country  []valueCount `json:"country"`
}

// summarySessions counts the sessions active at some time in the range by
// browser, OS, device and country.
func (s *server) summarySessions(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	v, err := query(r, "since", "until")
	if err != nil {
		return err
	}
	since, until, err := s.timeRange(v, sessionsSpan)
	if err != nil {
		return err
	}
	st, err := s.sessionState()
	if err != nil {
		return err
	}
	var browser, os, device, country = map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	out := sessionsSummaryBody{rangeBody: rangeBody{since, until}}
	f := sessionFilter{since: since, until: until}
	for i := range st.Sessions {
		ss := &st.Sessions[i]
		if !st.match(ss, &f, p) {
			continue
		}
		out.Sessions++
		browser[ss.Browser]++
		os[ss.OS]++
		device[ss.Device]++
		country[ss.Country]++
	}
	out.Browser, out.OS, out.Device, out.Country = ranked(browser), ranked(os), ranked(device), ranked(country)
	return writeJSON(w, http.StatusOK, out)
}

// ranked lists counts, largest first.
func ranked(m map[string]int) []valueCount {
	out := make([]valueCount, 0, len(m))
	for v, n := range m {
		out = append(out, valueCount{v, n})
	}
	slices.SortFunc(out, func(a, b valueCount) int { return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Value, b.Value)) })
	return out
}

type userCount struct {
	User  string `json:"user"` // login, or #ID
	Count uint64 `json:"count"`
}

type usersSummaryBody struct {
	rangeBody
	Users []userCount `json:"users"`
	// Unattributed counts the changes of the range no user is known for.
	Unattributed uint64 `json:"unattributed"`
}

// summaryUsers ranks the users by their changes in the range.
func (s *server) summaryUsers(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	v, err := query(r, "since", "until", "limit")
	if err != nil {
		return err
	}
	since, until, err := s.timeRange(v, usersSpan)
	if err != nil {
		return err
	}
	limit, err := parseLimit(v, 10, 100)
	if err != nil {
		return err
	}
	out := usersSummaryBody{rangeBody: rangeBody{since, until}, Users: []userCount{}}
	q := sink.Query{Since: since, Until: until}
	if keepToOwn(&q, p) {
		counts := map[string]uint64{}
		_, err := s.scan(r.Context(), q, func(t *audit.Terms) { counts[t.User]++ })
		if err != nil {
			return err
		}
		out.Unattributed = counts[""]
		delete(counts, "")
		for u, n := range counts {
			out.Users = append(out.Users, userCount{u, n})
		}
		slices.SortFunc(out.Users, func(a, b userCount) int { return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.User, b.User)) })
		if len(out.Users) > limit {
			out.Users = out.Users[:limit]
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

type timePoint struct {
	At    time.Time `json:"at"` // the start of the bucket
	Count uint64    `json:"count"`
}

type bypassBody struct {
	rangeBody
	Bucket string      `json:"bucket"`
	Total  uint64      `json:"total"`
	Series []timePoint `json:"series"`
}

// summaryORMBypass counts the orm_bypass changes per hour or day, through
// the flag index.
func (s *server) summaryORMBypass(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	v, err := query(r, "since", "until", "bucket", "table")
	if err != nil {
		return err
	}
	bucket := v.Get("bucket")
	sp := bypassSpan
	width := day
	switch bucket {
	case "", "day":
		bucket = "day"
	case "hour":
		sp.max, width = bypassHourlyMax, time.Hour
	default:
		return badRequest("bucket %q: want hour or day", clip(bucket))
	}
	since, until, err := s.timeRange(v, sp)
	if err != nil {
		return err
	}
	q, err := parseFilter(v)
	if err != nil {
		return err
	}
	q.Since, q.Until, q.Flag = since, until, "orm_bypass"
	out := bypassBody{rangeBody: rangeBody{since, until}, Bucket: bucket, Series: []timePoint{}}
	if keepToOwn(&q, p) {
		counts := map[int64]uint64{}
		_, err := s.scan(r.Context(), q, func(t *audit.Terms) { counts[t.CommitTime.Truncate(width).Unix()]++ })
		if err != nil {
			return err
		}
		for b, n := range counts {
			out.Series = append(out.Series, timePoint{time.Unix(b, 0).UTC(), n})
			out.Total += n
		}
		slices.SortFunc(out.Series, func(a, b timePoint) int { return a.At.Compare(b.At) })
	}
	return writeJSON(w, http.StatusOK, out)
}
