#!/usr/bin/env bash
# bench/reload-soak.sh — memory across plugin reloads, under load (issue 10, item 4).
#
#   bash bench/reload-soak.sh [REPLACES] [PROFILE]      defaults: 1000 debug
#
# Runs the built pmmux (target/PROFILE/pmmux) on 127.0.0.1 with the `http-response` plugin serving
# every request, then replaces the plugin file REPLACES times (a copy renamed over it, as a
# deployment does; each waits until the new version serves) while curl clients keep requesting:
# short connections, and keep-alive connections of 40 requests each at 8 per second, so sessions of
# old versions are open across reloads. RSS is sampled right after every EVERY-th replace (default
# 100), under load: it prints the first sample (after 20 warm-up replaces), the last, the highest,
# the growth per replace, failed requests, the deleted shadow copies still mapped once the load
# stopped, and what `pmmux status` says about mapped / unmapped versions. Loopback only; stops what
# it started.
set -euo pipefail
cd "$(dirname "$0")/.."
REPLACES=${1:-1000}
PROFILE=${2:-debug}
BIN=target/$PROFILE/pmmux
LIB=target/$PROFILE/libpmmux_http_response.so
[ -x "$BIN" ] && [ -f "$LIB" ] || { echo "build first: cargo build $( [ "$PROFILE" = release ] && echo --release )" >&2; exit 1; }

DIR=$(mktemp -d /tmp/pmmux-soak.XXXXXX)
PMMUX_PID=
LOADERS=()
cleanup() {
  touch "$DIR/stop"
  for p in "${LOADERS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${LOADERS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$PMMUX_PID" ]; then kill -TERM "$PMMUX_PID" 2>/dev/null || true; wait "$PMMUX_PID" 2>/dev/null || true; fi
  [ -n "${KEEP:-}" ] || rm -rf "$DIR"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(port); ADMIN=$(port)
mkdir -p "$DIR/plugins"
cp "$LIB" "$DIR/plugins/libpmmux_http_response.so"
cat > "$DIR/pmmux.toml" <<EOF
plugin_dir = "plugins"
[reload]
quiet_period_ms = 50
rescan_interval_ms = 60000
[admin]
address = "127.0.0.1:$ADMIN"
[[listener]]
address = "127.0.0.1:$PORT"
[[backend]]
name = "web"
protocol = "http-response"
[backend.params]
body = "soak"
EOF
"$BIN" --config "$DIR/pmmux.toml" --log-level warn,pmmux::control::reload=info > "$DIR/pmmux.log" 2>&1 &
PMMUX_PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
URL="http://127.0.0.1:$PORT/"

# Load: 3 loops of short requests, 2 loops of 40-request keep-alive connections at 8 per second.
: > "$DIR/fail"; : > "$DIR/ok"
short() { while [ ! -e "$DIR/stop" ]; do
  if [ "$(curl -s --max-time 5 "$URL")" = soak ]; then echo >> "$DIR/ok"; else echo short >> "$DIR/fail"; fi; done; }
keepalive() { while [ ! -e "$DIR/stop" ]; do
  urls=(); for _ in $(seq 40); do urls+=("$URL"); done
  got=$(curl -s --max-time 20 --rate 8/s "${urls[@]}" || true)
  n=$(grep -o soak <<< "$got" | wc -l)
  for _ in $(seq "$n"); do echo >> "$DIR/ok"; done
  if [ "$n" -ne 40 ] && [ ! -e "$DIR/stop" ]; then echo "keepalive $n/40" >> "$DIR/fail"; fi; done; }
for _ in 1 2 3; do short & LOADERS+=($!); done
for _ in 1 2; do keepalive & LOADERS+=($!); done

rss() { awk '/VmRSS/ {print $2}' "/proc/$PMMUX_PID/status"; }
loads() { grep -c 'registry swapped' "$DIR/pmmux.log" || true; }
replace() {
  local before; before=$(loads)
  cp "$LIB" "$DIR/plugins/.libpmmux_http_response.so.tmp"
  mv "$DIR/plugins/.libpmmux_http_response.so.tmp" "$DIR/plugins/libpmmux_http_response.so"
  for _ in $(seq 500); do [ "$(loads)" -gt "$before" ] && return 0; sleep 0.01; done
  echo "replace not loaded within 5 s" >&2; return 1
}
status() { "$BIN" status --admin "127.0.0.1:$ADMIN" --json; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

for _ in $(seq 20); do replace; done
RSS0=$(rss); MAX=$RSS0; T0=$(date +%s)
echo "replace 0: rss $RSS0 KiB"
for i in $(seq "$REPLACES"); do
  replace
  if [ $((i % ${EVERY:-100})) -eq 0 ]; then
    R=$(rss); [ "$R" -gt "$MAX" ] && MAX=$R
    echo "replace $i: rss $R KiB, mapped $(status | field mapped_versions)"
  fi
done
RSS1=$R
T1=$(date +%s)
touch "$DIR/stop"
for p in "${LOADERS[@]}"; do wait "$p" 2>/dev/null || true; done
LOADERS=()
sleep 1
ST=$(status)
# Distinct deleted shadow copies still mapped, besides the current version's.
DELETED=$(( $(grep 'pmmux-shadow.*(deleted)' "/proc/$PMMUX_PID/maps" | awk '{print $6}' | sort -u | wc -l) - 1 ))
SHADOW_FILES=$(find /tmp -maxdepth 2 -path "*pmmux-shadow-$PMMUX_PID-*" -type f | wc -l)
OK=$(wc -l < "$DIR/ok"); FAIL=$(wc -l < "$DIR/fail")
echo "replaces:            $REPLACES in $((T1 - T0)) s (+20 warm-up), $PROFILE build, $(stat -c %s "$LIB") B library"
echo "requests:            $OK ok, $FAIL failed"
echo "rss under load:      $RSS0 KiB -> $RSS1 KiB: $(( (RSS1 - RSS0) / 1024 )) MiB growth ($(( (RSS1 - RSS0) * 1024 / REPLACES )) B per replace); highest $MAX KiB (+$(( (MAX - RSS0) / 1024 )) MiB)"
echo "rss once drained:    $(rss) KiB"
echo "old deleted shadow copies still mapped: $DELETED; shadow files on disk: $SHADOW_FILES"
echo "status:              mapped $(field mapped_versions <<< "$ST"), old $(field old_versions_mapped <<< "$ST"), unmapped $(field unmapped_versions <<< "$ST"), kept mapped $(field kept_mapped_versions <<< "$ST")"
if [ "$FAIL" -gt 0 ]; then sort "$DIR/fail" | uniq -c | head; fi
grep -iE 'panic|error' "$DIR/pmmux.log" | head -5 || true
