#!/bin/sh
# load.sh [SECONDS [CLIENTS [URL]]] - simple load for the demo: CLIENTS curl loops, each
# sending requests back to back on one connection for SECONDS (defaults 60, 32, the blog's
# posts). Uses only curl. Prints the number of requests and non-2xx answers at the end.
set -u
SECS=${1:-60}
CLIENTS=${2:-32}
URL=${3:-http://127.0.0.1:8080/api/blog/posts}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
END=$(( $(date +%s) + SECS ))
i=0
while [ "$i" -lt "$CLIENTS" ]; do
    (
        n=0
        while [ "$(date +%s)" -lt "$END" ]; do
            # 50 requests on one keep-alive connection per curl run
            # shellcheck disable=SC2046 # the word splitting is the point
            curl -s -w '%{http_code}\n' $(k=0; while [ $k -lt 50 ]; do
                printf -- '-o /dev/null %s ' "$URL"; k=$((k + 1)); done) >> "$TMP/codes.$i"
        done
    ) &
    i=$((i + 1))
done
wait
cat "$TMP"/codes.* | awk '{ n++; if ($1 !~ /^2/) bad++ } END { printf "%d requests, %d not 2xx\n", n, bad + 0 }'
