#!/usr/bin/env bash
# Builds the fuzz targets of tests/fuzz (cargo-fuzz, libFuzzer) and runs each for SECONDS
# (default 60), two at a time (FUZZ_JOBS), failing if any target finds a crash; the crashing
# input is kept in tests/fuzz/artifacts/TARGET/. Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Stable Rust is enough: `--sanitizer none` needs no nightly flag (libFuzzer's coverage
# instrumentation is a stable codegen option); `-a` keeps overflow checks and debug assertions,
# so an arithmetic overflow is a crash, as it would be in a debug build of the collector.
# cargo-fuzz is installed from crates.io when missing. New inputs go to a temporary corpus,
# seeded from the committed tests/fuzz/seeds/TARGET/, so a run leaves the tree unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
jobs="${FUZZ_JOBS:-2}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz from crates.io"
  cargo install --locked cargo-fuzz
fi
fuzz=(cargo fuzz)
flags=(--fuzz-dir tests/fuzz --sanitizer none -O -a)
"${fuzz[@]}" build "${flags[@]}"
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <("${fuzz[@]}" list --fuzz-dir tests/fuzz); fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
run_target() {
  local target="$1"
  mkdir -p "$work/$target"
  # -timeout: one input taking 10 s is a hang, reported as a crash.
  "${fuzz[@]}" run "${flags[@]}" "$target" "$work/$target" "tests/fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$work/$target.log" 2>&1
}

declare -A pids
for target in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  run_target "$target" &
  pids[$target]=$!
done
failed=0
for target in "${targets[@]}"; do
  if wait "${pids[$target]}"; then status=ok; else status=CRASH; failed=1; fi
  runs="$(grep -o 'stat::number_of_executed_units: [0-9]*' "$work/$target.log" | grep -o '[0-9]*$' || true)"
  corpus="$(find "$work/$target" -type f | wc -l)"
  echo "fuzz.sh: $target: $status after ${seconds} s, ${runs:-?} runs, corpus ${corpus} inputs"
  if [ "$status" != ok ]; then
    tail -n 60 "$work/$target.log"
    ls tests/fuzz/artifacts/"$target"/ 2>/dev/null || true
  fi
done
exit "$failed"
