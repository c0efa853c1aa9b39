#!/bin/sh
# run-demo.sh - what `make run` executes: three demo origins on 127.0.0.1:8001-8003 in the
# background, then sluice in the foreground with examples/demo.yaml.  Ctrl-C (or SIGTERM)
# stops sluice, and the origins this script started are stopped by their PIDs on exit.
# Expects build/sluice and build/demo-origin to be built (`make all`).  BUILD=build-san
# (or any build directory) runs that build instead.
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

for port in 8001 8002 8003; do
    "$ORIGIN" --port "$port" --name "blog-$port" &
    PIDS="$PIDS $!"
done

cat >&2 <<MSG

sluice demo: three blog origins on 127.0.0.1:8001-8003, sluice on 127.0.0.1:8080.
Try, from another terminal:
  curl http://127.0.0.1:8080/api/blog/posts
  curl http://127.0.0.1:8080/api/blog/posts/2
  curl -i http://127.0.0.1:8080/health        # X-Origin: shows which origin answered
  curl -d 'Great post!' http://127.0.0.1:8080/api/blog/customer-review
  curl http://127.0.0.1:9901/metrics          # Prometheus metrics of the gateway
Ctrl-C stops everything.

MSG

# Not exec: the EXIT trap must still run to stop the origins when sluice ends.
"$SLUICE" -c "$CONFIG" &
SLUICE_PID=$!
PIDS="$PIDS $SLUICE_PID"
wait "$SLUICE_PID"
status=$?
exit "$status"
