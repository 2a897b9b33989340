#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, MOE_FUZZ=ON: clang with ASan + UBSan)
# in build-fuzz/ and runs each for N seconds (default 20) on its committed
# seed corpus (fuzz/corpus/<name>/). Fails on any finding: a crash, an
# exception other than moe::Error, a sanitizer report, an input that runs
# longer than 10 s, or one that needs more than 2 GiB. The input that found
# it is kept in build-fuzz/findings/; rerun it with
#   build-fuzz/fuzz/fuzz_<name> build-fuzz/findings/<name>-crash-...
# New inputs the fuzzers find go to build-fuzz/corpus/<name>/ (not committed).
# Usage: packaging/run-fuzzers.sh [seconds-per-target] [target-name...]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-20}"
shift || true
build="$repo/build-fuzz"
jobs="$(nproc 2>/dev/null || echo 2)"

launcher=()
if command -v ccache >/dev/null 2>&1; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
start=$(date +%s)
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
      "${launcher[@]}" -DMOE_FUZZ=ON -DMOE_BUILD_TESTS=OFF -DMOE_BUILD_UI=OFF \
      -DMOE_MODELS_DIR="${MOE_MODELS_DIR:-$repo/../shared/models}" >/dev/null
cmake --build "$build" -j "$jobs" --target fuzzers
echo "run-fuzzers: built in $(( $(date +%s) - start )) s"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$repo"/fuzz/fuzz_*.cpp; do n="$(basename "$f" .cpp)"; targets+=("${n#fuzz_}"); done
fi
mkdir -p "$build/findings"
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
failed=()
for t in "${targets[@]}"; do
  bin="$build/fuzz/fuzz_$t"
  seeds="$repo/fuzz/corpus/$t"
  work="$build/corpus/$t"
  mkdir -p "$work" "$seeds"
  log="$build/findings/$t.log"
  echo "run-fuzzers: fuzz_$t for ${seconds} s"
  if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$build/findings/$t-" "$work" "$seeds" >"$log" 2>&1; then
    grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" | tr '\n' ' ' | sed 's/^/  /'
    echo
  else
    echo "run-fuzzers: fuzz_$t FOUND A PROBLEM; the end of $log:" >&2
    tail -n 40 "$log" >&2
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "run-fuzzers: findings in ${failed[*]} (inputs in $build/findings/)" >&2
  exit 1
fi
echo "run-fuzzers: no findings in ${#targets[@]} targets (${seconds} s each)"
