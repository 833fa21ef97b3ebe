package alerts

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Listed is a queued alert with where it was delivered.
type Listed struct {
	Alert
	// Deliveries by target (email-user, email-security, webhook): those
	// attempted so far.
	Deliveries map[string]Delivery `json:"deliveries,omitempty"`
}

// Filter selects alerts to list; zero fields select everything.
type Filter struct {
	Kind   string
	Login  string // the user's login (or UserID)
	UserID int64
	Since  time.Time // Time at or after
	Until  time.Time // Time before
}

func (f Filter) match(a *Alert) bool {
	return (f.Kind == "" || a.Kind == f.Kind) &&
		(f.Login == "" || a.Login == f.Login) &&
		(f.UserID == 0 || a.UserID == f.UserID) &&
		(f.Since.IsZero() || !a.Time.Before(f.Since)) &&
		(f.Until.IsZero() || a.Time.Before(f.Until))
}

// List reads the queued alerts that f selects, newest first, with their
// deliveries; load is a store's LoadState.
func List(load func(bucket string, fn func(key, value []byte) error) error, f Filter) ([]Listed, error) {
	var out []Listed
	deliveries := map[string]map[string]Delivery{}
	err := load(Bucket, func(k, v []byte) error {
		key := string(k)
		switch {
		case strings.HasPrefix(key, prefixQueued):
			var a Alert
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("alerts: queued alert %s: %w", key, err)
			}
			if f.match(&a) {
				out = append(out, Listed{Alert: a})
			}
		case strings.HasPrefix(key, prefixDelivered):
			// d/<id>/<target>: the id may hold slashes, the target none.
			rest := key[len(prefixDelivered):]
			i := strings.LastIndexByte(rest, '/')
			var d Delivery
			if i < 0 || json.Unmarshal(v, &d) != nil {
				return nil
			}
			id, target := rest[:i], rest[i+1:]
			if deliveries[id] == nil {
				deliveries[id] = map[string]Delivery{}
			}
			deliveries[id][target] = d
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Deliveries = deliveries[out[i].ID]
	}
	slices.SortStableFunc(out, func(a, b Listed) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// DeliveryStatus sums up an alert's deliveries for a person: "-" (none
// attempted), or each target's "ok", "retrying (n)", "gave_up",
// "no_address".
func (l Listed) DeliveryStatus() string {
	if len(l.Deliveries) == 0 {
		return "-"
	}
	var parts []string
	for _, t := range slices.Sorted(maps.Keys(l.Deliveries)) {
		d := l.Deliveries[t]
		s := "ok"
		switch {
		case d.OK:
		case d.Final != "":
			s = d.Final
		default:
			s = fmt.Sprintf("retrying (%d)", d.Attempts)
		}
		parts = append(parts, t+":"+s)
	}
	return strings.Join(parts, " ")
}
