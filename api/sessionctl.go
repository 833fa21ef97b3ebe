package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/cdcaudit/cdcaudit/access"
	"github.com/cdcaudit/cdcaudit/sessionctl"
)

// SessionEnder ends application sessions (sessionctl.Controller): the
// admin routes POST /api/v1/sessions/{id}/end and
// POST /api/v1/users/{login}/sessions/end.
type SessionEnder interface {
	End(ctx context.Context, id string, by sessionctl.Requester) (sessionctl.Outcome, error)
	EndUser(ctx context.Context, login string, by sessionctl.Requester) ([]sessionctl.Outcome, error)
}

// actions are the routes that change something (POST only, admins only),
// by path.
func actions() map[string]handlerFunc {
	return map[string]handlerFunc{
		"/api/v1/sessions/{id}/end":          (*server).endSession,
		"/api/v1/users/{login}/sessions/end": (*server).endUserSessions,
	}
}

// guardAction is guard for an action: a principal, POST, an admin, the
// source. (A cookie session's CSRF token is checked by auth's middleware
// before.)
func (sh *shared) guardAction(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := signedIn(w, r)
		if !ok {
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: this route is an action (POST)")
			return
		}
		if !p.IsAdmin() {
			writeError(w, http.StatusForbidden, "ending sessions is for admins")
			return
		}
		s, r, err := sh.pick(r, p)
		if err == nil {
			err = h(s, w, r, p)
		}
		if err != nil {
			sh.fail(w, r, err)
		}
	})
}

// endBody is the answer of the end routes.
type endBody struct {
	Outcomes []sessionctl.Outcome `json:"outcomes"`
}

func requester(r *http.Request, p access.Principal) sessionctl.Requester {
	return sessionctl.Requester{Role: string(p.Role), Login: p.Login, Via: p.Via, Address: clientIP(r.RemoteAddr)}
}

func (s *server) endSession(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	if s.ends == nil {
		return errNotConfigured
	}
	o, err := s.ends.End(r.Context(), r.PathValue("id"), requester(r, p))
	if err != nil {
		return endError(err)
	}
	return writeEnd(w, []sessionctl.Outcome{o})
}

func (s *server) endUserSessions(w http.ResponseWriter, r *http.Request, p access.Principal) error {
	if s.ends == nil {
		return errNotConfigured
	}
	out, err := s.ends.EndUser(r.Context(), r.PathValue("login"), requester(r, p))
	if err != nil {
		return endError(err)
	}
	return writeEnd(w, out)
}

var errNotConfigured = &httpError{http.StatusNotImplemented, sessionctl.ErrDisabled.Error()}

func endError(err error) error {
	switch {
	case errors.Is(err, sessionctl.ErrDisabled):
		return errNotConfigured
	case errors.Is(err, sessionctl.ErrUnknownUser):
		return errNotFound("no session of that login is known")
	case errors.Is(err, sessionctl.ErrBadID):
		return badRequest("not a session id (s + 24 hex digits, as the sessions routes give it)")
	}
	return err
}

// writeEnd answers 200 when every action ended its session or found it
// gone, 502 when one failed (the outcomes say which and why).
func writeEnd(w http.ResponseWriter, out []sessionctl.Outcome) error {
	status := http.StatusOK
	for _, o := range out {
		if o.Result == sessionctl.ResultFailed {
			status = http.StatusBadGateway
		}
	}
	if out == nil {
		out = []sessionctl.Outcome{}
	}
	return writeJSON(w, status, endBody{Outcomes: out})
}
