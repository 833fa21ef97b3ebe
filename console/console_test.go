package console

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func serve(t *testing.T, method, target string, header ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, req)
	return w.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The page is served with its CSP and revalidated every time; each asset
// is named by its content's hash, so it may be kept for a year.
func TestPageAndAssets(t *testing.T) {
	res := serve(t, "GET", "/")
	page := body(t, res)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("/: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for k, want := range map[string]string{
		"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "Cache-Control": "no-cache",
		"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
	} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("/ %s: %q, want %q", k, got, want)
		}
	}
	if !strings.Contains(CSP, "default-src 'self'") || strings.Contains(CSP, "unsafe") {
		t.Errorf("CSP %q", CSP)
	}
	refs := regexp.MustCompile(`"(/assets/[^"?]+)\?v=([0-9a-f]{12})"`).FindAllStringSubmatch(page, -1)
	if len(refs) != 3 {
		t.Fatalf("the page names %d versioned assets: %q", len(refs), refs)
	}
	types := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
	for _, r := range refs {
		path, v := r[1], r[2]
		res := serve(t, "GET", path+"?v="+v)
		b := body(t, res)
		ext := path[strings.LastIndex(path, "."):]
		if res.StatusCode != 200 || len(b) == 0 || res.Header.Get("Content-Type") != types[ext] {
			t.Errorf("%s: %d %q, %d bytes", path, res.StatusCode, res.Header.Get("Content-Type"), len(b))
		}
		if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
			t.Errorf("%s?v=: Cache-Control %q", path, cc)
		}
		// An old or missing version is revalidated, never kept.
		if cc := serve(t, "GET", path+"?v=000000000000").Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("%s with another version: Cache-Control %q", path, cc)
		}
		if res := serve(t, "GET", path, "If-None-Match", `"`+v+`"`); res.StatusCode != http.StatusNotModified {
			t.Errorf("%s If-None-Match: %d", path, res.StatusCode)
		}
	}
	for _, p := range []string{"/assets/", "/assets/nope.js", "/index.htm", "/console.go", "/assets/../index.html", "/api/v1/x"} {
		if res := serve(t, "GET", p); res.StatusCode != 404 {
			t.Errorf("%s: %d", p, res.StatusCode)
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		if res := serve(t, m, "/"); res.StatusCode != 405 || res.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /: %d", m, res.StatusCode)
		}
	}
	if res := serve(t, "HEAD", "/"); res.StatusCode != 200 || body(t, res) != "" {
		t.Errorf("HEAD /: %d", res.StatusCode)
	}
}

// What the CSP forbids is not in the files either, and nothing in them
// names another origin; the script builds the page from data with
// textContent and attributes only, and keeps no credential in storage
// (the tab's storage holds the source chosen, nothing else).
func TestAssetsStayOnTheirOrigin(t *testing.T) {
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := files.ReadFile(p)
		s := string(b)
		// The SVG namespace is a name, not a place anything is fetched from.
		s = strings.ReplaceAll(s, "http://www.w3.org/2000/svg", "")
		if m := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(\s*['"]?(https?:|//)`).FindString(s); m != "" {
			t.Errorf("%s names another origin: %q", p, m)
		}
		switch {
		case strings.HasSuffix(p, ".html"):
			if regexp.MustCompile(`<script(\s[^>]*)?>\s*[^<\s]|<style|\sstyle=|\son[a-z]+=`).MatchString(s) {
				t.Errorf("%s has inline script or style", p)
			}
		case strings.HasSuffix(p, ".js"):
			// The tab's storage keeps one thing: the source chosen.
			s = strings.NewReplacer("sessionStorage.getItem(SOURCE_KEY)", "", "sessionStorage.setItem(SOURCE_KEY, source)", "").Replace(s)
			for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "localStorage", "sessionStorage", "setAttribute('style'"} {
				if strings.Contains(s, bad) {
					t.Errorf("%s uses %s", p, bad)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
