package sessions

import (
	"encoding/json"
	"testing"
	"time"
)

func TestEndedBefore(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cutoff := t0.Add(100 * time.Hour)
	expired := EndedBefore(24 * time.Hour)
	sess := func(last, ended time.Time) []byte {
		b, _ := json.Marshal(record{Session: Session{ID: "s1", FirstActivity: t0, LastActivity: last, Ended: ended}})
		return b
	}
	login := func(at time.Time) []byte { b, _ := json.Marshal(Login{UserID: 2, At: at}); return b }
	for _, c := range []struct {
		name, key string
		value     []byte
		want      bool
	}{
		{"logged out before", "s/s1", sess(t0.Add(10*time.Hour), t0.Add(11*time.Hour)), true},
		{"logged out after", "s/s1", sess(t0.Add(10*time.Hour), t0.Add(101*time.Hour)), false},
		{"expired before", "s/s1", sess(t0.Add(70*time.Hour), time.Time{}), true},
		{"expires after", "s/s1", sess(t0.Add(80*time.Hour), time.Time{}), false},
		{"open", "s/s1", sess(t0.Add(99*time.Hour), time.Time{}), false},
		{"old login", "l/00000000000000000002/x/y", login(t0), true},
		{"new login", "l/00000000000000000002/x/y", login(cutoff), false},
		{"user name", "u/00000000000000000002", []byte(`{"login":"a"}`), false},
		{"clock", "c", []byte(`{}`), false},
		{"unreadable", "s/s1", []byte(`{`), false},
	} {
		if got := expired([]byte(c.key), c.value, cutoff); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
