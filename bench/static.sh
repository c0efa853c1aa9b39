#!/bin/bash
# bench/static.sh - static files: sluice's static: route beside nginx serving the same
# files, in one run, paired rounds (nginx, sluice, nginx, sluice, ...), on loopback.
#
#   bench/static.sh                 # 5 rounds x 3 s per scenario
#   ROUNDS=3 DUR=2 bench/static.sh  # shorter
#
# Scenarios (wrk, CONNS connections, keep-alive):
#   static-10k       GET a 10 KiB file, no Accept-Encoding (identity; nginx: sendfile,
#                    open_file_cache with open_file_cache_valid 1s)
#   static-10k-gzip  the same file with Accept-Encoding: gzip and no sibling (nginx: gzip
#                    on, level 5, compresses every request; sluice compresses on the
#                    thread pool once and keeps the result for file_cache_valid)
#   static-10k-gz    the same with a precompressed .gz sibling (nginx: gzip_static on)
# Both servers run 2 workers, pinned like shared/bench (--pin split): wrk on CPU 0,
# servers on CPU 1. Output: a table of median req/s and the paired ratio sluice/nginx
# per scenario (the median of the per-round ratios), and raw.tsv in OUT.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-5}
DUR=${DUR:-3}
CONNS=${CONNS:-64}
CLIENT_CPUS=${CLIENT_CPUS-0}
SERVER_CPUS=${SERVER_CPUS-1}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/sluice-static.XXXXXX")}
mkdir -p "$OUT"
NGINX_PORT=18180
SLUICE_PORT=18170
ADMIN_PORT=18171

for c in nginx wrk taskset; do
    command -v "$c" >/dev/null || { echo "bench/static.sh: $c is missing (apt-get install nginx wrk util-linux)" >&2; exit 1; }
done
make --no-print-directory -C "$ROOT" build/sluice >/dev/null
BIN="$OUT/sluice"
cp "$ROOT/build/sluice" "$BIN"

# The files: one 10 KiB text file (compressible, like CSS/JS) and its .gz sibling,
# and a copy without a sibling for the on-the-fly scenario.
mkdir -p "$OUT/www/static"
/usr/bin/python3 - "$OUT/www/static" <<'EOF'
import sys, random
random.seed(7)
words = ["margin", "padding", "color", "display", "flex", "grid", "none", "auto", "0",
         "1px", "solid", "#333", "border", "font-size", "14px", "line-height", "1.5"]
text = ""
while len(text) < 10240:
    text += ".c%d { %s: %s; %s: %s; }\n" % (random.randrange(1000), random.choice(words),
            random.choice(words), random.choice(words), random.choice(words))
text = text[:10240]
open(sys.argv[1] + "/ten.css", "w").write(text)
open(sys.argv[1] + "/fly.css", "w").write(text)
EOF
gzip -9 -k -f "$OUT/www/static/ten.css"
touch -r "$OUT/www/static/ten.css" "$OUT/www/static/ten.css.gz"  # not older than its file
chmod -R a+rX "$OUT"  # nginx's workers run as www-data

cat > "$OUT/nginx.conf" <<EOF
worker_processes 2;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log error;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    # nginx as tuned for static serving: descriptors and stat results kept for 1 s, the
    # counterpart of sluice's file_cache_valid (nginx's default is no cache at all).
    open_file_cache max=10000 inactive=60s;
    open_file_cache_valid 1s;
    open_file_cache_errors on;
    server {
        listen 127.0.0.1:$NGINX_PORT reuseport;
        root $OUT/www;
        location /static/ {
            gzip on; gzip_comp_level 5; gzip_min_length 1024; gzip_types text/css;
            gzip_vary on;
        }
        location = /static/ten.css { gzip off; gzip_static on; gzip_vary on; }
    }
}
EOF
cat > "$OUT/sluice.yaml" <<EOF
listen: [127.0.0.1:$SLUICE_PORT]
admin: { listen: 127.0.0.1:$ADMIN_PORT }
workers: 2
routes:
  - match: { path_prefix: /static/ }
    static: { root: $OUT/www/static, compress: [gzip] }
EOF

SPFX=(); CPFX=()
[ -n "$SERVER_CPUS" ] && SPFX=(taskset -c "$SERVER_CPUS")
[ -n "$CLIENT_CPUS" ] && CPFX=(taskset -c "$CLIENT_CPUS")
WRK_THREADS=1

"${SPFX[@]}" nginx -c "$OUT/nginx.conf" -p "$OUT" -g "daemon on;"
"${SPFX[@]}" "$BIN" -c "$OUT/sluice.yaml" >"$OUT/sluice.log" 2>&1 &
SPID=$!
cleanup() {
    kill "$SPID" 2>/dev/null || true
    [ -f "$OUT/nginx.pid" ] && kill "$(cat "$OUT/nginx.pid")" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 50); do
    curl -sf -o /dev/null "http://127.0.0.1:$SLUICE_PORT/static/ten.css" &&
        curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/static/ten.css" && break
    sleep 0.1
done

# Same bytes from both? (identity, on-the-fly gzip decodes to the file, .gz sibling)
for port in $NGINX_PORT $SLUICE_PORT; do
    curl -s "http://127.0.0.1:$port/static/ten.css" | cmp -s - "$OUT/www/static/ten.css" ||
        { echo "port $port: identity body differs" >&2; exit 1; }
    curl -s -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/static/fly.css" | gzip -dc |
        cmp -s - "$OUT/www/static/fly.css" || { echo "port $port: gzip body differs" >&2; exit 1; }
    curl -s -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/static/ten.css" |
        cmp -s - "$OUT/www/static/ten.css.gz" || { echo "port $port: .gz sibling not served" >&2; exit 1; }
done

run_wrk() { # port path header -> req/s
    local hdr=()
    [ -n "$3" ] && hdr=(-H "$3")
    "${CPFX[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DUR}s" "${hdr[@]}" \
        "http://127.0.0.1:$1$2" | awk '/Requests\/sec/ {print $2}'
}

printf "scenario\tround\tsystem\trps\n" > "$OUT/raw.tsv"
scenario() { # name path header
    run_wrk $NGINX_PORT "$2" "$3" >/dev/null   # warm both
    run_wrk $SLUICE_PORT "$2" "$3" >/dev/null
    for r in $(seq "$ROUNDS"); do
        printf "%s\t%d\tnginx\t%s\n" "$1" "$r" "$(run_wrk $NGINX_PORT "$2" "$3")" >> "$OUT/raw.tsv"
        printf "%s\t%d\tsluice\t%s\n" "$1" "$r" "$(run_wrk $SLUICE_PORT "$2" "$3")" >> "$OUT/raw.tsv"
    done
}
scenario static-10k /static/ten.css ""
scenario static-10k-gzip /static/fly.css "Accept-Encoding: gzip"
scenario static-10k-gz /static/ten.css "Accept-Encoding: gzip"

/usr/bin/python3 "$ROOT/bench/paired.py" "$OUT/raw.tsv"
echo "raw: $OUT/raw.tsv"
