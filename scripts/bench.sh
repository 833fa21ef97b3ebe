#!/usr/bin/env bash
# Drain the same backlog of changes through pg_recvlogical (pgoutput → /dev/null)
# and through cdcaudit (into its store) on one throwaway server, and compare
# rates and CPU per change (each consumer and its walsender, read from /proc:
# run as root to read the server's processes); medians over --runs.
# Usage: scripts/bench.sh [--rows 500000] [--tx-rows 1000] [--runs 3] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
go build -o bin/cdcaudit ./cmd/cdcaudit
exec go run ./internal/bench --cdcaudit bin/cdcaudit "$@"
