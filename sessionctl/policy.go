package sessionctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cdcaudit/cdcaudit/auth"
	"github.com/cdcaudit/cdcaudit/sessions"
	"github.com/cdcaudit/cdcaudit/sink"
)

// Policy names, as the access log's via ("policy:<name>") gives them.
const (
	PolicyIdleTimeout = "idle_timeout"
	PolicyMaxAge      = "max_age"
	PolicyOneSession  = "one_session"
)

// Bucket is the state bucket of the policies: "fired/<session>" records
// that a policy fired on a session, so it never fires on it again (after a
// restart either).
const Bucket = "sessionctl"

const keyFired = "fired/"

// DefaultEvery is how often policies are evaluated.
const DefaultEvery = 15 * time.Second

// Policies end sessions without being asked. All off by default.
type Policies struct {
	// IdleTimeout ends a session without activity for this long (0: off).
	IdleTimeout time.Duration
	// MaxAge ends a session this long after its first activity (0: off).
	MaxAge time.Duration
	// OneSession: a user's newest session ends the older ones.
	OneSession bool
	// ExceptLogins and ExceptGroups (Odoo group xml ids, implied groups
	// included) are never ended by a policy.
	ExceptLogins []string
	ExceptGroups []string
	// DryRun records (access log, alert) and logs what would be ended,
	// and ends nothing.
	DryRun bool
	// Every is the evaluation interval (default 15s).
	Every time.Duration
}

// Any says whether a policy is on.
func (p Policies) Any() bool { return p.IdleTimeout > 0 || p.MaxAge > 0 || p.OneSession }

// Validate checks the settings.
func (p Policies) Validate() error {
	for _, d := range []time.Duration{p.IdleTimeout, p.MaxAge} {
		if err := ValidatePolicyDuration(d); err != nil {
			return fmt.Errorf("sessionctl: policy: %w", err)
		}
	}
	for _, g := range p.ExceptGroups {
		if err := auth.ValidateGroupXMLID(g); err != nil {
			return fmt.Errorf("sessionctl: policy_exceptions: %w", err)
		}
	}
	return nil
}

// firedRecord is the persisted firing of a policy on a session.
type firedRecord struct {
	Policy string    `json:"policy"`
	At     time.Time `json:"at"`
	DryRun bool      `json:"dry_run,omitempty"`
}

// Load restores the policies' records (store.LoadState(Bucket, …)), before
// Run.
func (c *Controller) Load(key, value []byte) error {
	k := string(key)
	if !strings.HasPrefix(k, keyFired) {
		return fmt.Errorf("sessionctl: unknown state record %q", k)
	}
	var r firedRecord
	if err := json.Unmarshal(value, &r); err != nil {
		return fmt.Errorf("sessionctl: state record %s: %w", k, err)
	}
	c.mu.Lock()
	c.fired[k[len(keyFired):]] = r
	c.mu.Unlock()
	return nil
}

// Run is the daemon's source (pipeline.Source): it takes the store's
// StateSink and evaluates the policies every Policies.Every until ctx ends.
func (c *Controller) Run(ctx context.Context, state StateSink) error {
	c.SetState(state)
	defer c.SetState(nil)
	if !c.cfg.Policies.Any() {
		<-ctx.Done()
		return nil
	}
	every := c.cfg.Policies.Every
	if every <= 0 {
		every = DefaultEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		out, err := c.Evaluate(ctx)
		if err != nil && ctx.Err() == nil {
			c.log.Warn("session policies: evaluation failed; trying again", "err", err)
		}
		c.log.Debug("session policies evaluated", "fired", len(out))
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// candidate is a session a policy fires on.
type candidate struct {
	s      sessions.Session
	policy string
}

// Evaluate runs the policies once, on the daemon's clock, over the open
// sessions: each fires at most once per session (recorded durably before
// the action, so a crash never makes it fire twice).
func (c *Controller) Evaluate(ctx context.Context) ([]Outcome, error) {
	p := c.cfg.Policies
	if !p.Any() {
		return nil, nil
	}
	now := c.cfg.Now()
	all := c.sessions()
	if err := c.forget(ctx, all); err != nil {
		return nil, err
	}
	var open []sessions.Session
	for _, s := range all {
		if end, _ := s.End(now, 0); end.IsZero() && !slices.Contains(p.ExceptLogins, s.Login) {
			open = append(open, s)
		}
	}
	if len(open) == 0 {
		return nil, nil
	}
	excepted, err := c.groupMembers(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the excepted groups: %w", err)
	}
	var cands []candidate
	add := func(s sessions.Session, policy string) {
		if !slices.ContainsFunc(cands, func(c candidate) bool { return c.s.ID == s.ID }) {
			cands = append(cands, candidate{s, policy})
		}
	}
	byUser := map[int64][]sessions.Session{}
	for _, s := range open {
		if s.UserID != 0 && excepted[s.UserID] {
			continue
		}
		switch {
		case p.IdleTimeout > 0 && now.Sub(s.LastActivity) >= p.IdleTimeout:
			add(s, PolicyIdleTimeout)
		case p.MaxAge > 0 && now.Sub(s.FirstActivity) >= p.MaxAge:
			add(s, PolicyMaxAge)
		}
		if p.OneSession && s.UserID != 0 {
			byUser[s.UserID] = append(byUser[s.UserID], s)
		}
	}
	users := make([]int64, 0, len(byUser))
	for u := range byUser {
		users = append(users, u)
	}
	slices.Sort(users)
	for _, u := range users {
		list := byUser[u]
		// The newest login stays; the older ones end.
		sort.Slice(list, func(i, j int) bool {
			if !list[i].FirstActivity.Equal(list[j].FirstActivity) {
				return list[i].FirstActivity.After(list[j].FirstActivity)
			}
			return list[i].ID < list[j].ID
		})
		for _, s := range list[1:] {
			add(s, PolicyOneSession)
		}
	}
	var out []Outcome
	for _, cd := range cands {
		if c.hasFired(cd.s.ID) {
			continue
		}
		rec := firedRecord{Policy: cd.policy, At: now.UTC(), DryRun: p.DryRun}
		b, _ := json.Marshal(rec)
		if err := c.store(ctx, []sink.StateRecord{{Bucket: Bucket, Key: keyFired + cd.s.ID, Value: b}}); err != nil {
			return out, fmt.Errorf("recording that policy %s fired: %w", cd.policy, err)
		}
		c.mu.Lock()
		c.fired[cd.s.ID] = rec
		c.mu.Unlock()
		if p.DryRun {
			c.log.Info("session policy (dry run): would end", "policy", cd.policy, "session", cd.s.ID, "login", cd.s.Login)
		}
		o, err := c.end(ctx, cd.s, Policy(cd.policy), cd.policy, p.DryRun)
		out = append(out, o)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func (c *Controller) hasFired(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.fired[id]
	return ok
}

// forget drops the records of sessions no longer held (ended for a
// lifetime): the map and the bucket stay as small as the open sessions.
func (c *Controller) forget(ctx context.Context, all []sessions.Session) error {
	held := make(map[string]bool, len(all))
	for _, s := range all {
		held[s.ID] = true
	}
	var drop []sink.StateRecord
	c.mu.Lock()
	for id := range c.fired {
		if !held[id] {
			drop = append(drop, sink.StateRecord{Bucket: Bucket, Key: keyFired + id})
		}
	}
	c.mu.Unlock()
	if len(drop) == 0 || len(all) == 0 {
		return nil // no sessions at all: the tracker is not there yet
	}
	if err := c.store(ctx, drop); err != nil {
		return err
	}
	c.mu.Lock()
	for _, r := range drop {
		delete(c.fired, r.Key[len(keyFired):])
	}
	c.mu.Unlock()
	return nil
}

// groupMembersSQL: the users of the groups (xml ids), implied groups
// included (a user of a group that implies an excepted one is excepted).
const groupMembersSQL = `
WITH RECURSIVE g(id) AS (
    SELECT d.res_id FROM ir_model_data d WHERE d.model = 'res.groups' AND d.module || '.' || d.name = ANY($1)
    UNION
    SELECT i.gid FROM res_groups_implied_rel i JOIN g ON i.hid = g.id
)
SELECT DISTINCT r.uid::int8 FROM res_groups_users_rel r JOIN g ON r.gid = g.id`

// groupMembers reads the excepted groups' users now (membership changes
// count at once).
func (c *Controller) groupMembers(ctx context.Context) (map[int64]bool, error) {
	groups := c.cfg.Policies.ExceptGroups
	if len(groups) == 0 {
		return nil, nil
	}
	if c.cfg.DSN == "" {
		return nil, errors.New("policy_exceptions names groups, which need the dsn")
	}
	qctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	conn, err := c.connect(qctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(qctx, groupMembersSQL, groups)
	if err != nil {
		return nil, err
	}
	members := map[int64]bool{}
	var uid int64
	for rows.Next() {
		if err := rows.Scan(&uid); err != nil {
			return nil, err
		}
		members[uid] = true
	}
	return members, rows.Err()
}
