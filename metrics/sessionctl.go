package metrics

import "github.com/prometheus/client_golang/prometheus"

// terminationReasons are why cdcaudit ends a session: asked (the command
// line, the socket, the admin API) or a policy (sessionctl's names).
var terminationReasons = []string{"request", "idle_timeout", "max_age", "one_session"}

// terminationResults are sessionctl's results of an action.
var terminationResults = []string{"ok", "not_found", "failed", "dry_run"}

func (m *Metrics) registerSessionctl() {
	m.terminated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "sessions_terminated_total",
		Help: "Sessions cdcaudit ended (session control), by reason (request, or the policy: idle_timeout, max_age, one_session) and result (ok, not_found, failed, dry_run).",
	}, []string{"reason", "result"})
	// Every pair at 0 from the start: a panel of terminations reads 0, not
	// "No data", on a system where none happened.
	for _, r := range terminationReasons {
		for _, res := range terminationResults {
			m.terminated.WithLabelValues(r, res)
		}
	}
	m.own.MustRegister(m.terminated)
}

// SessionTerminated counts one action on a session: its reason (a policy
// name, or "" when asked) and its result.
func (m *Metrics) SessionTerminated(reason, result string) {
	if reason == "" {
		reason = "request"
	}
	m.terminated.WithLabelValues(reason, result).Inc()
}
