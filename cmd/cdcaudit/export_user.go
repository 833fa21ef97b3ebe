package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/cdcaudit/cdcaudit/export"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

// userIDSource answers a query for a user named by id, "#7", with all of
// that user's events. The store indexes an event under its login when the
// login was known, else under "#7" (audit.UserTerm): a user known by login
// has its events under the logins the session state knows for it, which
// are its events when they name it by id too (a login can pass to another
// user).
type userIDSource struct {
	src    export.Source
	id     int64
	logins []string
}

// forUser returns the source that finds the events of user (as --user
// gives it) in src: src itself unless user is "#<id>" of a user the
// session state knows a login of.
func forUser(src export.Source, st *sessions.State, user string) export.Source {
	id, err := strconv.ParseInt(strings.TrimPrefix(user, "#"), 10, 64)
	if !strings.HasPrefix(user, "#") || err != nil {
		return src
	}
	var logins []string
	if l := st.Users[id]; l != "" {
		logins = append(logins, l)
	}
	for _, l := range st.Logins {
		if l.UserID == id && l.Login != "" && !slices.Contains(logins, l.Login) {
			logins = append(logins, l.Login)
		}
	}
	if len(logins) == 0 {
		return src
	}
	return &userIDSource{src: src, id: id, logins: logins}
}

// exportPage bounds the events each of the user's terms holds in memory.
var exportPage = 512

// Query merges, in commit order, the events q selects under "#<id>" and
// under each of the user's logins (those naming the user's id). q's own
// User is the "#<id>"; it must not ask for pages itself.
func (u *userIDSource) Query(ctx context.Context, q sink.Query, fn func(key, record []byte) error) (string, error) {
	terms := append([]string{q.User}, u.logins...)
	pages := make([]*userPages, len(terms))
	for i, t := range terms {
		p := &userPages{src: u.src, q: q}
		p.q.User, p.q.Limit = t, exportPage
		if i > 0 {
			p.keep = u.names
		}
		pages[i] = p
	}
	for {
		var first *userPages
		for _, p := range pages {
			if err := p.fill(ctx); err != nil {
				return "", err
			}
			if len(p.keys) > 0 && (first == nil || bytes.Compare(p.keys[0], first.keys[0]) < 0) {
				first = p
			}
		}
		if first == nil {
			return "", nil
		}
		if err := fn(first.keys[0], first.records[0]); err != nil {
			return "", err
		}
		first.keys, first.records = first.keys[1:], first.records[1:]
	}
}

// names reports whether a record's actor is the user (by id).
func (u *userIDSource) names(record []byte) bool {
	var r struct {
		Actor struct {
			UserID *int64 `json:"user_id"`
		} `json:"actor"`
	}
	return json.Unmarshal(record, &r) == nil && r.Actor.UserID != nil && *r.Actor.UserID == u.id
}

// userPages reads one term's events a page at a time.
type userPages struct {
	src           export.Source
	q             sink.Query // its Cursor the next page's
	keep          func(record []byte) bool
	keys, records [][]byte // the page's events not yet handed on
	done          bool
}

// fill reads pages until one holds an event to hand on, or none is left.
func (p *userPages) fill(ctx context.Context) error {
	for len(p.keys) == 0 && !p.done {
		next, err := p.src.Query(ctx, p.q, func(k, rec []byte) error {
			if p.keep == nil || p.keep(rec) {
				p.keys, p.records = append(p.keys, bytes.Clone(k)), append(p.records, bytes.Clone(rec))
			}
			return nil
		})
		if err != nil {
			return err
		}
		p.q.Cursor, p.done = next, next == ""
	}
	return nil
}
