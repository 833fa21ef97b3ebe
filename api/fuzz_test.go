package api

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"reflect"
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
		"user=%236&state=ended", "bucket=hour", "flag=orm_bypass&session=s1", "limit=0", "%zz", "table=[", "cursor=eyJsIjoxfQ", "format=xlsx&user=alice@example.com"} {
		f.Add(s)
	}
	paths := []string{"/api/v1/events", "/api/v1/events/count", "/api/v1/records/history", "/api/v1/sessions",
		"/api/v1/sessions/" + fx.alice, "/api/v1/users", "/api/v1/summaries/changes", "/api/v1/summaries/orm-bypass",
		"/api/v1/summaries/users", "/api/v1/summaries/sessions", "/api/v1/export"}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, p := range paths {
			r := httptest.NewRequest(http.MethodGet, p, nil)
			r.URL.RawQuery = raw
			a := serve(h, r)
			unknownSource := a.status == 404 && bytes.HasPrefix(a.body, []byte(`{"error":"no source `))
			if a.status != 200 && a.status != 400 && !unknownSource {
				t.Fatalf("%s?%q: %d %s", p, raw, a.status, a.body)
			}
		}
	})
}

// FuzzExportManifestID asks for the manifest of any export id: 400 or 404,
// never a 500 or a panic.
func FuzzExportManifestID(f *testing.F) {
	fx := newFixture(f)
	h := fx.handler(f, &admin)
	for _, s := range []string{"000660f05c773e00-32747deb634ba823", "ffffffffffffffff-0000000000000000", "nope", "%zz", "..", "a/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		target := "/api/v1/exports/" + id + "/manifest"
		if path.Clean(target) != target {
			t.Skip("the mux redirects a path to clean (//, ..)")
		}
		r := httptest.NewRequest(http.MethodGet, "/api/v1/exports/x/manifest", nil)
		r.URL.Path, r.URL.RawPath = target, ""
		a := serve(h, r)
		if a.status != 400 && a.status != 404 {
			t.Fatalf("%q: %d %s", id, a.status, a.body)
		}
	})
}

// FuzzSourceParameter picks the source of any query string: the one its
// source parameter names (once), the rest of the query left to the route
// exactly as it was, never a panic.
func FuzzSourceParameter(f *testing.F) {
	sh := &shared{}
	for _, name := range []string{"erp_a", "erp_b"} {
		sh.sources = append(sh.sources, &server{shared: sh, name: name})
	}
	for _, s := range []string{"", "source=erp_a", "limit=3&source=erp_b&table=x", "%73ource=erp_b", "source=erp_a&source=erp_b",
		"source=%zz", "source", "source=&a=1", "a=%zz&source=erp_b", "source=erp_b;a=1", "&&source=erp_a&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/events", nil)
		r.URL.RawQuery = raw
		src, rest, err := sh.pick(r, viewer)
		if err != nil {
			var he *httpError
			if !errors.As(err, &he) || he.status != 400 && he.status != 404 {
				t.Fatalf("%q: %v", raw, err)
			}
			return
		}
		all, aerr := url.ParseQuery(raw)
		left, lerr := url.ParseQuery(rest.URL.RawQuery)
		if _, ok := left["source"]; ok && lerr == nil {
			t.Fatalf("%q: the route is left %q", raw, rest.URL.RawQuery)
		}
		if aerr != nil {
			return // the route refuses it
		}
		if lerr != nil || src.name != all.Get("source") {
			t.Fatalf("%q: source %s, left %q (%v)", raw, src.name, rest.URL.RawQuery, lerr)
		}
		delete(all, "source")
		if !reflect.DeepEqual(all, left) && len(all)+len(left) > 0 {
			t.Fatalf("%q: the route is left %v, not %v", raw, left, all)
		}
	})
}
