package sessions

import (
	"encoding/json"
	"strings"
	"time"
)

// EndedBefore returns whether a persisted record is history older than
// cutoff, for retention to remove with the events: a session that ended
// (explicitly, or by expiry after lifetime without activity) before cutoff,
// or a login made before it. Names, the clock and anything unreadable are
// kept.
func EndedBefore(lifetime time.Duration) func(key, value []byte, cutoff time.Time) bool {
	return func(key, value []byte, cutoff time.Time) bool {
		k := string(key)
		switch {
		case strings.HasPrefix(k, keySession):
			var r record
			if json.Unmarshal(value, &r) != nil {
				return false
			}
			end, _ := r.End(cutoff, lifetime)
			return !end.IsZero() && end.Before(cutoff) && r.LastActivity.Before(cutoff)
		case strings.HasPrefix(k, keyLogin):
			var l Login
			return json.Unmarshal(value, &l) == nil && !l.At.IsZero() && l.At.Before(cutoff)
		}
		return false
	}
}
