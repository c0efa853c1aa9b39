#!/bin/sh
# bench/run-redis.sh - the harness's load scenarios proxy and ratelimit-pass with the rate
# limits shared through a redis-server this script starts on 127.0.0.1:16379 (and stops).
#   bench/run-redis.sh --quick
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=${BENCH_HARNESS:-$ROOT/../shared/bench/run.sh}
make --no-print-directory -C "$ROOT" build/sluice
BIN=$(mktemp "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
cp "$ROOT/build/sluice" "$BIN"
chmod 755 "$BIN"
redis-server --port 16379 --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
RPID=$!
trap 'kill $RPID 2>/dev/null; rm -f "$BIN"' EXIT INT TERM
sleep 0.5
GATEWAY_CMD="$BIN -c $ROOT/bench/sluice-bench-redis.yaml" GATEWAY_NAME=sluice-redis \
    bash "$HARNESS" --scenarios "proxy ratelimit-pass" "$@"
