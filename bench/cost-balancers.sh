#!/bin/sh
# bench/cost-balancers.sh - the harness's --cost mode once per balancer (and once with
# active health checks on), to compare instructions per proxied request. Each run also
# measures nginx and HAProxy (~3.5 min each). Results: $OUT/<variant>/cost.md.
#   bench/cost-balancers.sh                 # round_robin least_conn random_two hash health
#   VARIANTS="least_conn" bench/cost-balancers.sh
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=${BENCH_HARNESS:-$ROOT/../shared/bench/run.sh}
OUT=${OUT:-${TMPDIR:-/tmp}/sluice-cost-balancers}
VARIANTS=${VARIANTS:-"round_robin least_conn random_two hash health"}
make --no-print-directory -C "$ROOT" build/sluice
mkdir -p "$OUT"
# One binary for every variant, whatever is rebuilt meanwhile.
BIN="$OUT/sluice"
cp "$ROOT/build/sluice" "$BIN"
for v in $VARIANTS; do
    cfg="$OUT/sluice-cost-$v.yaml"
    case "$v" in
    health) # round robin, with checks every second on the origins ("/" answers 200)
        sed 's/^    balance: round_robin.*$/    balance: round_robin\n    health_check: { path: \/, interval: 1s, timeout: 1s, fails: 3, passes: 1 }/' \
            "$ROOT/bench/sluice-cost.yaml" > "$cfg" ;;
    *)
        sed "s/^    balance: round_robin.*\$/    balance: $v/" "$ROOT/bench/sluice-cost.yaml" > "$cfg" ;;
    esac
    "$BIN" -t -c "$cfg" >/dev/null
    GATEWAY_CMD="$BIN -c $cfg" GATEWAY_COST_CMD="$BIN -c $cfg" \
    GATEWAY_NAME="sluice-$v" bash "$HARNESS" --cost --out "$OUT/$v" > "$OUT/$v.log" 2>&1
    grep -E "^\| sluice-$v " "$OUT/$v/cost.md"
done
