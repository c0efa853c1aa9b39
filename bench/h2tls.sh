#!/bin/bash
# bench/h2tls.sh - HTTP/2 over TLS: sluice beside nginx, in one run, paired rounds
# (nginx, sluice, nginx, sluice, ...), h2load on loopback.
#
#   bench/h2tls.sh                  # 5 rounds per scenario
#   ROUNDS=3 N=50000 bench/h2tls.sh
#
# Both terminate TLS 1.3 (the same self-signed P-256 certificate, ALPN h2) with 2 workers,
# pinned like shared/bench (--pin split): h2load on CPU 0, the servers and the origin on
# CPU 1. Scenarios (h2load -n N -c CONNS -m STREAMS; connections are set up once, so the
# figure is requests, not handshakes):
#   h2-static   GET a 10 KiB file (nginx: root + open_file_cache; sluice: static: route)
#   h2-proxy    GET / proxied to one nginx origin answering 1009 bytes from memory
#               (nginx: proxy_pass with upstream keepalive; sluice: a service route)
# Output: median req/s per system and the paired ratio sluice/nginx (median of per-round
# ratios), and raw.tsv in OUT.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-5}
N=${N:-200000}
CONNS=${CONNS:-8}
STREAMS=${STREAMS:-16}
CLIENT_CPUS=${CLIENT_CPUS-0}
SERVER_CPUS=${SERVER_CPUS-1}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/sluice-h2tls.XXXXXX")}
mkdir -p "$OUT"
NGINX_PORT=18443
SLUICE_PORT=18444
ADMIN_PORT=18445
ORIGIN_PORT=18446

for c in nginx h2load openssl taskset; do
    command -v "$c" >/dev/null || { echo "bench/h2tls.sh: $c is missing (apt-get install nginx nghttp2-client openssl util-linux)" >&2; exit 1; }
done
make --no-print-directory -C "$ROOT" build/sluice >/dev/null
BIN="$OUT/sluice"
cp "$ROOT/build/sluice" "$BIN"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null
mkdir -p "$OUT/www/static"
head -c 10240 /dev/urandom | base64 -w 100 | head -c 10240 > "$OUT/www/static/ten.txt"
chmod -R a+rX "$OUT"  # nginx's workers run as www-data

cat > "$OUT/nginx.conf" <<EOF
worker_processes 2;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    open_file_cache max=10000 inactive=60s;
    open_file_cache_valid 1s;
    upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT ssl http2 reuseport;
        ssl_certificate $OUT/cert.pem;
        ssl_certificate_key $OUT/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $OUT/www;
        location /static/ { }
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
cat > "$OUT/origin.conf" <<EOF
worker_processes 1;
pid $OUT/origin.pid;
error_log $OUT/origin-error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        location / { return 200 "$(head -c 1000 /dev/zero | tr '\0' 'x')origin=1\n"; }
    }
}
EOF
cat > "$OUT/sluice.yaml" <<EOF
listen:
  - address: 127.0.0.1:$SLUICE_PORT
    tls: { cert: $OUT/cert.pem, key: $OUT/key.pem }
admin: { listen: 127.0.0.1:$ADMIN_PORT }
workers: 2
services:
  origin:
    keepalive: 64
    servers: [ { address: 127.0.0.1:$ORIGIN_PORT } ]
routes:
  - match: { path_prefix: /static/ }
    static: { root: $OUT/www/static }
  - match: { path_prefix: / }
    service: origin
EOF

SPFX=(); CPFX=()
[ -n "$SERVER_CPUS" ] && SPFX=(taskset -c "$SERVER_CPUS")
[ -n "$CLIENT_CPUS" ] && CPFX=(taskset -c "$CLIENT_CPUS")

"${SPFX[@]}" nginx -c "$OUT/origin.conf" -p "$OUT" -g "daemon on;"
"${SPFX[@]}" nginx -c "$OUT/nginx.conf" -p "$OUT" -g "daemon on;"
"${SPFX[@]}" "$BIN" -c "$OUT/sluice.yaml" >"$OUT/sluice.log" 2>&1 &
SPID=$!
cleanup() {
    kill "$SPID" 2>/dev/null || true
    for p in nginx origin; do
        [ -f "$OUT/$p.pid" ] && kill "$(cat "$OUT/$p.pid")" 2>/dev/null || true
    done
}
trap cleanup EXIT
for _ in $(seq 50); do
    curl -skf -o /dev/null "https://127.0.0.1:$SLUICE_PORT/static/ten.txt" &&
        curl -skf -o /dev/null "https://127.0.0.1:$NGINX_PORT/static/ten.txt" && break
    sleep 0.1
done
for port in $NGINX_PORT $SLUICE_PORT; do   # same bytes, over h2, from both
    v=$(curl -sk --http2 -o "$OUT/check.txt" -w '%{http_version}' "https://127.0.0.1:$port/static/ten.txt")
    [ "$v" = 2 ] && cmp -s "$OUT/check.txt" "$OUT/www/static/ten.txt" ||
        { echo "port $port: not the file over h2 (version $v)" >&2; exit 1; }
    curl -sk --http2 "https://127.0.0.1:$port/" | grep -q origin=1 ||
        { echo "port $port: proxy path broken" >&2; exit 1; }
done

run_h2load() { # port path -> req/s (fails the run on any failed request)
    local out
    out=$("${CPFX[@]}" h2load -n "$N" -c "$CONNS" -m "$STREAMS" "https://127.0.0.1:$1$2")
    echo "$out" | grep -q "$N succeeded, 0 failed, 0 errored" ||
        { echo "h2load on port $1$2 had failures:" >&2; echo "$out" | tail -8 >&2; exit 1; }
    echo "$out" | grep -q "Application protocol: h2" || { echo "not h2" >&2; exit 1; }
    echo "$out" | awk '/^finished in/ {gsub(",", "", $4); print $4}'
}

printf "scenario\tround\tsystem\trps\n" > "$OUT/raw.tsv"
scenario() { # name path
    run_h2load $NGINX_PORT "$2" >/dev/null   # warm both
    run_h2load $SLUICE_PORT "$2" >/dev/null
    for r in $(seq "$ROUNDS"); do
        printf "%s\t%d\tnginx\t%s\n" "$1" "$r" "$(run_h2load $NGINX_PORT "$2")" >> "$OUT/raw.tsv"
        printf "%s\t%d\tsluice\t%s\n" "$1" "$r" "$(run_h2load $SLUICE_PORT "$2")" >> "$OUT/raw.tsv"
    done
}
scenario h2-static /static/ten.txt
scenario h2-proxy /

/usr/bin/python3 "$ROOT/bench/paired.py" "$OUT/raw.tsv"
echo "raw: $OUT/raw.tsv"
