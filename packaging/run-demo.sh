#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine and runs MoE Studio's main
# job on the demo models: the base model generating text on the Vulkan engine.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${MOE_MODELS_DIR:-$repo/../shared/models}"
"$repo/packaging/build.sh"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
"$repo/build/app/moe-cli" devices
echo
"$repo/build/app/moe-cli" info --model "$models/base"
echo
prompt="${1:-The licensee shall}"
echo "== generate: $prompt"
"$repo/build/app/moe-cli" generate --model "$models/base" --prompt "$prompt" -n 64 \
    --temperature 0.7 --top-k 40 --repeat-penalty 1.2 --seed 7
