#!/bin/sh
# run-demo.sh - what `make run` executes: sluice in the foreground with examples/demo.yaml,
# from the repository root. sluice itself starts the blog backend's instances
# (build/demo-origin on 127.0.0.1:8001-8020, 3 to 20 of them) and stops them when it exits.
# Expects build/sluice and build/demo-origin to be built (`make all`).  BUILD=build-san
# (or any build directory) runs that build's sluice.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
ORIGIN="$BUILD/demo-origin"
SLUICE="$BUILD/sluice"
CONFIG="$ROOT/examples/demo.yaml"
PIDS=""

cleanup() {
    trap - EXIT INT TERM
    for pid in $PIDS; do
        kill "$pid" 2>/dev/null
    done
    for pid in $PIDS; do
        wait "$pid" 2>/dev/null
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for bin in "$ORIGIN" "$SLUICE"; do
    if [ ! -x "$bin" ]; then
        echo "run-demo: $bin is missing; build it with: make all" >&2
        exit 1
    fi
done

cat >&2 <<MSG

sluice demo: sluice on 127.0.0.1:8080 runs the blog backend itself (3 to 20 instances of
build/demo-origin on 127.0.0.1:8001-8020, scaled on CPU as a Kubernetes HPA would).
Try, from another terminal:
  curl http://127.0.0.1:8080/api/blog/posts
  curl -i http://127.0.0.1:8080/api/blog/posts/1   # cached: X-Cache: MISS, then HIT, and Age
  curl -i http://127.0.0.1:8080/health        # X-Origin: shows which instance answered
  curl -d 'Great post!' http://127.0.0.1:8080/api/blog/customer-review
  open http://127.0.0.1:9901/                 # the status page: traffic, instances, alerts
  examples/load.sh 60 32                      # 60 s of load from 32 clients: watch the
                                              # instances grow, then shrink after it stops
  curl http://127.0.0.1:9901/api/services/blog  # the autoscaler's state and last decision
Ctrl-C stops everything.

MSG

# From the repository root: the config's command is ./build/demo-origin.
cd "$ROOT" || exit 1
# Not exec: the EXIT trap must still run when sluice ends.
"$SLUICE" -c "$CONFIG" &
SLUICE_PID=$!
PIDS="$PIDS $SLUICE_PID"
wait "$SLUICE_PID"
status=$?
exit "$status"
