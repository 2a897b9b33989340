#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine and runs the whole test
# suite (CTest) on the Vulkan device, lavapipe when there is no GPU, after
# making the GGUF test models and llama.cpp's reference results for them;
# then the sanitizer checks (packaging/run-fuzzers.sh: the CPU-side suites
# under ASan + UBSan, the fuzz corpora, each fuzz target for
# MOE_FUZZ_SECONDS, default 20). Prints the seconds each step took.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
jobs="$(nproc 2>/dev/null || echo 2)"
start=$(date +%s)
mark=$start
took() {
  echo "run-tests: $1 took $(( $(date +%s) - mark )) s"
  mark=$(date +%s)
}
"$repo/packaging/install-deps.sh"
took "installing the dependencies"
"$repo/packaging/build.sh"
took "the build"
# The sanitizer build (build-fuzz/) runs beside the GGUF step, which keeps one
# core busy (llama.cpp on one thread, the converter): niced, it takes what the
# GGUF step leaves. Its log is printed when it fails.
mkdir -p "$repo/build-fuzz"
fuzz_log="$repo/build-fuzz/build.log"
MOE_FUZZ_BUILD_ONLY=1 nice -n 10 "$repo/packaging/run-fuzzers.sh" >"$fuzz_log" 2>&1 &
fuzz_build=$!
# llama.cpp's GGUF conversions, quantizations and reference results
# (.testdata/gguf/; does nothing when they are up to date).
"$repo/packaging/make-test-ggufs.sh" "$repo/build"
took "the GGUF test models"
if ! wait "$fuzz_build"; then
  cat "$fuzz_log" >&2
  echo "run-tests: the sanitizer build failed" >&2
  exit 1
fi
took "waiting for the sanitizer build"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
export QT_QPA_PLATFORM=offscreen
# Tests that need the fetched or generated test data fail, rather than skip, without it.
export MOE_REQUIRE_TESTDATA=1
ctest --test-dir "$repo/build" --output-on-failure --timeout 900 -j "$jobs"
took "the test suite"
"$repo/packaging/run-fuzzers.sh" "${MOE_FUZZ_SECONDS:-20}"
took "the sanitizer suites and fuzzers"
echo "run-tests: all passed in $(( $(date +%s) - start )) s"
