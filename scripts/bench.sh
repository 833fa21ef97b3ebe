#!/usr/bin/env bash
# Drain the same backlog of changes through pg_recvlogical (pgoutput → /dev/null)
# and through cdcaudit (into its store) on one throwaway server, and compare
# rates and CPU per change (each consumer and its walsender, read from /proc:
# run as root to read the server's processes); medians over --runs. Also the
# WAL and ingest cost of REPLICA IDENTITY DEFAULT against FULL, and (with
# --snapshot-rows) the initial snapshot against COPY; --pgbench: pgbench's tps
# with cdcaudit streaming beside it against with pg_recvlogical; --big-tx N:
# cdcaudit's peak RSS through one transaction of N rows; --sinks: cdcaudit
# with both sinks on (a second local PostgreSQL as the audit database,
# kfake as the Kafka broker) against without, and the sizing figures
# (docs/sizing.md). See README.md.
# Usage: scripts/bench.sh [--rows 500000] [--tx-rows 1000] [--runs 3]
#   [--identity full|default|both] [--pgbench-tx 10000] [--snapshot-rows N]
#   [--pgbench [--pgbench-seconds 30] [--pgbench-clients 2] [--pgbench-scale 10]]
#   [--big-tx N] [--json FILE] [--keep]
#   [--sinks [--kafka-partitions 1]]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
go build -o bin/cdcaudit ./cmd/cdcaudit
go build -o bin/kfakeserver ./internal/bench/kfakeserver
exec go run ./internal/bench --cdcaudit bin/cdcaudit --kfake bin/kfakeserver "$@"
