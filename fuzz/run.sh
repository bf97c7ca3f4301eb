#!/usr/bin/env bash
# fuzz/run.sh SECONDS [TARGET...]: builds the cargo-fuzz targets and runs each (all of them, or the
# ones named) for SECONDS of libFuzzer, one after the other, from the seed corpora (fuzz/seeds.sh).
# Prints one line per target with its executions, and exits non-zero if any target crashed,
# leaking the reproducer under fuzz/artifacts/<target>/.
#
# Toolchain: cargo-fuzz wants nightly (it passes -Z flags). Nightly is used when rustup has it (or
# can install it); otherwise stable with RUSTC_BOOTSTRAP=1, which turns the same flags on and gives
# the same SanitizerCoverage guidance. cargo-fuzz itself is installed from crates.io when missing.
# With neither a way to get cargo-fuzz nor a C++ compiler for libFuzzer, it prints why and skips.
#
# Environment: PMMUX_FUZZ_SANITIZER (default `none`: the parsers are safe Rust, where AddressSanitizer
# finds nothing that a panic would not, at half the speed; `address` to use it), PMMUX_FUZZ_NICE
# (default 19), PMMUX_FUZZ_ARGS (more libFuzzer flags).
set -uo pipefail
cd "$(dirname "$0")"

secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift

skip() {
  echo "fuzz: skipped: $*"
  exit 0
}

command -v c++ >/dev/null 2>&1 || skip "no C++ compiler to build libFuzzer (apt-get install g++)"

toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly' ||
  rustup toolchain install nightly --profile minimal >/dev/null 2>&1; then
  toolchain=(+nightly)
  echo "fuzz: toolchain nightly ($(rustc +nightly --version))"
else
  export RUSTC_BOOTSTRAP=1
  echo "fuzz: no nightly toolchain could be had; stable with RUSTC_BOOTSTRAP=1 ($(rustc --version))"
fi

if ! cargo "${toolchain[@]}" fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked >/tmp/pmmux-cargo-fuzz-install.log 2>&1 ||
    skip "cargo-fuzz could not be installed (see /tmp/pmmux-cargo-fuzz-install.log)"
fi

./seeds.sh

sanitizer=${PMMUX_FUZZ_SANITIZER:-none}
nice_level=${PMMUX_FUZZ_NICE:-19}
build=(cargo "${toolchain[@]}" fuzz build --sanitizer "$sanitizer" --debug-assertions)
echo "fuzz: ${build[*]}"
if ! nice -n "$nice_level" "${build[@]}"; then
  echo "fuzz: build failed"
  exit 1
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi

mkdir -p logs
failed=()
for target in "${targets[@]}"; do
  log="logs/$target.log"
  started=$(date +%s)
  # -timeout: an input that takes 10 s is a hang (nothing from a client may hang the host);
  # -rss_limit_mb: a memory blow-up is a crash too.
  # shellcheck disable=SC2086
  nice -n "$nice_level" cargo "${toolchain[@]}" fuzz run --sanitizer "$sanitizer" --debug-assertions \
    "$target" -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    ${PMMUX_FUZZ_ARGS:-} >"$log" 2>&1
  status=$?
  took=$(($(date +%s) - started))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  if [ "$status" -eq 0 ]; then
    echo "fuzz: $target: ${execs:-?} execs in ${took} s, ${cov:-cov: ?}, no crash"
  else
    failed+=("$target")
    echo "fuzz: $target: CRASH after ${execs:-?} execs (exit $status); last lines of $log:"
    grep -E 'panicked|ERROR|SUMMARY|Test unit written|artifact_prefix' "$log" | head -n 8
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: crashed: ${failed[*]} (inputs under fuzz/artifacts/)"
fi
# The closing line in the form test runners use: targets that ran without a crash, and crashed ones.
echo "fuzz: $((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
[ "${#failed[@]}" -eq 0 ]
