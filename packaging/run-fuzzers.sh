#!/usr/bin/env bash
# The sanitizer checks, in one clang build folder (build-fuzz/, MOE_FUZZ=ON:
# the engine with ASan + UBSan and libFuzzer's coverage instrumentation):
#  1. the suites that need no Vulkan device (CTest label cpu: parsers,
#     tokenizers, templates, selectors, quantization) run under ASan + UBSan,
#     and every fuzz target replays its committed corpus once (label fuzz);
#     any sanitizer report fails the test that hit it;
#  2. each libFuzzer target (fuzz/) runs for N seconds (default 20) on its
#     seed corpus (fuzz/corpus/<name>/), as many at a time as there are
#     cores. Fails on any finding: a crash, an exception other than
#     moe::Error, a sanitizer report, an input that runs longer than 10 s, or
#     one that needs more than 2 GiB.
# The input that found a problem is kept in build-fuzz/findings/; rerun it with
#   build-fuzz/fuzz/fuzz_<name> build-fuzz/findings/<name>-crash-...
# and, once fixed, commit it to fuzz/corpus/<name>/ so that step 1 replays it.
# New inputs the fuzzers find go to build-fuzz/corpus/<name>/ (not committed).
# Optimised for build time, not speed (-O1, line tables only): the build is
# most of this script's time on a 2-core CI machine.
# Usage: packaging/run-fuzzers.sh [seconds-per-target] [target-name...]
#   MOE_FUZZ_TESTS=0 skips step 1 (and building its suites);
#   MOE_FUZZ_BUILD_ONLY=1 only builds.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-20}"
shift || true
build="$repo/build-fuzz"
jobs="$(nproc 2>/dev/null || echo 2)"
with_tests="${MOE_FUZZ_TESTS:-1}"
models="${MOE_MODELS_DIR:-$repo/../shared/models}"

launcher=()
if command -v ccache >/dev/null 2>&1; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
werror=OFF
if [[ "${CI:-}" == "true" ]]; then werror=ON; fi
start=$(date +%s)
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -gline-tables-only" \
      -DCMAKE_CXX_COMPILER=clang++ "${launcher[@]}" -DMOE_FUZZ=ON -DMOE_BUILD_UI=OFF -DMOE_WERROR="$werror" \
      -DMOE_BUILD_TESTS="$([ "$with_tests" = 1 ] && echo ON || echo OFF)" -DMOE_MODELS_DIR="$models" >/dev/null
build_targets=(fuzzers)
if [ "$with_tests" = 1 ]; then build_targets+=(cpu_tests); fi
cmake --build "$build" -j "$jobs" --target "${build_targets[@]}"
echo "run-fuzzers: built in $(( $(date +%s) - start )) s"
if [ "${MOE_FUZZ_BUILD_ONLY:-0}" = 1 ]; then exit 0; fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
if [ "$with_tests" = 1 ]; then
  start=$(date +%s)
  export QT_QPA_PLATFORM=offscreen MOE_MODELS_DIR="$models"
  ctest --test-dir "$build" -L 'cpu|fuzz' -j "$jobs" --output-on-failure --timeout 900
  echo "run-fuzzers: sanitized suites and corpus replays in $(( $(date +%s) - start )) s"
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$repo"/fuzz/fuzz_*.cpp; do n="$(basename "$f" .cpp)"; targets+=("${n#fuzz_}"); done
fi
mkdir -p "$build/findings"
# One target: runs it, prints its figures or the end of its log; fails on a finding.
fuzz_one() {
  local t="$1" bin="$build/fuzz/fuzz_$1" seeds="$repo/fuzz/corpus/$1" work="$build/corpus/$1"
  local log="$build/findings/$t.log"
  mkdir -p "$work" "$seeds"
  if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$build/findings/$t-" "$work" "$seeds" >"$log" 2>&1; then
    echo "run-fuzzers: fuzz_$t ($seconds s): $(grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" | tr '\n' ' ')"
  else
    echo "run-fuzzers: fuzz_$t FOUND A PROBLEM; the end of $log:" >&2
    tail -n 40 "$log" >&2
    return 1
  fi
}
start=$(date +%s)
failed=()
pids=()
names=()
# Runs the targets $jobs at a time (each fuzzer is one thread).
reap() {
  local i
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      wait "${pids[$i]}" || failed+=("${names[$i]}")
      unset 'pids[i]' 'names[i]'
    fi
  done
}
for t in "${targets[@]}"; do
  while [ ${#pids[@]} -ge "$jobs" ]; do sleep 1; reap; done
  fuzz_one "$t" &
  pids+=($!)
  names+=("$t")
done
while [ ${#pids[@]} -gt 0 ]; do sleep 1; reap; done
if [ ${#failed[@]} -gt 0 ]; then
  echo "run-fuzzers: findings in ${failed[*]} (inputs in $build/findings/)" >&2
  exit 1
fi
echo "run-fuzzers: no findings in ${#targets[@]} targets (${seconds} s each, $jobs at a time, $(( $(date +%s) - start )) s)"
