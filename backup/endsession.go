package backup

import "encoding/json"

// VerbEndSession is the control socket's request that ends sessions
// through the running daemon ('cdcaudit sessions end'): its argument is an
// EndSessionRequest in JSON, its reply the daemon's outcomes in JSON.
const VerbEndSession = "end_session"

// EndSessionRequest names one session (ID, a pseudonym) or every open
// session of a login (User); By is who asked (the command line's user).
type EndSessionRequest struct {
	ID   string `json:"id,omitempty"`
	User string `json:"user,omitempty"`
	By   string `json:"by,omitempty"`
}

// AskEndSession sends an end_session request to the daemon serving dir's
// store; ErrNoDaemon when none listens.
func AskEndSession(dir string, req EndSessionRequest) ([]byte, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	return Ask(dir, VerbEndSession, string(b))
}
