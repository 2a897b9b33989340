#!/usr/bin/env bash
# Saves screenshots of MoE Studio's main pages (Models, Build, Training, Chat
# after a short real chat with the demo base model, and the Local server
# running on port 8080) into docs/screenshots/,
# running the app under Xvfb with fresh settings.
#   packaging/screenshots.sh [BUILD_DIR]   (default: ./build)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$repo/build}"
binary="$build/app/moe-studio"
[ -x "$binary" ] || { echo "screenshots: $binary not found (build first: packaging/build.sh)" >&2; exit 1; }
command -v xvfb-run >/dev/null || { echo "screenshots: xvfb-run missing (packaging/install-deps.sh)" >&2; exit 1; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/runtime" "$repo/docs/screenshots"
chmod 700 "$scratch/runtime"
# Fresh settings and conversations, no Hugging Face cache: the pictures show the demo models only.
HOME="$scratch" XDG_CONFIG_HOME="$scratch/config" XDG_DATA_HOME="$scratch/data" XDG_RUNTIME_DIR="$scratch/runtime" \
HF_HUB_CACHE="$scratch/hub" MOE_MODELS_DIR="${MOE_MODELS_DIR:-$repo/../shared/models}" \
  xvfb-run -a -s "-screen 0 1400x900x24" "$binary" --screenshot "$repo/docs/screenshots" \
  --screenshot-prompt "${SCREENSHOT_PROMPT:-The licensee shall}"
ls -l "$repo/docs/screenshots"
