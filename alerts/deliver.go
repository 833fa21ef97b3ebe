package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/sink"
)

// Delivery defaults.
const (
	DefaultPoll        = 5 * time.Second
	DefaultBackoff     = 30 * time.Second // after the first failure; doubled after each
	DefaultMaxBackoff  = 30 * time.Minute
	DefaultGiveUpAfter = 72 * time.Hour // of failures since the first attempt
	// RouteGrace: an alert that happened more than this before its route
	// (kind and target) was first in force is not delivered: turning a
	// route on does not send the whole history.
	RouteGrace = time.Hour
	// roundLimit bounds the deliveries of one round, so a stop is prompt.
	roundLimit = 100
)

// Results of a delivery attempt (the metric's result label).
const (
	ResultOK        = "ok"
	ResultFailed    = "failed"     // will be retried
	ResultGaveUp    = "gave_up"    // failed for longer than GiveUpAfter
	ResultNoAddress = "no_address" // the user's address is not known
)

// Delivery is the state of one alert at one target ("d/<id>/<target>").
type Delivery struct {
	OK       bool      `json:"ok,omitempty"`
	At       time.Time `json:"at,omitzero"` // delivered at
	Attempts int       `json:"attempts,omitempty"`
	First    time.Time `json:"first,omitzero"` // first failed attempt
	Last     time.Time `json:"last,omitzero"`  // last failed attempt
	Error    string    `json:"error,omitempty"`
	// Final says why it is not tried again without success: gave_up or
	// no_address.
	Final string `json:"final,omitempty"`
}

// DeliveryMetrics is what the deliverer reports to (metrics.Metrics).
type DeliveryMetrics interface {
	// AlertDelivered counts one attempt at a channel and its result.
	AlertDelivered(channel, result string)
	// AlertsQueued is how many deliveries are waiting (alert × target).
	AlertsQueued(n int)
}

// StateReader reads a state bucket (sink.Store).
type StateReader interface {
	LoadState(bucket string, fn func(key, value []byte) error) error
}

// DelivererOptions configure a Deliverer. Everything is off by default:
// without routes nothing is delivered.
type DelivererOptions struct {
	Routes  []Route
	Mailer  *Mailer  // needed by email routes
	Webhook *Webhook // needed by webhook routes
	Mailbox string   // the security mailbox (to=security)
	Log     *slog.Logger
	Metrics DeliveryMetrics // may be nil

	Poll, Backoff, MaxBackoff, GiveUpAfter time.Duration // 0: the defaults
	Now                                    func() time.Time
}

// Deliverer delivers the alerts queued in the store to their routes' targets
// and records each delivery through the pipeline's StateSink: at least
// once (a delivery is recorded after it succeeded: a crash in between sends
// it again), never again once a success is recorded.
type Deliverer struct {
	store StateReader
	o     DelivererOptions
	// settled are alerts with every target done (delivered or final):
	// not decoded again.
	settled map[string]bool
}

// NewDeliverer checks opts against the routes and returns a deliverer
// reading alerts from store.
func NewDeliverer(store StateReader, opts DelivererOptions) (*Deliverer, error) {
	email, webhook := Channels(opts.Routes)
	if email && opts.Mailer == nil {
		return nil, errors.New("alert routes to email need smtp_addr and smtp_from")
	}
	if webhook && opts.Webhook == nil {
		return nil, errors.New("alert routes to a webhook need webhook_url and webhook_secret_file")
	}
	for _, r := range opts.Routes {
		if r.Channel == ChannelEmail && slices.Contains(r.To, "security") && opts.Mailbox == "" {
			return nil, errors.New("alert routes to=security need alert_mailbox")
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.Poll, DefaultPoll)
	def(&opts.Backoff, DefaultBackoff)
	def(&opts.MaxBackoff, DefaultMaxBackoff)
	def(&opts.GiveUpAfter, DefaultGiveUpAfter)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Deliverer{store: store, o: opts, settled: map[string]bool{}}, nil
}

// Run delivers until ctx ends; state stores delivery records durably (the
// pipeline's StateSink). It returns nil when ctx ends; a failing store is
// retried at the next poll.
func (d *Deliverer) Run(ctx context.Context, state func(context.Context, []sink.StateRecord) error) error {
	if len(d.o.Routes) == 0 {
		return nil
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		more, err := d.Round(ctx, state)
		if err != nil && ctx.Err() == nil {
			d.o.Log.Error("alerts: delivery round failed; retrying", "err", err, "in", d.o.Poll)
		}
		if more {
			t.Reset(0)
		} else {
			t.Reset(d.o.Poll)
		}
	}
}

// markerKey records when a route (kind → target) was first in force.
func markerKey(kind, target string) string { return "r/" + kind + "/" + target }

func deliveryKey(id, target string) string { return prefixDelivered + id + "/" + target }

// due is one delivery to attempt.
type due struct {
	a      *Alert
	target string
	st     Delivery
}

// Round makes one pass: it reads the queue, attempts what is due, and
// records the results. more: it stopped at its limit with more due.
func (d *Deliverer) Round(ctx context.Context, state func(context.Context, []sink.StateRecord) error) (more bool, err error) {
	now := d.o.Now().UTC()
	queued := map[string]*Alert{}
	done := map[string]Delivery{}
	markers := map[string]time.Time{}
	err = d.store.LoadState(Bucket, func(k, v []byte) error {
		key := string(k)
		switch {
		case strings.HasPrefix(key, prefixQueued):
			id := key[len(prefixQueued):]
			if d.settled[id] {
				return nil
			}
			var a Alert
			if json.Unmarshal(v, &a) != nil || a.ID != id {
				d.settled[id] = true
				d.o.Log.Warn("alerts: a queued alert is malformed; skipped", "key", key)
				return nil
			}
			queued[id] = &a
		case strings.HasPrefix(key, prefixDelivered):
			var st Delivery
			if json.Unmarshal(v, &st) == nil {
				done[key] = st
			}
		case strings.HasPrefix(key, "r/"):
			var t time.Time
			if t.UnmarshalText(v) == nil {
				markers[key] = t
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if recs := d.newMarkers(markers, now); len(recs) > 0 {
		if err := state(ctx, recs); err != nil {
			return false, fmt.Errorf("recording the routes in force: %w", err)
		}
	}

	var todo []due
	for _, id := range slices.Sorted(maps.Keys(queued)) {
		a := queued[id]
		settled := true
		for _, target := range Targets(d.o.Routes, a) {
			st := done[deliveryKey(id, target)]
			if st.OK || st.Final != "" || a.Time.Before(markers[markerKey(a.Kind, target)].Add(-RouteGrace)) {
				continue
			}
			settled = false
			todo = append(todo, due{a, target, st})
		}
		if settled {
			d.settled[id] = true
		}
	}
	slices.SortStableFunc(todo, func(x, y due) int { return x.a.Time.Compare(y.a.Time) })

	var addrs map[int64]string
	down := map[string]bool{} // targets that failed this round: not tried again in it
	waiting, attempted := len(todo), 0
	defer func() {
		if d.o.Metrics != nil {
			d.o.Metrics.AlertsQueued(waiting)
		}
	}()
	for _, it := range todo {
		if ctx.Err() != nil {
			return false, nil
		}
		if down[it.target] || it.st.Attempts > 0 && now.Before(it.st.Last.Add(d.backoff(it.st.Attempts))) {
			continue
		}
		if attempted == roundLimit {
			return true, nil
		}
		attempted++
		if it.target == TargetEmailUser && addrs == nil {
			if addrs, err = Addresses(d.store.LoadState); err != nil {
				return false, err
			}
		}
		st, result := d.attempt(ctx, it, addrs, now)
		if ctx.Err() != nil && result == ResultFailed {
			return false, nil // stopped mid-attempt: not the target's failure
		}
		b, _ := json.Marshal(st)
		if err := state(ctx, []sink.StateRecord{{Bucket: Bucket, Key: deliveryKey(it.a.ID, it.target), Value: b}}); err != nil {
			return false, fmt.Errorf("recording the delivery of %s to %s: %w", it.a.ID, it.target, err)
		}
		if d.o.Metrics != nil {
			d.o.Metrics.AlertDelivered(channelOf(it.target), result)
		}
		if result != ResultFailed {
			waiting--
		} else {
			down[it.target] = true
		}
	}
	return false, nil
}

// newMarkers returns the records of the routes (kind → target) in force
// for the first time.
func (d *Deliverer) newMarkers(markers map[string]time.Time, now time.Time) []sink.StateRecord {
	var recs []sink.StateRecord
	for _, kind := range Kinds {
		a := &Alert{Kind: kind}
		for _, target := range Targets(d.anyUser(), a) {
			k := markerKey(kind, target)
			if _, ok := markers[k]; ok {
				continue
			}
			markers[k] = now
			v, _ := now.MarshalText()
			recs = append(recs, sink.StateRecord{Bucket: Bucket, Key: k, Value: v})
		}
	}
	return recs
}

// anyUser is the routes with their user lists dropped: which targets a
// kind can reach at all.
func (d *Deliverer) anyUser() []Route {
	out := slices.Clone(d.o.Routes)
	for i := range out {
		out[i].Users = nil
	}
	return out
}

// backoff is the wait after n failed attempts.
func (d *Deliverer) backoff(n int) time.Duration {
	b := d.o.Backoff
	for i := 1; i < n && b < d.o.MaxBackoff; i++ {
		b *= 2
	}
	return min(b, d.o.MaxBackoff)
}

// attempt delivers one alert to one target and returns its new state.
func (d *Deliverer) attempt(ctx context.Context, it due, addrs map[int64]string, now time.Time) (Delivery, string) {
	a, st := it.a, it.st
	var err error
	switch it.target {
	case TargetWebhook:
		err = d.o.Webhook.Send(ctx, a, now)
	case TargetEmailSecurity:
		err = d.o.Mailer.Send(ctx, d.o.Mailbox, it.target, a)
	case TargetEmailUser:
		to := addrs[a.UserID]
		if a.UserID <= 0 || to == "" {
			d.o.Log.Warn("alerts: the user's mail address is not known; not mailed to the user", "alert", a.ID, "user_id", a.UserID)
			return Delivery{Final: ResultNoAddress, Last: now}, ResultNoAddress
		}
		err = d.o.Mailer.Send(ctx, to, it.target, a)
	}
	if err == nil {
		d.o.Log.Info("alert delivered", "alert", a.ID, "target", it.target)
		return Delivery{OK: true, At: now, Attempts: st.Attempts + 1}, ResultOK
	}
	st.Attempts++
	if st.First.IsZero() {
		st.First = now
	}
	st.Last, st.Error = now, clipLine(err.Error())
	if now.Sub(st.First) >= d.o.GiveUpAfter {
		st.Final = ResultGaveUp
		d.o.Log.Error("alerts: delivery given up", "alert", a.ID, "target", it.target, "attempts", st.Attempts, "err", st.Error)
		return st, ResultGaveUp
	}
	d.o.Log.Warn("alerts: delivery failed; will retry", "alert", a.ID, "target", it.target,
		"attempts", st.Attempts, "in", d.backoff(st.Attempts), "err", st.Error)
	return st, ResultFailed
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
