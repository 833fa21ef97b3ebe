package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzQueryParameters sends any query string to the routes that read
// parameters: the answer is 200, 400 or 404 (an unknown record or session),
// never a 500 or a panic.
func FuzzQueryParameters(f *testing.F) {
	fx := newFixture(f)
	h := fx.handler(f, &admin)
	for _, s := range []string{"", "since=2026-11-23T09:00:00Z&until=2026-11-24T00:00:00Z", "table=sale_*,res_*&op=insert&op=update",
		"record=public.sale_order:42", `record=public.t:{"a":1,"b":"x"}`, "order=desc&limit=3&cursor=AQAIFyPeyLpGKQAAAAAAABkAAAAAAQ",
		"user=%236&state=ended", "bucket=hour", "flag=orm_bypass&session=s1", "limit=0", "%zz", "table=[", "cursor=eyJsIjoxfQ"} {
		f.Add(s)
	}
	paths := []string{"/api/v1/events", "/api/v1/events/count", "/api/v1/records/history", "/api/v1/sessions",
		"/api/v1/sessions/" + fx.alice, "/api/v1/users", "/api/v1/summaries/changes", "/api/v1/summaries/orm-bypass",
		"/api/v1/summaries/users", "/api/v1/summaries/sessions"}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, p := range paths {
			r := httptest.NewRequest(http.MethodGet, p, nil)
			r.URL.RawQuery = raw
			a := serve(h, r)
			if a.status != 200 && a.status != 400 {
				t.Fatalf("%s?%q: %d %s", p, raw, a.status, a.body)
			}
		}
	})
}
