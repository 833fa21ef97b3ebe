package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSessionsTerminated(t *testing.T) {
	m, _ := newTest()
	m.SessionTerminated("", "ok")
	m.SessionTerminated("", "ok")
	m.SessionTerminated("idle_timeout", "failed")
	var want strings.Builder
	want.WriteString("# HELP cdcaudit_sessions_terminated_total Sessions cdcaudit ended (session control), by reason (request, or the policy: idle_timeout, max_age, one_session) and result (ok, not_found, failed, dry_run).\n# TYPE cdcaudit_sessions_terminated_total counter\n")
	for _, r := range []string{"idle_timeout", "max_age", "one_session", "request"} {
		for _, res := range []string{"dry_run", "failed", "not_found", "ok"} {
			v := "0"
			if r == "request" && res == "ok" {
				v = "2"
			} else if r == "idle_timeout" && res == "failed" {
				v = "1"
			}
			want.WriteString(`cdcaudit_sessions_terminated_total{reason="` + r + `",result="` + res + `"} ` + v + "\n")
		}
	}
	if err := testutil.GatherAndCompare(m.reg, strings.NewReader(want.String()), "cdcaudit_sessions_terminated_total"); err != nil {
		t.Fatal(err)
	}
}
