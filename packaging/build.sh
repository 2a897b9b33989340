#!/usr/bin/env bash
# Installs the dependencies (once) and builds MoE Studio into ./build.
# Used by run-demo.sh and run-tests.sh; safe to run again.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/packaging/install-deps.sh"
jobs="$(nproc 2>/dev/null || echo 2)"
# CI (.ci/run, with CI=true) fails on any compiler warning; a local build
# only prints them. Passed either way so that build/'s cache follows CI.
# CI also leaves out the debug info (same -O2 code, a shorter build); a local
# build keeps it.
werror=OFF
flags="-O2 -g -DNDEBUG"
if [[ "${CI:-}" == "true" ]]; then werror=ON; flags="-O2 -DNDEBUG"; fi
cmake -S "$repo" -B "$repo/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DMOE_WERROR="$werror" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$flags" \
      -DMOE_MODELS_DIR="${MOE_MODELS_DIR:-$repo/../shared/models}" >/dev/null
cmake --build "$repo/build" -j "$jobs"
