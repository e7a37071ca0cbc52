#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer), on the installed stable toolchain: `--sanitizer
# none` needs no nightly flag (Rust's own checks, debug assertions included, still catch
# overflows and out-of-bounds reads; a crash is a panic or an abort).
#
#   scripts/fuzz.sh                       # every target for FUZZ_SECONDS (CI's smoke run)
#   FUZZ_RUNS=2000000 scripts/fuzz.sh     # every target for that many executions
#   scripts/fuzz.sh params email          # only these targets
#
# The targets are in fuzz/fuzz_targets (one per parser that sees outside input), their
# seeds in fuzz/seeds/<target> (inputs the test suite uses, committed). What the fuzzer
# finds beyond them goes to fuzz/corpus/<target> (not committed), a crashing input to
# fuzz/artifacts/<target>/: the script then prints the end of the target's log and
# fails; `cargo fuzz run --sanitizer none <target> <file>` replays it. The last line is
# the number of executions in all.
#
# Environment:
#   FUZZ_SECONDS   seconds per target (default 6: about a minute for all)
#   FUZZ_RUNS      executions per target instead of a time (the long run)
#   FUZZ_JOBS      cargo build jobs (default: cargo's)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "[fuzz] installing cargo-fuzz from crates.io" >&2
  cargo install cargo-fuzz --locked --version 0.13.2
fi

# The same options for the build and the runs, or cargo builds everything again. Many
# codegen units: the first build compiles the whole dependency tree instrumented.
opts=(--sanitizer none --codegen-units 16)
[[ -n "${FUZZ_JOBS:-}" ]] && opts+=(--jobs "$FUZZ_JOBS")

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(cargo fuzz list)
fi

echo "[fuzz] building ${#targets[@]} targets" >&2
cargo fuzz build "${opts[@]}"

if [[ -n "${FUZZ_RUNS:-}" ]]; then
  limit=(-runs="$FUZZ_RUNS")
else
  limit=(-max_total_time="${FUZZ_SECONDS:-6}")
fi

total=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
  log="fuzz/$t.log"
  # The corpus first: libFuzzer writes what it finds to the first directory only.
  if ! cargo fuzz run "${opts[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1 >"$log" 2>&1; then
    echo "[fuzz] $t FAILED; the end of $log:" >&2
    tail -n 60 "$log" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  peak=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
  if [[ -z "$runs" ]]; then
    echo "[fuzz] $t ran no input; the end of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  printf '[fuzz] %-18s %10s executions, peak RSS %s MB\n' "$t" "$runs" "$peak"
  total=$((total + runs))
done
echo "[fuzz] $total executions in all, no crash"
