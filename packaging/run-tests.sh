#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine and runs the whole test
# suite (CTest) on the Vulkan device, lavapipe when there is no GPU, after
# making the GGUF test models and llama.cpp's reference results for them.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/packaging/build.sh"
# llama.cpp's GGUF conversions, quantizations and reference results
# (.testdata/gguf/; does nothing when they are up to date).
"$repo/packaging/make-test-ggufs.sh" "$repo/build"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
export QT_QPA_PLATFORM=offscreen
# Tests that need the fetched or generated test data fail, rather than skip, without it.
export MOE_REQUIRE_TESTDATA=1
ctest --test-dir "$repo/build" --output-on-failure --timeout 900
