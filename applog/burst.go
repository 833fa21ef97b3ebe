package applog

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/cdcaudit/cdcaudit/rules"
)

// Burst is the failed-login burst rule: Failures failed logins for one
// login, or from one IP address, within Within. Zero Failures: off.
type Burst struct {
	Failures int
	Within   time.Duration
}

// DefaultBurst: 5 failures within 10 minutes.
var DefaultBurst = Burst{Failures: 5, Within: 10 * time.Minute}

func (b Burst) String() string { return rules.Rate{N: b.Failures, Within: b.Within}.String() }

// ParseBurst reads the rule as configured: "5/10m" (failures/window) or
// "off".
func ParseBurst(s string) (Burst, error) {
	r, err := rules.ParseRate(s)
	return Burst{Failures: r.N, Within: r.Within}, err
}

// maxBurstKeys bounds the logins and addresses whose recent failures are
// kept: an attacker cycling logins makes the least recently failed ones
// forgotten first (the per-address count still holds them).
const maxBurstKeys = 10000

// window is the recent failures of one login ("l/…") or address ("i/…").
// A burst is open from the failure that completed it until Within passes
// without a failure: a continuing attack is one burst, one alert.
type window struct {
	Times []time.Time `json:"times"`         // the last Failures failures, oldest first
	Open  time.Time   `json:"open,omitzero"` // the last failure of the open burst
}

// bursts counts failures in log time, so the same lines decide the same
// bursts whatever the wall clock.
type bursts struct {
	rule  Burst
	keys  map[string]*window
	dirty map[string]bool
}

func newBursts(rule Burst) *bursts {
	return &bursts{rule: rule, keys: map[string]*window{}, dirty: map[string]bool{}}
}

// failed counts a failure of key at t and reports whether it completes a
// new burst, and how many failures the window holds.
func (b *bursts) failed(key string, t time.Time) (bool, int) {
	if b.rule.Failures == 0 {
		return false, 0
	}
	w := b.keys[key]
	if w == nil {
		if len(b.keys) >= maxBurstKeys {
			b.evict()
		}
		w = &window{}
		b.keys[key] = w
	}
	b.dirty[key] = true
	from := t.Add(-b.rule.Within)
	n := 0
	for _, x := range w.Times {
		if x.After(from) {
			w.Times[n] = x
			n++
		}
	}
	w.Times = append(w.Times[:n], t)
	if len(w.Times) > b.rule.Failures {
		w.Times = w.Times[len(w.Times)-b.rule.Failures:]
	}
	if !w.Open.IsZero() && !t.After(w.Open.Add(b.rule.Within)) {
		w.Open = t // the burst goes on
		return false, len(w.Times)
	}
	w.Open = time.Time{}
	if len(w.Times) >= b.rule.Failures {
		w.Open = t
		return true, len(w.Times)
	}
	return false, len(w.Times)
}

// evict forgets the key failed least recently.
func (b *bursts) evict() {
	oldest, at := "", time.Time{}
	for k, w := range b.keys {
		last := w.Times[len(w.Times)-1]
		if oldest == "" || last.Before(at) || last.Equal(at) && k < oldest {
			oldest, at = k, last
		}
	}
	delete(b.keys, oldest)
	b.dirty[oldest] = true
}

// expire forgets the windows whose last failure is older than Within
// before now (log time).
func (b *bursts) expire(now time.Time) {
	for k, w := range b.keys {
		if now.Sub(w.Times[len(w.Times)-1]) > b.rule.Within {
			delete(b.keys, k)
			b.dirty[k] = true
		}
	}
}

// records returns the changed windows as state records (deleted ones
// with a nil value), in key order.
func (b *bursts) records() []record {
	out := make([]record, 0, len(b.dirty))
	for k := range b.dirty {
		r := record{key: prefixBurst + k}
		if w := b.keys[k]; w != nil {
			r.value, _ = json.Marshal(w)
		}
		out = append(out, r)
	}
	clear(b.dirty)
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

func (b *bursts) load(key string, v []byte) error {
	var w window
	if err := json.Unmarshal(v, &w); err != nil || len(w.Times) == 0 {
		return fmt.Errorf("applog: state record %s: malformed", prefixBurst+key)
	}
	b.keys[key] = &w
	return nil
}

type record struct {
	key   string
	value []byte
}
