package metrics

import "github.com/prometheus/client_golang/prometheus"

// eventFlags are the flags an event can carry (docs/event-format.md):
// each is a series from the start, so an alert on a rate of them reads 0
// rather than nothing on a healthy system.
var eventFlags = []string{"orm_bypass", "schema_migration", "truncate_cascade", "truncate_restart_identity", "direct_db", "cdcaudit"}

func (m *Metrics) registerFlags() {
	m.flagged = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "flagged_events_total",
		Help: "Row events durable in the store that carry a flag, by flag (an event with two flags counts under each): orm_bypass (changed outside the application), schema_migration, truncate_cascade, truncate_restart_identity, direct_db (no application user, while a database session outside the application was open), cdcaudit (made by cdcaudit ending a session). Counted as the store stores them: an event replayed after a reconnect or a crash, already stored, is not counted again.",
	}, []string{"flag"})
	for _, f := range eventFlags {
		m.flagged.WithLabelValues(f)
	}
	m.own.MustRegister(m.flagged)
}

// AddFlagged counts n stored events carrying flag.
func (m *Metrics) AddFlagged(flag string, n int) {
	if n <= 0 || flag == "" {
		return
	}
	m.flagged.WithLabelValues(flag).Add(float64(n))
}
