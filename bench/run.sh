#!/bin/sh
# bench/run.sh - run the shared benchmark harness with sluice as the gateway under test,
# beside nginx, HAProxy and Varnish on this machine (see shared/bench/README.md).
#
# Usage:
#   bench/run.sh --quick        # load scenarios, ~1.6 min
#   bench/run.sh                # load scenarios, ~3.6 min
#   bench/run.sh --cost         # per-request cost: instructions (valgrind), syscalls, CPU
#   bench/run.sh --scenarios all --out /tmp/bench-sluice   # any harness option passes through
#
# Builds sluice first (make).  The gateway runs bench/sluice-bench.yaml (2 workers); the
# valgrind runs of --cost use bench/sluice-cost.yaml (1 worker).  BENCH_HARNESS points at
# the harness's run.sh when the shared directory is not beside this repository.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=${BENCH_HARNESS:-$ROOT/../shared/bench/run.sh}

if [ ! -f "$HARNESS" ]; then
    echo "bench/run.sh: harness not found at $HARNESS; set BENCH_HARNESS=/path/to/shared/bench/run.sh" >&2
    exit 1
fi

make --no-print-directory -C "$ROOT" build/sluice
# Run a copy, so a rebuild during the (long) run cannot change what is measured.
BIN=$(mktemp "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
cp "$ROOT/build/sluice" "$BIN"
chmod 755 "$BIN"

GATEWAY_CMD="$BIN -c $ROOT/bench/sluice-bench.yaml" \
GATEWAY_COST_CMD="$BIN -c $ROOT/bench/sluice-cost.yaml" \
GATEWAY_NAME=sluice \
    exec bash "$HARNESS" "$@"
