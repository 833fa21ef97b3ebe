// Package deploytest tests what deploy/ and docker-compose.yml ship, with
// the real tools rather than by reading them:
//
//   - the alerting rules with `promtool test rules` and `promtool check`
//     (Debian's prometheus package, installed with apt-get when missing, as
//     internal/localpg installs PostgreSQL: where it cannot be, the tests
//     skip with the exact command, except under CI=true, where they fail);
//   - every Grafana panel's PromQL with Prometheus's own parser, each
//     metric it reads found in the /metrics of a cdcaudit daemon the test
//     starts against a real PostgreSQL;
//   - docker-compose.yml loaded and validated by compose-go (the library of
//     `docker compose config`), which cannot run here.
//
// Tests only: nothing the binary runs imports it.
package deploytest
