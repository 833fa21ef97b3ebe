package metrics

import (
	"cmp"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// SessionBreakdownTop is how many values of each session dimension
// (browser, OS, device, country) get a series of their own: the open
// sessions of the others are summed under "other", those whose value is
// not known under "unknown" (a series always present, 0 without
// sessions). So each of these gauges has at most SessionBreakdownTop+2
// series, whatever the users' devices.
const SessionBreakdownTop = 10

// Label values of the session breakdown that are no browser, OS, device
// or country.
const (
	breakdownUnknown = "unknown"
	breakdownOther   = "other"
)

// SessionDetailFrom makes the sessions' counter and breakdown read f when
// they are scraped (f must be safe for concurrent use; before it is set
// they read 0): sessions started since this process started, and the open
// sessions by browser, OS, device and country ("" for not known).
func (m *Metrics) SessionDetailFrom(f func() (started uint64, browser, os, device, country map[string]int)) {
	m.sessionDetail.from.Store(&f)
}

// sessionDetailCollector reads the session tracker once per scrape.
type sessionDetailCollector struct {
	started *prometheus.Desc
	by      [4]*prometheus.Desc // browser, os, device, country
	from    atomic.Pointer[func() (uint64, map[string]int, map[string]int, map[string]int, map[string]int)]
}

func newSessionDetailCollector() *sessionDetailCollector {
	c := &sessionDetailCollector{
		started: prometheus.NewDesc(namespace+"_sessions_started_total",
			"Application login sessions the stream opened since cdcaudit started (each login once; those restored from the store at start are not counted).", nil, nil),
	}
	for i, d := range []string{"browser", "os", "device", "country"} {
		c.by[i] = prometheus.NewDesc(namespace+"_sessions_open_by_"+d,
			"Application login sessions open now, by "+d+" as the session shows it: the 10 most frequent values, the others summed as \"other\", \"unknown\" where it is not known.",
			[]string{d}, nil)
	}
	return c
}

func (c *sessionDetailCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.started
	for _, d := range c.by {
		ch <- d
	}
}

func (c *sessionDetailCollector) Collect(ch chan<- prometheus.Metric) {
	var started uint64
	var by [4]map[string]int
	if f := c.from.Load(); f != nil {
		started, by[0], by[1], by[2], by[3] = (*f)()
	}
	ch <- prometheus.MustNewConstMetric(c.started, prometheus.CounterValue, float64(started))
	for i, d := range c.by {
		for v, n := range breakdown(by[i], SessionBreakdownTop) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(n), v)
		}
	}
}

// breakdown keeps the top most frequent values of counts (ties: by
// name), sums the rest under "other" and the empty value (and a value
// spelled like one of those two) under "unknown", which is always there.
func breakdown(counts map[string]int, top int) map[string]int {
	out := map[string]int{breakdownUnknown: 0}
	type kv struct {
		v string
		n int
	}
	var vals []kv
	for v, n := range counts {
		if n <= 0 {
			continue
		}
		if v == "" || v == breakdownUnknown || v == breakdownOther {
			out[breakdownUnknown] += n
			continue
		}
		vals = append(vals, kv{v, n})
	}
	slices.SortFunc(vals, func(a, b kv) int {
		if c := cmp.Compare(b.n, a.n); c != 0 {
			return c
		}
		return cmp.Compare(a.v, b.v)
	})
	for i, x := range vals {
		if i < top {
			out[x.v] = x.n
		} else {
			out[breakdownOther] += x.n
		}
	}
	return out
}
