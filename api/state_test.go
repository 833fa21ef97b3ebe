package api

import (
	"slices"
	"testing"
	"time"
)

func TestSessions(t *testing.T) {
	f := newFixture(t)
	var all sessionsBody
	f.get(t, &viewer, "/api/v1/sessions").json(t, &all)
	if len(all.Sessions) != 2 || all.NextCursor != "" {
		t.Fatalf("sessions %+v", all)
	}
	a, b := all.Sessions[0], all.Sessions[1]
	if a.ID != f.alice || a.Login != "alice@example.com" || a.State != "active" || a.IP != "81.2.69.142" || a.Browser != "chrome" ||
		a.OS != "windows" || a.Device != "computer" || a.Country != "United Kingdom" || a.DurationSeconds != int64((3*time.Hour+2*time.Minute)/time.Second) ||
		!a.FirstActivity.Equal(t0) || !a.LastActivity.Equal(t0.Add(3*time.Hour)) || !a.EndInferred {
		t.Errorf("alice's session %+v", a)
	}
	if b.ID != f.bob || b.State != "ended" || b.EndReason != "revoked" || b.EndedByLogin != "admin" || !b.Ended.Equal(t0.Add(2*time.Hour)) ||
		b.DurationSeconds != 7200 || b.EndInferred {
		t.Errorf("bob's session %+v", b)
	}
	for q, want := range map[string][]string{
		"?state=active":               {f.alice},
		"?state=idle":                 nil,
		"?state=ended":                {f.bob},
		"?user=bob@example.com":       {f.bob},
		"?user=%236":                  {f.alice},
		"?user=nobody":                nil,
		"?since=2026-11-23T11:30:00Z": {f.alice}, // bob's ended at 11:00
		"?until=2026-11-23T09:00:00Z": nil,       // both began at 09:00
		"?until=2026-11-23T09:00:01Z": {f.alice, f.bob},
		"?limit=1":                    {f.alice},
	} {
		var got sessionsBody
		f.get(t, &admin, "/api/v1/sessions"+q).json(t, &got)
		var ids []string
		for _, s := range got.Sessions {
			ids = append(ids, s.ID)
		}
		if !slices.Equal(ids, want) {
			t.Errorf("%s: %v, want %v", q, ids, want)
		}
	}
	// Pages.
	var p1, p2 sessionsBody
	f.get(t, &admin, "/api/v1/sessions?limit=1").json(t, &p1)
	f.get(t, &admin, "/api/v1/sessions?limit=1&cursor="+p1.NextCursor).json(t, &p2)
	if p1.NextCursor == "" || len(p2.Sessions) != 1 || p2.Sessions[0].ID != f.bob || p2.NextCursor != "" {
		t.Errorf("pages %+v %+v", p1, p2)
	}
}

func TestSession(t *testing.T) {
	f := newFixture(t)
	var got struct {
		page
		Session sessionBody `json:"session"`
	}
	a := f.get(t, &admin, "/api/v1/sessions/"+f.bob+"?order=desc&limit=3")
	if a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	a.json(t, &got)
	if got.Session.ID != f.bob || got.Session.State != "ended" {
		t.Errorf("session %+v", got.Session)
	}
	if ids, want := got.ids(t), f.idsOf("bob-delete-7", "bob-bypass-7", "bob-update-42"); !slices.Equal(ids, want) || got.NextCursor == "" {
		t.Errorf("events %v (next %q), want %v", ids, got.NextCursor, want)
	}
	f.get(t, &admin, "/api/v1/sessions/"+f.bob+"?order=desc&limit=3&cursor="+got.NextCursor).json(t, &got)
	if ids, want := got.ids(t), f.idsOf("bob-insert-7"); !slices.Equal(ids, want) {
		t.Errorf("second page %v, want %v", ids, want)
	}
	if a := f.get(t, &admin, "/api/v1/sessions/s000000000000000000000000"); a.status != 404 {
		t.Errorf("unknown session: %d", a.status)
	}
}

func TestUsers(t *testing.T) {
	f := newFixture(t)
	var got usersBody
	f.get(t, &admin, "/api/v1/users").json(t, &got)
	ts := func(d time.Duration) *time.Time { x := t0.Add(d); return &x }
	want := []userBody{
		{ID: 2, Login: "admin"},
		{ID: 6, Login: "alice@example.com", LastActivity: ts(3 * time.Hour), OpenSessions: 1, Sessions: 1},
		{ID: 7, Login: "bob@example.com", LastActivity: ts(130 * time.Minute), OpenSessions: 0, Sessions: 1}, // his delete
	}
	if len(got.Users) != len(want) {
		t.Fatalf("users %+v", got.Users)
	}
	for i, u := range got.Users {
		w := want[i]
		if u.ID != w.ID || u.Login != w.Login || u.OpenSessions != w.OpenSessions || u.Sessions != w.Sessions ||
			(u.LastActivity == nil) != (w.LastActivity == nil) || u.LastActivity != nil && !u.LastActivity.Equal(*w.LastActivity) {
			t.Errorf("user %d: %+v, want %+v", i, u, w)
		}
	}
	var p1, p2 usersBody
	f.get(t, &admin, "/api/v1/users?limit=2").json(t, &p1)
	f.get(t, &admin, "/api/v1/users?limit=2&cursor="+p1.NextCursor).json(t, &p2)
	if len(p1.Users) != 2 || len(p2.Users) != 1 || p2.Users[0].ID != 7 || p2.NextCursor != "" {
		t.Errorf("pages %+v / %+v", p1, p2)
	}
	var mine usersBody
	f.get(t, &self, "/api/v1/users").json(t, &mine)
	if len(mine.Users) != 1 || mine.Users[0].ID != 6 {
		t.Errorf("self: %+v", mine.Users)
	}
}

func TestSummaries(t *testing.T) {
	f := newFixture(t)
	var ch changesBody
	f.get(t, &admin, "/api/v1/summaries/changes").json(t, &ch)
	if !ch.Until.Equal(f.now) || !ch.Since.Equal(f.now.Add(-24*time.Hour)) {
		t.Errorf("default range %v – %v", ch.Since, ch.Until)
	}
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	wantCh := []changesPoint{
		{h(0), "public.res_partner", "insert", 1}, {h(0), "public.res_partner", "update", 1},
		{h(0), "public.sale_order", "insert", 1}, {h(0), "public.sale_order", "update", 2},
		{h(1), "public.res_partner", "update", 1}, {h(1), "public.sale_order", "update", 1},
		{h(2), "public.res_partner", "delete", 1},
	}
	if !slices.EqualFunc(ch.Changes, wantCh, func(a, b changesPoint) bool {
		return a.Hour.Equal(b.Hour) && a.Table == b.Table && a.Op == b.Op && a.Count == b.Count
	}) {
		t.Errorf("changes %+v\nwant %+v", ch.Changes, wantCh)
	}
	f.get(t, &admin, "/api/v1/summaries/changes?table=sale_order&op=insert&since=2026-11-23T00:00:00Z&until=2026-11-24T00:00:00Z").json(t, &ch)
	if len(ch.Changes) != 1 || ch.Changes[0].Count != 1 || ch.Changes[0].Op != "insert" {
		t.Errorf("filtered changes %+v", ch.Changes)
	}

	var lg loginsBody
	f.get(t, &admin, "/api/v1/summaries/logins").json(t, &lg)
	if len(lg.Logins) != 1 || lg.Logins[0] != (dayPoint{"2026-11-23", 2}) {
		t.Errorf("logins %+v", lg.Logins)
	}
	f.get(t, &self, "/api/v1/summaries/logins").json(t, &lg)
	if len(lg.Logins) != 1 || lg.Logins[0] != (dayPoint{"2026-11-23", 1}) {
		t.Errorf("alice's logins %+v", lg.Logins)
	}

	var ss sessionsSummaryBody
	f.get(t, &admin, "/api/v1/summaries/sessions").json(t, &ss)
	if ss.Sessions != 2 || !slices.Equal(ss.Device, []valueCount{{"computer", 2}}) ||
		!slices.Equal(ss.Browser, []valueCount{{"chrome", 1}, {"safari", 1}}) ||
		!slices.Equal(ss.Country, []valueCount{{"France", 1}, {"United Kingdom", 1}}) || len(ss.OS) != 2 {
		t.Errorf("sessions summary %+v", ss)
	}
	f.get(t, &admin, "/api/v1/summaries/sessions?since=2026-11-23T11:30:00Z&until=2026-11-23T12:00:00Z").json(t, &ss)
	if ss.Sessions != 1 || !slices.Equal(ss.Browser, []valueCount{{"chrome", 1}}) {
		t.Errorf("sessions summary after bob's ended %+v", ss)
	}

	var us usersSummaryBody
	f.get(t, &admin, "/api/v1/summaries/users").json(t, &us)
	if !slices.Equal(us.Users, []userCount{{"bob@example.com", 4}, {"alice@example.com", 3}}) || us.Unattributed != 1 {
		t.Errorf("users summary %+v", us)
	}
	f.get(t, &admin, "/api/v1/summaries/users?limit=1").json(t, &us)
	if !slices.Equal(us.Users, []userCount{{"bob@example.com", 4}}) {
		t.Errorf("top user %+v", us)
	}

	var ob bypassBody
	f.get(t, &admin, "/api/v1/summaries/orm-bypass?bucket=hour").json(t, &ob)
	if ob.Total != 3 || ob.Bucket != "hour" || len(ob.Series) != 2 || !ob.Series[0].At.Equal(h(0)) || ob.Series[0].Count != 1 || ob.Series[1].Count != 2 {
		t.Errorf("orm_bypass per hour %+v", ob)
	}
	f.get(t, &admin, "/api/v1/summaries/orm-bypass").json(t, &ob)
	if ob.Total != 3 || ob.Bucket != "day" || len(ob.Series) != 1 || !ob.Series[0].At.Equal(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("orm_bypass per day %+v", ob)
	}
	f.get(t, &self, "/api/v1/summaries/orm-bypass").json(t, &ob)
	if ob.Total != 1 {
		t.Errorf("alice's orm_bypass %+v", ob)
	}
}

// TestLargeEventsEndAPageEarly: a page stops at maxPageBytes, and its
// cursor continues after the last event it holds.
func TestLargeEventsEndAPageEarly(t *testing.T) {
	f := newFixture(t)
	old := maxPageBytes
	maxPageBytes = 1200 // about two events
	t.Cleanup(func() { maxPageBytes = old })
	for _, base := range []string{"/api/v1/events?limit=100", "/api/v1/records/history?record=sale_order:42&limit=100"} {
		var got []string
		cursor := ""
		pages := 0
		for ; pages < 20; pages++ {
			var p page
			a := f.get(t, &admin, base+"&cursor="+cursor)
			if a.status != 200 {
				t.Fatalf("%d %s", a.status, a.body)
			}
			a.json(t, &p)
			if len(p.Events) == 0 || len(p.Events) > 2 {
				t.Fatalf("%s: page of %d events", base, len(p.Events))
			}
			got = append(got, p.ids(t)...)
			if cursor = p.NextCursor; cursor == "" {
				break
			}
		}
		maxPageBytes = old
		var all page
		f.get(t, &admin, base).json(t, &all)
		maxPageBytes = 1200
		if !slices.Equal(got, all.ids(t)) || pages < 1 {
			t.Errorf("%s: %d pages gave %v, want %v", base, pages+1, got, all.ids(t))
		}
	}
}
