package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// apiMetrics are the figures of the API's sign-in (package auth reports
// them).
type apiMetrics struct {
	signins *prometheus.CounterVec
	refused *prometheus.CounterVec
}

// The values auth reports: every sign-in result and refusal reason is a
// series from the start, so a rate of failures is 0 rather than absent.
var (
	signinResults  = []string{"ok", "refused", "totp_required", "rate_limited", "unavailable", "bad_request"}
	refusedReasons = []string{"no_credentials", "bad_token", "expired_token", "bad_session", "csrf"}
)

func (m *Metrics) registerAPI() {
	a := &m.api
	a.signins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "api_signins_total",
		Help: "Password sign-ins to the API, by result: ok, refused (a wrong login, password or code), totp_required, rate_limited (429), unavailable (the users table could not be read), bad_request.",
	}, []string{"result"})
	a.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "api_refused_requests_total",
		Help: "API requests refused before any data was read, by reason: no_credentials, bad_token, expired_token, bad_session, csrf.",
	}, []string{"reason"})
	for _, r := range signinResults {
		a.signins.WithLabelValues(r)
	}
	for _, r := range refusedReasons {
		a.refused.WithLabelValues(r)
	}
	m.own.MustRegister(a.signins, a.refused)
}

// SignIn counts a password sign-in by its result.
func (m *Metrics) SignIn(result string) { m.api.signins.WithLabelValues(result).Inc() }

// Refused counts an API request refused, by reason.
func (m *Metrics) Refused(reason string) { m.api.refused.WithLabelValues(reason).Inc() }

// ReadPacing exposes how long readers of the trail have waited for ingest
// (readpace.Pacer.Waited).
func (m *Metrics) ReadPacing(waited func() time.Duration) {
	m.own.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Name: "reads_paced_seconds_total",
		Help: "Time readers of the trail (the HTTP API and the data-dir socket) waited, in all, while ingest was behind by more than 8 MiB of WAL.",
	}, func() float64 { return waited().Seconds() }))
}
