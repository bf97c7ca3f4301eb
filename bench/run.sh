#!/usr/bin/env bash
# bench/run.sh — builds the release binaries (pmmux, the plugins, pmmux-bench) and runs the
# benchmark with its defaults: pmmux versus a direct connection, loopback only, measured in the
# same run, printed as ratios, written as TSV (default /tmp/pmmux-bench.tsv).
#
#   bash bench/run.sh [pmmux-bench options]       e.g.  bash bench/run.sh --rounds 7 --rate-secs 5
#   PIN=0,1 bash bench/run.sh                       clients on CPU 0, pmmux + upstreams on CPU 1
#
# Default run: about 3 minutes plus the build (5 rounds; bulk 2 GiB or 5 s per stream, connection rate
# 3 s per run, reload 50 timed replaces + 3 x (5 s steady + 5 s reloading), udp 1 s per way
# (direct, pmmux, pmmux dns-first, socat) x 1 and 16 clients + 100,000 echo flows + 15,000
# forwarded flows, memory 10,000 connections per case; detect ~15 s in-process, every plugin built
# here). The binary stops itself (and pmmux) after
# --max-secs (600 by default).
# `target/release/pmmux-bench --help` lists every knob.
#
#   bash bench/run.sh --tests reload                          the hot-reload test alone (~1 min)
#   bash bench/run.sh --tests udp                             UDP round trips + memory per flow (~50 s)
#   bash bench/run.sh --tests detect                          detection ns per plugin and per decision (~15 s)
#   bash bench/run.sh --tests reload --reload-how rename,cp   time both ways of replacing the file
#
# Open files: the memory test's routed case holds 10,000 connections, so the bench process (client
# sockets + the sink's sockets) and pmmux (client side + upstream side) each need
# 2 x 10,000 + 300 descriptors:  ulimit -n 20300  (needs a hard limit that high; `ulimit -Hn`
# can only be raised by root with CAP_SYS_RESOURCE). This script raises the soft limit to the
# hard limit; when that is still short, the binary scales the connection count down and says so.
#
# CPU pinning is optional: PIN=CLIENT,SERVER (or --pin CLIENT,SERVER) pins the client threads to
# CLIENT and pmmux plus the upstream servers to SERVER, with sched_setaffinity (what `taskset`
# does). Without it the kernel schedules everything on every CPU. Running the whole command under
# `taskset -c 0,1` restricts all of it to those CPUs as well.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

plugins=() pkg_args=()
for manifest in plugins/*/Cargo.toml; do
    name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -1)
    plugins+=("$name")
    pkg_args+=(-p "$name")
done

echo "bench/run.sh: building release: pmmux pmmux-bench ${plugins[*]}" >&2
if ! cargo build --release -p pmmux -p pmmux-bench "${pkg_args[@]}"; then
    # A plugin that does not build only removes its detector from the chain.
    cargo build --release -p pmmux -p pmmux-bench
    for p in "${plugins[@]}"; do
        cargo build --release -p "$p" || echo "bench/run.sh: WARNING: plugin $p does not build; benchmarking without it" >&2
    done
fi

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

# The reload test's plugin: tests/fixtures/versioned (its own workspace) built in release twice, as
# versions 1 and 2, into $TARGET_DIR/bench-fixtures; each build is copied under its version's name
# before the next one overwrites it. Only the fixture itself recompiles when the version changes.
FIXTURES=$TARGET_DIR/bench-fixtures
fixture_args=()
echo "bench/run.sh: building the versioned fixture (release, v1 and v2) into $FIXTURES" >&2
for v in 1 2; do
    if PMMUX_FIXTURE_VERSION=$v cargo build --release --quiet \
        --manifest-path tests/fixtures/versioned/Cargo.toml --target-dir "$FIXTURES" &&
        cp "$FIXTURES/release/libfixture_versioned.so" "$FIXTURES/libfixture_versioned_v$v.so"; then
        fixture_args+=(--versioned-v$v "$FIXTURES/libfixture_versioned_v$v.so")
    else
        echo "bench/run.sh: WARNING: the versioned fixture v$v does not build; the reload test is skipped" >&2
        # No stale copy from an earlier run either: the binary notes the missing files and goes on.
        rm -f "$FIXTURES"/libfixture_versioned_v[12].so
        fixture_args=()
        break
    fi
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "bench/run.sh: open-file limit $(ulimit -n) (hard $(ulimit -Hn))" >&2

exec "$TARGET_DIR/release/pmmux-bench" ${PIN:+--pin "$PIN"} ${fixture_args[@]+"${fixture_args[@]}"} "$@"
