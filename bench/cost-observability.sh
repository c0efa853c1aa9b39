#!/bin/sh
# bench/cost-observability.sh - the harness's --cost mode on the proxy path twice: with the
# JSON access log off (bench/sluice-cost.yaml as it is) and on (the same file plus
# `access_log: FILE`, a file in $OUT), to measure what the log costs per request. Metrics
# are always on. Each run also measures nginx and HAProxy (~3.5 min each).
# Results: $OUT/log-off/cost.md, $OUT/log-on/cost.md.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=${BENCH_HARNESS:-$ROOT/../shared/bench/run.sh}
OUT=${OUT:-${TMPDIR:-/tmp}/sluice-cost-observability}
make --no-print-directory -C "$ROOT" build/sluice
mkdir -p "$OUT"
BIN="$OUT/sluice"
cp "$ROOT/build/sluice" "$BIN"
chmod 755 "$BIN"
cp "$ROOT/bench/sluice-cost.yaml" "$OUT/log-off.yaml"
sed "s|^workers: 1|workers: 1\naccess_log: $OUT/access.log|" "$ROOT/bench/sluice-cost.yaml" \
    > "$OUT/log-on.yaml"
for v in log-off log-on; do
    "$BIN" -t -c "$OUT/$v.yaml" >/dev/null
    rm -f "$OUT/access.log"
    GATEWAY_CMD="$BIN -c $OUT/$v.yaml" GATEWAY_COST_CMD="$BIN -c $OUT/$v.yaml" \
    GATEWAY_NAME="sluice-$v" bash "$HARNESS" --cost --out "$OUT/$v" > "$OUT/$v.log" 2>&1
    grep -E "^\| sluice-$v " "$OUT/$v/cost.md"
done
