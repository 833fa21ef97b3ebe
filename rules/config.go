// Package rules raises suspicious-activity alerts from the change stream:
// mass change, impossible travel, activity outside working hours, first use
// of a sensitive model; and, from the access log, bulk export through the
// API. Each rule is on or off with its own threshold.
//
// The stream's rules are a deterministic pipeline stage (Stage): they
// decide from the events' data and commit times only, keep their state in
// the store with the events that changed it (Dirty, Load), and skip events
// they saw before a crash, so a replay raises no hit twice. A hit is an
// alerts.Alert of kind suspicious, its Rule named, with its evidence (event
// and session ids), queued in the batch of the event that caused it.
package rules

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Rule names (alerts.Alert.Rule).
const (
	RuleMassChange       = "mass_change"
	RuleImpossibleTravel = "impossible_travel"
	RuleWorkingHours     = "working_hours"
	RuleSensitiveModel   = "sensitive_model"
	RuleBulkExport       = "bulk_export"
)

// Off is how a rule is turned off in the configuration.
const Off = "off"

// Rate is "more than N within Within"; N 0: the rule is off.
type Rate struct {
	N      int
	Within time.Duration
}

func (r Rate) String() string {
	if r.N == 0 {
		return Off
	}
	return strconv.Itoa(r.N) + "/" + shortDuration(r.Within)
}

func shortDuration(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ParseRate reads "N/duration" (such as 100/10m) or "off".
func ParseRate(s string) (Rate, error) {
	if s == Off {
		return Rate{}, nil
	}
	n, d, ok := strings.Cut(s, "/")
	count, err1 := strconv.Atoi(n)
	within, err2 := time.ParseDuration(d)
	if !ok || err1 != nil || err2 != nil || count < 1 || within <= 0 || within > 31*24*time.Hour {
		return Rate{}, fmt.Errorf("%q: want count/duration, such as 100/10m (a count of 1 or more, a duration up to 31 days), or off", s)
	}
	return Rate{N: count, Within: within}, nil
}

// Defaults.
var (
	// DefaultMassChange: more than 100 records of one model deleted or
	// updated by one user within 10 minutes.
	DefaultMassChange = Rate{N: 100, Within: 10 * time.Minute}
	// DefaultBulkExport: more than 10000 events exported by one principal
	// within an hour.
	DefaultBulkExport = Rate{N: 10000, Within: time.Hour}
	// DefaultSensitive: access rights and groups, record rules, system
	// parameters, and the posting of journal entries.
	DefaultSensitive = []string{"res.groups", "res_groups_users_rel", "ir.model.access", "ir.rule", "ir.config_parameter", "account.move:post"}
)

// DefaultTravelKmh: faster than any airliner, with airports at both ends;
// DefaultTravel as configured.
const (
	DefaultTravelKmh = 1000
	DefaultTravel    = "1000"
)

// ParseSpeed reads a speed in km/h ("1000") or "off" (0).
func ParseSpeed(s string) (float64, error) {
	if s == Off {
		return 0, nil
	}
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "km/h"), 64)
	if err != nil || v < 1 || v > 1e6 {
		return 0, fmt.Errorf("%q: want a speed in km/h, such as 1000, or off", s)
	}
	return v, nil
}

var modelName = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_]+)*(:post)?$`)

// ParseModels reads the sensitive models: a comma-separated list of model
// names (res.groups) or table names (res_groups_users_rel), the entry
// account.move:post standing for the posting of a journal entry; or off.
func ParseModels(s string) ([]string, error) {
	if s == Off {
		return nil, nil
	}
	var out []string
	for _, m := range strings.Split(s, ",") {
		m = strings.TrimSpace(m)
		if !modelName.MatchString(m) || strings.HasSuffix(m, ":post") && m != "account.move:post" {
			return nil, fmt.Errorf("%q is not a model name (such as res.groups), a table name, or account.move:post", m)
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, errors.New("no models: list some, or say off")
	}
	return out, nil
}

// Hours are the working hours of the members of a group: on Days, from
// Start to End (minutes after midnight, End after Start) in Loc.
type Hours struct {
	Group      string
	Days       [7]bool // by time.Weekday
	Start, End int
	Loc        *time.Location
}

func (h Hours) contains(t time.Time) bool {
	l := t.In(h.Loc)
	m := l.Hour()*60 + l.Minute()
	return h.Days[l.Weekday()] && m >= h.Start && m < h.End
}

var (
	hoursRange = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$`)
	dayNames   = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}
)

// ParseHours reads working hours: entries separated by ";", each
// "group=NAME [DAYS] HH:MM-HH:MM TIMEZONE", DAYS being a day or range of
// days (Mon-Fri, the default; Mon-Sat; Sun; Sat-Sun …), NAME a group's name
// ("Sales / Administrator", "Administrator", spaces allowed), TIMEZONE an
// IANA zone (Europe/Brussels); or off.
func ParseHours(s string) ([]Hours, error) {
	if s == Off {
		return nil, nil
	}
	var out []Hours
	for _, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		h, err := parseHoursEntry(entry)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	if len(out) == 0 {
		return nil, errors.New("no working hours: give some (group=Sales Mon-Fri 08:00-19:00 Europe/Brussels), or say off")
	}
	return out, nil
}

func parseHoursEntry(entry string) (Hours, error) {
	bad := func(why string) (Hours, error) {
		return Hours{}, fmt.Errorf("%q: %s (want group=NAME [Mon-Fri] HH:MM-HH:MM TIMEZONE)", entry, why)
	}
	rest, ok := strings.CutPrefix(entry, "group=")
	if !ok {
		return bad("no group=")
	}
	f := strings.Fields(rest)
	if len(f) < 3 {
		return bad("too short")
	}
	var h Hours
	loc, err := time.LoadLocation(f[len(f)-1])
	if err != nil || f[len(f)-1] == "Local" {
		return bad("unknown time zone " + strconv.Quote(f[len(f)-1]))
	}
	h.Loc = loc
	m := hoursRange.FindStringSubmatch(f[len(f)-2])
	if m == nil {
		return bad("hours not HH:MM-HH:MM")
	}
	num := func(s string) int { n, _ := strconv.Atoi(s); return n }
	h.Start, h.End = num(m[1])*60+num(m[2]), num(m[3])*60+num(m[4])
	if h.End <= h.Start || h.End > 24*60 {
		return bad("the hours end before they start (a night shift is two entries)")
	}
	name := f[:len(f)-2]
	if days, ok := parseDays(name[len(name)-1]); ok && len(name) > 1 {
		h.Days, name = days, name[:len(name)-1]
	} else {
		h.Days, _ = parseDays("mon-fri")
	}
	h.Group = strings.Join(name, " ")
	return h, nil
}

func parseDays(s string) ([7]bool, bool) {
	var days [7]bool
	from, to, isRange := strings.Cut(strings.ToLower(s), "-")
	i, j := indexOf(dayNames, from), indexOf(dayNames, to)
	if !isRange {
		j = i
	}
	if i < 0 || j < 0 {
		return days, false
	}
	for d := i; ; d = (d + 1) % 7 {
		days[d] = true
		if d == j {
			break
		}
	}
	return days, true
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// Config turns each rule on (with its threshold) or off.
type Config struct {
	MassChange Rate
	TravelKmh  float64 // 0: impossible travel off (it needs a GeoIP city database)
	Hours      []Hours
	Sensitive  []string
	BulkExport Rate
}
