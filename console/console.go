// Package console is the web page people read the audit trail with: one
// HTML page and its script and style, embedded in the binary, served at /
// and /assets/. The page reads everything from the HTTP API (/api/v1/) of
// the same origin and signs in through it; this package serves files only
// and knows nothing of the store or of sign-in.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed index.html assets
var files embed.FS

// CSP lets the page load and connect to its own origin only: no inline
// script or style, no frame of it elsewhere. Data URLs are images only
// (none is used today; the browser's own favicon fallback would be one).
const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	version     string // the start of its SHA-256: its URL's ?v=
}

type handler struct {
	index  []byte
	assets map[string]asset // by path under /assets/
}

// Handler serves the console: the page at / and its files under /assets/.
// The page names each asset with its content's hash (?v=…), so a browser
// may keep an asset for a year and still never runs an old script with a
// new page; the page itself is revalidated every time.
func Handler() http.Handler {
	h := &handler{assets: map[string]asset{}}
	index, err := files.ReadFile("index.html")
	if err != nil {
		panic(err) // embedded: cannot happen
	}
	err = fs.WalkDir(files, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		a := asset{body: b, contentType: mime.TypeByExtension(path.Ext(p)), version: hex.EncodeToString(sum[:6])}
		if a.contentType == "" {
			a.contentType = "application/octet-stream"
		}
		name := "/" + p
		h.assets[name] = a
		index = bytes.ReplaceAll(index, []byte(`"`+name+`"`), []byte(`"`+name+"?v="+a.version+`"`))
		return nil
	})
	if err != nil {
		panic(err)
	}
	h.index = index
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/" || r.URL.Path == "/index.html" {
		hdr.Set("Content-Security-Policy", CSP)
		hdr.Set("X-Frame-Options", "DENY")
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("Content-Type", "text/html; charset=utf-8")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(h.index))
		return
	}
	a, ok := h.assets[r.URL.Path]
	if !ok || !strings.HasPrefix(r.URL.Path, "/assets/") {
		http.NotFound(w, r)
		return
	}
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("ETag", `"`+a.version+`"`)
	if r.URL.Query().Get("v") == a.version {
		hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hdr.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
