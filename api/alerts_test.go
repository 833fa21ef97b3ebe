package api

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/cdcaudit/cdcaudit/alerts"
	"github.com/cdcaudit/cdcaudit/sink"
)

// fixtureAlerts are the fixture's alerts: a new device of alice (mailed to
// her), one of bob, an orm_bypass change about nobody in particular.
func fixtureAlerts(f *fixture) []sink.StateRecord {
	al := alerts.Alert{ID: "new_device/" + f.alice, Kind: alerts.KindNewDevice, Time: t0.Add(3 * time.Hour), UserID: 6,
		Login: "alice@example.com", Session: f.alice, IP: "81.2.69.142", Browser: "chrome", OS: "windows",
		Device: "computer", Country: "United Kingdom", Sessions: []string{f.alice}, Summary: "alice@example.com signed in from a new device"}
	bob := alerts.Alert{ID: "new_device/" + f.bob, Kind: alerts.KindNewDevice, Time: t0.Add(time.Hour), UserID: 7,
		Login: "bob@example.com", Session: f.bob, Summary: "bob@example.com signed in from a new device"}
	bypass := alerts.Alert{ID: "orm_bypass/0000000000001500-000001", Kind: alerts.KindORMBypass, Time: t0.Add(70 * time.Minute),
		Events: []string{"0000000000001500-000001"}, Summary: "1 change to public.sale_order made outside the application (orm_bypass)",
		Detail: map[string]string{"changes": "1"}}
	delivered, _ := json.Marshal(alerts.Delivery{OK: true, At: t0.Add(3*time.Hour + time.Minute), Attempts: 1})
	return []sink.StateRecord{alerts.Queue(al), alerts.Queue(bob), alerts.Queue(bypass),
		{Bucket: alerts.Bucket, Key: "d/" + al.ID + "/" + alerts.TargetEmailUser, Value: delivered}}
}

func TestAlerts(t *testing.T) {
	f := newFixture(t)
	list := func(p string, target string) (ids []string, body alertsBody) {
		t.Helper()
		principal := &admin
		switch p {
		case "viewer":
			principal = &viewer
		case "self":
			principal = &self
		}
		a := f.get(t, principal, target)
		if a.status != 200 {
			t.Fatalf("%s as %s: %d %s", target, p, a.status, a.body)
		}
		a.json(t, &body)
		for _, al := range body.Alerts {
			ids = append(ids, al.ID)
		}
		return ids, body
	}
	all := []string{"new_device/" + f.alice, "orm_bypass/0000000000001500-000001", "new_device/" + f.bob}
	for _, p := range []string{"admin", "viewer"} {
		ids, body := list(p, "/api/v1/alerts")
		if !slices.Equal(ids, all) {
			t.Errorf("as %s: %v, want %v (newest first)", p, ids, all)
		}
		if d := body.Alerts[0].Deliveries[alerts.TargetEmailUser]; !d.OK {
			t.Errorf("as %s: deliveries %+v", p, body.Alerts[0].Deliveries)
		}
	}
	// self (alice) sees her own, without deliveries.
	ids, body := list("self", "/api/v1/alerts")
	if !slices.Equal(ids, all[:1]) || body.Alerts[0].Deliveries != nil {
		t.Errorf("as self: %v %+v", ids, body.Alerts)
	}
	if ids, _ := list("self", "/api/v1/alerts?user=bob@example.com"); len(ids) != 0 {
		t.Errorf("self asking for bob's: %v", ids)
	}
	if ids, _ := list("admin", "/api/v1/alerts?kind=orm_bypass"); !slices.Equal(ids, all[1:2]) {
		t.Errorf("kind: %v", ids)
	}
	if ids, _ := list("admin", "/api/v1/alerts?user=%237"); !slices.Equal(ids, all[2:]) {
		t.Errorf("user #7: %v", ids)
	}
	if ids, _ := list("admin", "/api/v1/alerts?since=2026-11-23T10:05:00Z&until=2026-11-23T11:00:00Z"); !slices.Equal(ids, all[1:2]) {
		t.Errorf("since/until: %v", ids)
	}
	// Pages.
	var got []string
	target := "/api/v1/alerts?limit=2"
	for range 3 {
		ids, body := list("admin", target)
		got = append(got, ids...)
		if body.NextCursor == "" {
			break
		}
		target = "/api/v1/alerts?limit=2&cursor=" + body.NextCursor
	}
	if !slices.Equal(got, all) {
		t.Errorf("paged: %v", got)
	}
}
