#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine and opens MoE Studio on the
# demo models. Without a display (no $DISPLAY / $WAYLAND_DISPLAY) it runs the
# headless demo instead: the base model generating text on the Vulkan engine.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${MOE_MODELS_DIR:-$repo/../shared/models}"
export MOE_MODELS_DIR="$models"
"$repo/packaging/build.sh"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -x "$repo/build/app/moe-studio" ]; then
  exec "$repo/build/app/moe-studio" "$@"
fi
echo "No display: running the headless demo (moe-cli)."
"$repo/build/app/moe-cli" devices
echo
"$repo/build/app/moe-cli" info --model "$models/base"
echo
prompt="${1:-The licensee shall}"
echo "== generate: $prompt"
"$repo/build/app/moe-cli" generate --model "$models/base" --prompt "$prompt" -n 64 \
    --temperature 0.7 --top-k 40 --repeat-penalty 1.2 --seed 7
