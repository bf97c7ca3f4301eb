#!/usr/bin/env bash
# bench/unix-throughput.sh — bulk throughput over Unix-domain sockets against TCP, measured in the
# same run and printed as ratios: socat pushes BYTES from /dev/zero to a socat sink writing to
# /dev/null, directly (TCP, Unix) and through pmmux's `pass` backend (TCP->TCP, Unix->Unix,
# Unix->TCP, TCP->Unix). Every path includes the same socat client and sink, so a ratio against
# `direct` isolates what pmmux adds. Loopback and a temporary folder only; every process started
# is stopped by its PID.
#
#   bash bench/unix-throughput.sh                      release build, 3 rounds of 2 GiB per path
#   ROUNDS=5 BYTES=4294967296 bash bench/unix-throughput.sh
#   PMMUX=/tmp/other/pmmux ONLY="direct_tcp pmmux_tcp_tcp" bash bench/unix-throughput.sh
#                                                      another binary (one without Unix sockets), TCP only
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
BYTES=${BYTES:-2147483648}
if [[ -z "${PMMUX:-}" ]]; then
    (cd "$ROOT" && cargo build --release -q -p pmmux --bin pmmux)
    PMMUX=$ROOT/target/release/pmmux
fi
DIR=$(mktemp -d /tmp/pmmux-unix-bench-XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT

# A free port below 32768 (bound and released by the kernel's choice within the range).
free_port() {
    python3 -c 'import socket,random
for _ in range(200):
    p=random.randint(20000,32000); s=socket.socket()
    try: s.bind(("127.0.0.1",p)); print(p); break
    except OSError: pass
    finally: s.close()'
}

wait_for() { # path-or-port
    for _ in $(seq 200); do
        if [[ "$1" == /* ]]; then [[ -S "$1" ]] && return 0
        else (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; fi
        sleep 0.05
    done
    echo "nothing listens on $1" >&2; exit 1
}

SINK_TCP=$(free_port)
SINK_UNIX=$DIR/sink.sock
socat -u TCP-LISTEN:"$SINK_TCP",bind=127.0.0.1,reuseaddr,fork OPEN:/dev/null & PIDS+=($!)
socat -u UNIX-LISTEN:"$SINK_UNIX",fork OPEN:/dev/null & PIDS+=($!)
wait_for "$SINK_TCP"; wait_for "$SINK_UNIX"

# pmmux NAME LISTEN TARGET: one pmmux passing everything from LISTEN to TARGET.
start_pmmux() {
    mkdir -p "$DIR/$1/plugins"
    printf 'plugin_dir = "plugins"\n[[listener]]\naddress = "%s"\n[[backend]]\nname = "sink"\nprotocol = "pass"\ntarget = "%s"\n' \
        "$2" "$3" > "$DIR/$1/pmmux.toml"
    "$PMMUX" --config "$DIR/$1/pmmux.toml" --log-level warn > "$DIR/$1/log" 2>&1 & PIDS+=($!)
}
ORDER=(${ONLY:-direct_tcp direct_unix pmmux_tcp_tcp pmmux_unix_unix pmmux_unix_tcp pmmux_tcp_unix})
wants() { [[ " ${ORDER[*]} " == *" $1 "* ]]; }
P_TT=$(free_port); P_TU=$(free_port)
if wants pmmux_tcp_tcp; then start_pmmux tt "127.0.0.1:$P_TT" "127.0.0.1:$SINK_TCP"; wait_for "$P_TT"; fi
if wants pmmux_unix_unix; then start_pmmux uu "unix:$DIR/uu.sock" "unix:$SINK_UNIX"; wait_for "$DIR/uu.sock"; fi
if wants pmmux_unix_tcp; then start_pmmux ut "unix:$DIR/ut.sock" "127.0.0.1:$SINK_TCP"; wait_for "$DIR/ut.sock"; fi
if wants pmmux_tcp_unix; then start_pmmux tu "127.0.0.1:$P_TU" "unix:$SINK_UNIX"; wait_for "$P_TU"; fi

declare -A PATHS=(
    [direct_tcp]="TCP:127.0.0.1:$SINK_TCP"
    [direct_unix]="UNIX-CONNECT:$SINK_UNIX"
    [pmmux_tcp_tcp]="TCP:127.0.0.1:$P_TT"
    [pmmux_unix_unix]="UNIX-CONNECT:$DIR/uu.sock"
    [pmmux_unix_tcp]="UNIX-CONNECT:$DIR/ut.sock"
    [pmmux_tcp_unix]="TCP:127.0.0.1:$P_TU"
)
declare -A RESULTS
for round in $(seq "$ROUNDS"); do
    for name in "${ORDER[@]}"; do
        start=$(date +%s.%N)
        socat -u -b 131072 OPEN:/dev/zero,readbytes="$BYTES" "${PATHS[$name]}"
        end=$(date +%s.%N)
        gbps=$(python3 -c "print(f'{$BYTES*8/($end-$start)/1e9:.2f}')")
        RESULTS[$name]+="$gbps "
        echo "round $round $name ${gbps} Gbit/s" >&2
    done
done
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-18s %10s %10s\n' path Gbit/s ratio
for name in "${ORDER[@]}"; do
    m=$(median "${RESULTS[$name]}")
    base=$(median "${RESULTS[direct_tcp]}")
    if [[ $name == *unix_unix || $name == direct_unix ]] && wants direct_unix; then base=$(median "${RESULTS[direct_unix]}"); fi
    printf '%-18s %10s %10s\n' "$name" "$m" "$(python3 -c "print(f'{$m/$base:.2f}')")"
done
echo "ratio: against direct_tcp (direct_unix for direct_unix and pmmux_unix_unix); medians of $ROUNDS rounds of $BYTES bytes; pmmux = $PMMUX"
