package api

import (
	"net/url"
	"time"

	"github.com/cdcaudit/cdcaudit/sessions"
	"slices"
	"strings"
	"testing"
)

// TestSelfSeesNothingOfOthers asks every route, as alice (self), for
// everything of bob's and of the unattributed change it can name, and
// finds none of it in any answer: not by id, record history, counts,
// sessions, users or summaries.
func TestSelfSeesNothingOfOthers(t *testing.T) {
	f := newFixture(t)
	bobRecord := url.QueryEscape("public.res_partner:7")
	targets := []string{
		"/api/v1/events", "/api/v1/events?order=desc&limit=1000",
		"/api/v1/events?user=bob@example.com", "/api/v1/events?session=" + f.bob,
		"/api/v1/events?record=" + bobRecord, "/api/v1/events?flag=orm_bypass", "/api/v1/events?table=*&op=insert,update,delete,truncate,snapshot",
		"/api/v1/events/count", "/api/v1/events/count?user=bob@example.com", "/api/v1/events/count?session=" + f.bob,
		"/api/v1/events/count?user=%23" + "7", "/api/v1/events/count?flag=orm_bypass",
		"/api/v1/records/history?record=" + bobRecord, "/api/v1/records/history?record=sale_order:42",
		"/api/v1/sessions", "/api/v1/sessions?user=bob@example.com", "/api/v1/sessions?state=ended",
		"/api/v1/sessions/" + f.bob, "/api/v1/sessions/" + f.alice,
		"/api/v1/users", "/api/v1/users?limit=1000",
		"/api/v1/summaries/changes", "/api/v1/summaries/changes?table=res_partner",
		"/api/v1/summaries/logins", "/api/v1/summaries/sessions", "/api/v1/summaries/users", "/api/v1/summaries/users?limit=100",
		"/api/v1/summaries/orm-bypass", "/api/v1/summaries/orm-bypass?bucket=hour",
		"/api/v1/whoami",
		"/api/v1/export", "/api/v1/export?format=csv&user=bob@example.com", "/api/v1/export?format=csv&session=" + f.bob,
		"/api/v1/export?record=" + bobRecord, "/api/v1/export?format=csv&flag=orm_bypass",
	}
	for _, name := range []string{"bob-insert-7", "bob-update-42", "bob-bypass-7", "none-bypass-42", "bob-delete-7", "alice-insert-42"} {
		targets = append(targets, "/api/v1/events/"+f.ids[name])
	}
	// What of bob (and of nobody) could leak: his login, id, session, IP,
	// browser, OS, country, and his events' ids and values.
	secrets := []string{"bob@example.com", `"#7"`, f.bob, f.bob[:13], "10.0.0.7", "safari", "macos", "France"}
	for name, id := range f.ids {
		if !strings.HasPrefix(name, "alice-") {
			secrets = append(secrets, id, name)
		}
	}
	seenOwn := 0
	for _, target := range targets {
		a := f.get(t, &self, target)
		if a.status != 200 && a.status != 404 {
			t.Errorf("%s: %d %s", target, a.status, a.body)
		}
		for _, s := range secrets {
			if strings.Contains(string(a.body), s) {
				t.Errorf("%s shows alice %q of another user:\n%s", target, s, a.body)
			}
		}
		if strings.Contains(string(a.body), "alice@example.com") {
			seenOwn++
		}
	}
	// The same routes do show alice her own: the test is not vacuous.
	if seenOwn < 12 {
		t.Errorf("alice saw her own in only %d answers", seenOwn)
	}
	for target, want := range map[string]string{
		"/api/v1/events/" + f.ids["bob-insert-7"]:   "404",
		"/api/v1/events/" + f.ids["none-bypass-42"]: "404",
		"/api/v1/sessions/" + f.bob:                 "404",
		"/api/v1/events/count":                      `{"count":3}`,
		"/api/v1/events/count?user=bob@example.com": `{"count":0}`,
		"/api/v1/events/count?flag=orm_bypass":      `{"count":1}`,
	} {
		a := f.get(t, &self, target)
		if got := strings.TrimSpace(string(a.body)); want == "404" && a.status != 404 || want != "404" && got != want {
			t.Errorf("%s: %d %s, want %s", target, a.status, got, want)
		}
	}
	// Her record history of a record bob changed too: her events only.
	var p page
	f.get(t, &self, "/api/v1/records/history?record=sale_order:42").json(t, &p)
	if got, want := p.ids(t), f.idsOf("alice-insert-42", "alice-update-42"); !slices.Equal(got, want) {
		t.Errorf("history %v, want %v", got, want)
	}
	// A 404 for another's event says what a 404 for no event says.
	mine := f.get(t, &self, "/api/v1/events/00000000FFFFFF00-000001")
	bobs := f.get(t, &self, "/api/v1/events/"+f.ids["bob-insert-7"])
	if string(bobs.body) != string(mine.body) {
		t.Errorf("another's event and no event answer differently: %s / %s", bobs.body, mine.body)
	}
}

// TestSelfIsNotToldWhoEndedItsSession: an admin's revocation of alice's
// session shows to alice as revoked, by nobody named; to a viewer, by the
// admin.
func TestSelfIsNotToldWhoEndedItsSession(t *testing.T) {
	by := int64(2)
	st := &sessionState{State: &sessions.State{Users: map[int64]string{2: "admin", 6: "alice@example.com"}}, now: t0,
		idleAfter: sessions.DefaultIdleAfter, lifetime: sessions.DefaultLifetime}
	s := sessions.Session{ID: "s1", UserID: 6, Login: "alice@example.com", FirstActivity: t0.Add(-time.Hour), LastActivity: t0.Add(-time.Hour),
		Ended: t0.Add(-time.Minute), EndReason: sessions.EndRevoked, EndedBy: &by}
	mine := st.body(s, self)
	if mine.EndedBy != nil || mine.EndedByLogin != "" || mine.EndReason != sessions.EndRevoked {
		t.Errorf("alice is told %+v", mine)
	}
	theirs := st.body(s, viewer)
	if theirs.EndedBy == nil || theirs.EndedByLogin != "admin" {
		t.Errorf("a viewer is told %+v", theirs)
	}
	own := int64(6)
	s.EndedBy = &own
	if b := st.body(s, self); b.EndedByLogin != "alice@example.com" {
		t.Errorf("alice is not told she ended it herself: %+v", b)
	}
}
