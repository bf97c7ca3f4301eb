#!/usr/bin/env bash
# bench/close-cpu.sh — CPU time per new connection, pmmux against HAProxy in the same run.
#
#   bash bench/close-cpu.sh [ROUNDS] [BINARY...]     default: 4 rounds, target/release/pmmux
#
# The anchor benchmark's `close` test (wrk -t2 -c50, `Connection: close`, nginx tiny file) with the
# relay and nginx pinned to CPU 1 and wrk to CPU 0, as in ../shared/bench/anchors.sh. Besides req/s
# it reads each relay's own CPU time (utime + stime from /proc/PID/stat, kernel work done in its
# system calls included) and divides by the requests served: a figure that moves far less than
# req/s on a shared machine, so two builds (or pmmux and HAProxy) compare within a few per cent.
# Rounds interleave the relays; medians are printed at the end, with each one's ratio to HAProxy.
#
# Each BINARY runs the anchor chain (ssh, tls, http, then pass) on a generated config with this
# workspace's release plugins; "haproxy" in the list runs HAProxy with the anchor script's payload
# ACLs. Ports: 29080 (nginx) and 29081 (the relay) on 127.0.0.1. Every process is started in its
# own session and stopped by its process group; each wrk run is bounded by `timeout`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-4}
shift || true
BINS=("$@")
if [ ${#BINS[@]} -eq 0 ]; then
    (cd "$ROOT" && cargo build --release -p pmmux -p pmmux-plugin-ssh -p pmmux-plugin-tls -p pmmux-plugin-http >&2)
    BINS=(haproxy "$ROOT/target/release/pmmux")
fi
for tool in nginx wrk curl haproxy taskset; do
    command -v "$tool" >/dev/null || { echo "close-cpu: $tool not installed" >&2; exit 2; }
done

W=$(mktemp -d /tmp/pmmux-close-cpu.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/www" "$W/tmp" "$W/plugins"
cp "$ROOT"/target/release/libpmmux_{ssh,tls,http}.so "$W/plugins/"
printf 'hello from nginx\n' >"$W/www/tiny.txt"
cat >"$W/nginx.conf" <<EOC
worker_processes 1; master_process off; daemon off; pid $W/nginx.pid; error_log $W/error.log warn;
events { worker_connections 8192; use epoll; }
http { access_log off; sendfile on; tcp_nopush on; tcp_nodelay on; keepalive_timeout 60s;
  client_body_temp_path $W/tmp; proxy_temp_path $W/tmp; fastcgi_temp_path $W/tmp;
  uwsgi_temp_path $W/tmp; scgi_temp_path $W/tmp;
  server { listen 127.0.0.1:29080 backlog=4096; root $W/www; } }
EOC
cat >"$W/pmmux.toml" <<EOC
plugin_dir = "$W/plugins"
[[listener]]
address = "127.0.0.1:29081"
[routing]
drain_timeout_ms = 500
[[backend]]
name = "ssh"
protocol = "ssh"
target = "127.0.0.1:29080"
[[backend]]
name = "tls"
protocol = "tls"
target = "127.0.0.1:29080"
[[backend]]
name = "http"
protocol = "http"
target = "127.0.0.1:29080"
[[backend]]
name = "any"
protocol = "pass"
target = "127.0.0.1:29080"
EOC
cat >"$W/haproxy.cfg" <<EOC
global
    nbthread 1
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend mux
    bind 127.0.0.1:29081
    tcp-request inspect-delay 2s
    acl is_ssh  req.payload(0,4) -m bin 5353482d
    acl is_tls  req.ssl_hello_type 1
    acl is_http req.payload(0,4) -m bin 47455420 504f5354 48454144 50555420 4f505449
    tcp-request content accept if is_ssh or is_tls or is_http
    tcp-request content accept if { req.len ge 4 }
    use_backend be_ssh  if is_ssh
    use_backend be_tls  if is_tls
    use_backend be_http if is_http
    default_backend be_any
backend be_ssh
    server s 127.0.0.1:29080
backend be_tls
    server s 127.0.0.1:29080
backend be_http
    server s 127.0.0.1:29080
backend be_any
    server s 127.0.0.1:29080
EOC

setsid taskset -c 1 nginx -p "$W" -c "$W/nginx.conf" -e "$W/error.log" & PIDS+=($!)
TCK=$(getconf CLK_TCK)
: >"$W/results.tsv"
for round in $(seq 1 "$ROUNDS"); do
    for bin in "${BINS[@]}"; do
        if [ "$bin" = haproxy ]; then
            setsid taskset -c 1 haproxy -db -f "$W/haproxy.cfg" >"$W/relay.log" 2>&1 & relay=$!
        else
            setsid taskset -c 1 "$bin" --config "$W/pmmux.toml" >"$W/relay.log" 2>&1 & relay=$!
        fi
        up=
        for _ in $(seq 1 100); do
            if curl -sf --max-time 2 http://127.0.0.1:29081/tiny.txt | grep -q 'hello from nginx'; then up=1; break; fi
            sleep 0.1
        done
        [ -n "$up" ] || { echo "close-cpu: $bin did not answer: $(tail -c 400 "$W/relay.log")" >&2; exit 1; }
        before=$(awk '{print $14 + $15}' "/proc/$relay/stat")
        out=$(timeout 30 taskset -c 0 wrk -t2 -c50 -d5s -H 'Connection: close' http://127.0.0.1:29081/tiny.txt)
        after=$(awk '{print $14 + $15}' "/proc/$relay/stat")
        kill -TERM -- "-$relay" 2>/dev/null || true
        wait "$relay" 2>/dev/null || true
        requests=$(awk '/requests in/ {print $1}' <<<"$out")
        rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
        us=$(awk -v a="$after" -v b="$before" -v t="$TCK" -v n="$requests" 'BEGIN {printf "%.1f", (a - b) / t * 1e6 / n}')
        name=$(basename "$bin")
        printf '%s\t%s\t%s\t%s\n' "$round" "$name" "$rps" "$us" | tee -a "$W/results.tsv"
        sleep 1
    done
done
echo
python3 - "$W/results.tsv" <<'EOP'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    _, name, rps, us = line.split("\t")
    rows[name].append((float(rps), float(us)))
base = rows.get("haproxy")
print("%-22s %10s %12s %14s %16s" % ("relay", "req/s", "CPU us/req", "req/s / HAProxy", "CPU / HAProxy"))
for name, v in rows.items():
    rps = statistics.median(r for r, _ in v)
    us = statistics.median(u for _, u in v)
    if base:
        brps = statistics.median(r for r, _ in base)
        bus = statistics.median(u for _, u in base)
        print("%-22s %10.0f %12.1f %14.2fx %15.2fx" % (name, rps, us, rps / brps, us / bus))
    else:
        print("%-22s %10.0f %12.1f" % (name, rps, us))
EOP
