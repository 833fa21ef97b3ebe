package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/instancekey"
)

// StoreSource is the Source of one recorded database for Options.Sources:
// its store, in the store's own data directory dataDir, whose instance key
// (instancekey.LoadOrCreate: created there, 0600, at the first start)
// signs its exports. sessions ends its sessions; nil: the end routes
// answer 501 for it.
func StoreSource(name, database, dataDir string, store Store, sessions SessionEnder) (Source, error) {
	key, err := instancekey.LoadOrCreate(dataDir)
	if err != nil {
		return Source{}, err
	}
	return Source{Name: name, Database: database, Store: store, Signer: key, Sessions: sessions}, nil
}

// sourceParam names the source a request reads.
const sourceParam = "source"

// source returns the source named name, or nil.
func (sh *shared) source(name string) *server {
	for _, s := range sh.sources {
		if s.name == name {
			return s
		}
	}
	return nil
}

// visible are the sources p may read: every one, or for a self principal
// the first, the one whose application users sign in with a password
// (another source's users are other people, whatever their logins).
func (sh *shared) visible(p access.Principal) []*server {
	if p.SeesAll() {
		return sh.sources
	}
	return sh.sources[:1]
}

// names lists the sources' names for a message.
func names(list []*server) string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = s.name
	}
	return strings.Join(out, ", ")
}

// pick returns the source r names with ?source= — which may be left out
// when p sees one source — and r without that parameter, for the route's
// own parameter checks. A source p may not see is unknown to it.
func (sh *shared) pick(r *http.Request, p access.Principal) (*server, *http.Request, error) {
	raw := r.URL.RawQuery
	if len(raw) > maxQueryLen {
		return nil, r, badRequest("query string longer than %d bytes", maxQueryLen)
	}
	var given []string
	var rest []string
	for _, part := range strings.Split(raw, "&") {
		key, value, _ := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(key); err != nil || k != sourceParam {
			// Not the source (a malformed pair is the route's to refuse).
			if part != "" {
				rest = append(rest, part)
			}
			continue
		}
		v, err := url.QueryUnescape(value)
		if err != nil {
			return nil, r, badRequest("malformed query string: %v", err)
		}
		given = append(given, v)
	}
	list := sh.visible(p)
	var s *server
	switch {
	case len(given) > 1:
		return nil, r, badRequest("parameter %q given %d times", sourceParam, len(given))
	case len(given) == 0 && len(list) > 1:
		return nil, r, badRequest("several sources: name one with source= (%s)", names(list))
	case len(given) == 0:
		return list[0], r, nil
	case len(given[0]) > maxValueLen || !utf8.ValidString(given[0]):
		return nil, r, badRequest("parameter %q is not a source's name", sourceParam)
	}
	for _, c := range list {
		if c.name == given[0] {
			s = c
		}
	}
	if s == nil {
		return nil, r, errNotFound(fmt.Sprintf("no source %q (the sources: %s)", clip(given[0]), names(list)))
	}
	r2 := r.Clone(r.Context())
	r2.URL.RawQuery = strings.Join(rest, "&")
	return s, r2, nil
}

type sourcesBody struct {
	Sources []sourceBody `json:"sources"`
}

type sourceBody struct {
	Name     string `json:"name"`
	Database string `json:"database"`
}

// listSources answers the sources p sees, in the configuration's order.
func (s *server) listSources(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	if err := noParams(r); err != nil {
		return err
	}
	out := sourcesBody{Sources: []sourceBody{}}
	for _, c := range s.visible(p) {
		out.Sources = append(out.Sources, sourceBody{Name: c.name, Database: c.database})
	}
	return writeJSON(w, http.StatusOK, out)
}
