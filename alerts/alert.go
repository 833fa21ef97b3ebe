// Package alerts raises alerts from the change stream (new devices, every
// login, orm_bypass changes), queues them in the store in the same
// transaction as their cause, and delivers them by mail and webhook, at
// least once and never twice after a recorded success.
//
// Producers outside this package only fill an Alert and store Queue(a) with
// the batch that stores its cause (a pipeline stage's Dirty output, or one
// call of the pipeline's StateSink). The alert's ID is derived from its
// cause, so a replay after a crash writes the same record again and the
// deliverer, which records what it delivered under the same ID, sends
// nothing twice.
package alerts

import (
	"encoding/json"
	"time"

	"github.com/cdcaudit/cdcaudit/sink"
)

// Alert is one thing worth telling someone. Producers fill it; ID must be
// deterministic from its cause (so a replay makes the same ID):
// "<kind>/<cause>", cause being an event id, a session pseudonym +
// RFC3339Nano time, an app-log record key, etc.
type Alert struct {
	ID       string            `json:"id"`
	Kind     string            `json:"kind"` // the Kind* constants
	Time     time.Time         `json:"time"` // when it happened (commit time, log line time)
	UserID   int64             `json:"user_id,omitempty"`
	Login    string            `json:"login,omitempty"`
	Session  string            `json:"session,omitempty"` // pseudonym s…, or db:… for a database session
	IP       string            `json:"ip,omitempty"`
	Browser  string            `json:"browser,omitempty"`
	OS       string            `json:"os,omitempty"`
	Device   string            `json:"device,omitempty"`
	Country  string            `json:"country,omitempty"`
	City     string            `json:"city,omitempty"`
	Events   []string          `json:"events,omitempty"`   // evidence: event ids
	Sessions []string          `json:"sessions,omitempty"` // evidence: session ids
	Summary  string            `json:"summary"`            // one line for a person
	Rule     string            `json:"rule,omitempty"`     // suspicious-activity rule name
	Detail   map[string]string `json:"detail,omitempty"`   // small extra facts (counts, distances)
}

// Alert kinds.
const (
	KindSuspicious        = "suspicious" // Rule says which
	KindNewDevice         = "new_device"
	KindLogin             = "login" // every login (off by default)
	KindFailedLoginBurst  = "failed_login_burst"
	KindSessionTerminated = "session_terminated"
	KindORMBypass         = "orm_bypass"
	KindDirectDB          = "direct_db"
)

// Kinds lists every kind, for validation and documentation.
var Kinds = []string{KindSuspicious, KindNewDevice, KindLogin, KindFailedLoginBurst,
	KindSessionTerminated, KindORMBypass, KindDirectDB}

// Bucket is the state bucket of queued alerts ("q/<id>") and of their
// delivery ("d/<id>/<channel>").
const Bucket = "alerts"

// Key prefixes in Bucket.
const (
	prefixQueued    = "q/"
	prefixDelivered = "d/"
)

// Queue is the state record that queues a: bucket "alerts", key "q/"+a.ID,
// value JSON. Put it in the batch that stores the alert's cause (stage
// Dirty output, or a StateSink call).
func Queue(a Alert) sink.StateRecord {
	a.Time = a.Time.UTC()
	b, _ := json.Marshal(&a) // an Alert always marshals
	return sink.StateRecord{Bucket: Bucket, Key: prefixQueued + a.ID, Value: b}
}
