#!/usr/bin/env bash
# Makes the GGUF test models and llama.cpp's reference results for them in
# <repo>/.testdata/gguf/ (or DEST):
#
#   base-f16.gguf base-f32.gguf expert-code-f16.gguf   llama.cpp's convert_hf_to_gguf.py from MOE_MODELS_DIR
#   base-q8_0.gguf base-q4_k_m.gguf base-q4_0.gguf expert-code-q4_k_m.gguf
#                                                      llama_model_quantize (llama-reference quantize)
#   random-<arch>/ + random-<arch>-f32.gguf            make-random-model (F32 safetensors with the demo
#                                                      base's SentencePiece tokenizer), converted to F32
#   random-mixtral-q8_0.gguf random-qwen3moe-q8_0.gguf Q8_0 of two of them
#   reference.json                                     llama.cpp's tensor types, perplexities, greedy
#                                                      continuations and logits for every .gguf
#   timings.json                                       seconds per step (not reference data)
#
# usage: make-test-ggufs.sh [BUILD_DIR [DEST]]   (BUILD_DIR default <repo>/build)
#
# Needs build/tools/llama-reference and build/tools/make-random-model, the
# llama.cpp files of packaging/fetch-test-data.sh and /usr/bin/python3 with
# torch, numpy, sentencepiece (packaging/install-deps.sh). Without
# llama-reference (no prebuilt llama.cpp for this platform) it says so and
# does nothing. Idempotent: a stamp records the inputs (sizes and mtimes of
# the models and eval texts, the llama.cpp commit, hashes of this script and
# the tools); a second run with the same inputs does nothing. Everything is
# written into a temporary folder beside DEST that replaces DEST at the end.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-"$repo_root/build"}
dest=${2:-"$repo_root/.testdata/gguf"}
models=${MOE_MODELS_DIR:-"$repo_root/../shared/models"}
llama_dir=${MOE_LLAMA_CPP_DIR:-"$repo_root/.testdata/llama.cpp"}
python=/usr/bin/python3 # Debian's, with python3-torch; not a pyenv/venv one
reference="$build/tools/llama-reference"
random_model="$build/tools/make-random-model"
shim="$repo_root/packaging/llama-cpp-shim/convert.py"

# Perplexity settings (the same rules as `moe-cli perplexity --window W --max-windows K`).
ppl_window=256
ppl_max_windows=8
greedy_tokens=16
prompts=(
  "The quick brown fox"
  "def main():"
  "Permission is hereby granted, free of charge,"
)

# One llama.cpp thread: its results do not depend on the thread count, and
# ggml's spinning worker threads slow down badly when other jobs share the
# cores (parallel builds, ctest -j).
export LLAMA_REFERENCE_THREADS=${LLAMA_REFERENCE_THREADS:-1}

note() { echo "make-test-ggufs: $*" >&2; }

if [ ! -x "$reference" ]; then
  note "no $reference (llama.cpp's prebuilt libraries are only fetched on x86-64 Linux); skipped"
  exit 0
fi
for f in "$random_model" "$llama_dir/convert_hf_to_gguf.py" "$llama_dir/SOURCE" "$models/base/config.json" \
  "$models/expert-code/config.json"; do
  if [ ! -e "$f" ]; then
    note "missing $f (build make-random-model, run packaging/fetch-test-data.sh, set MOE_MODELS_DIR)"
    exit 1
  fi
done

eval_texts=("$models"/eval/*.txt)

# Random models: name=make-random-model arguments. Shapes are multiples of 32
# (Q8_0 blocks); every model gets the demo base's tokenizer (vocab 4096).
# qwen2moe without norm_topk_prob, as Qwen2-MoE models ship: GGUF has no key
# for it and llama.cpp's qwen2moe never renormalises the top-k weights.
# gemma2/gemma3: a window of 8 that the prompts plus 16 greedy tokens cross;
# query_pre_attn_scalar = head_dim (llama.cpp scales by head_dim^-0.5 whatever
# the config says, as Gemma's released 2B/9B/1B/4B/12B are); gemma3 with 6
# layers, since llama.cpp's gemma3 always makes every 6th layer global.
# phi3: Phi-4-mini's layout (tied, 3/4 of each head rotated, LongRoPE) with
# original_max_position_embeddings 384 of 512: llama.cpp takes the short
# factors for any context up to 384 (all of ours), and both scale cos/sin by
# sqrt(1 + ln(512/384) / ln 384).
# phi2: the converter writes feed_forward_length = 4 * hidden and
# head_count_kv = head_count whatever the config says, so the model has
# exactly those; 0.4 of each head rotated (32 * 0.4 -> 12, as the converter's
# int(0.4 * 128) // 4).
random_models=(
  "qwen2=--arch qwen2 --hidden 128 --layers 2 --heads 4 --kv-heads 2 --intermediate 256 --seed 11"
  "mixtral=--arch mixtral --hidden 128 --layers 2 --heads 4 --kv-heads 2 --intermediate 256 --experts 4 --top-k 2 --seed 12"
  "qwen2moe=--arch qwen2_moe --hidden 128 --layers 2 --heads 4 --kv-heads 2 --intermediate 256 --experts 4 --top-k 2 --moe-intermediate 128 --shared-intermediate 192 --no-norm-topk --seed 13"
  "qwen3moe=--arch qwen3_moe --hidden 128 --layers 2 --heads 4 --kv-heads 2 --head-dim 32 --intermediate 256 --experts 4 --top-k 2 --moe-intermediate 128 --seed 14"
  "qwen3=--arch qwen3 --hidden 128 --layers 2 --heads 4 --kv-heads 2 --head-dim 64 --intermediate 256 --tie-embeddings --seed 15"
  "gemma2=--arch gemma2 --hidden 128 --layers 4 --heads 4 --kv-heads 2 --head-dim 32 --intermediate 256 --sliding-window 8 --attn-softcap 20 --final-softcap 15 --tie-embeddings --seed 16"
  "gemma3=--arch gemma3 --hidden 128 --layers 6 --heads 4 --kv-heads 2 --head-dim 32 --intermediate 256 --sliding-window 8 --tie-embeddings --seed 17"
  "phi3=--arch phi3 --hidden 128 --layers 2 --heads 4 --kv-heads 2 --intermediate 256 --partial-rotary 0.75 --longrope 384 --tie-embeddings --seed 18"
  "phi2=--arch phi2 --hidden 128 --layers 2 --heads 4 --intermediate 512 --partial-rotary 0.4 --seed 19"
)
random_common="--vocab 4096 --dtype f32 --max-pos 512 --init-std 0.05 --tokenizer-from $models/base"
random_q8_0=(mixtral qwen3moe)

# ---------------------------------------------------------------- stamp
inputs=()
for dir in base expert-code; do
  for f in "$models/$dir"/*; do inputs+=("$f"); done
done
inputs+=("${eval_texts[@]}")
stamp="format=1 llama.cpp=$(head -n 1 "$llama_dir/SOURCE")"
stamp+=" window=$ppl_window max_windows=$ppl_max_windows greedy=$greedy_tokens"
stamp+=$'\n'"$(stat -c '%n %s %Y' "${inputs[@]}")"
stamp+=$'\n'"$(cd "$repo_root" && sha256sum packaging/make-test-ggufs.sh packaging/llama-cpp-shim/convert.py \
  packaging/llama-cpp-shim/stubs/transformers/__init__.py tools/make_random_model.cpp tools/llama_reference.cpp)"
stamp+=$'\n'"$(printf '%s\n' "${random_models[@]}" "$random_common" "${random_q8_0[*]}" "${prompts[@]}")"
stamp_file="$dest/.make-test-ggufs.stamp"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
  note "$dest is up to date"
  exit 0
fi

if ! "$python" -c 'import torch, numpy, sentencepiece, yaml' 2>/dev/null; then
  note "$python lacks torch/numpy/sentencepiece/yaml (run packaging/install-deps.sh)"
  exit 1
fi

mkdir -p "$(dirname "$dest")"
work=$(mktemp -d "$(dirname "$dest")/.gguf.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
out="$work/out"   # the new DEST
res="$work/results" # llama-reference's JSON, one file per call
mkdir -p "$out" "$res"
marks=("start=$EPOCHREALTIME")
step() { marks+=("$1=$EPOCHREALTIME"); } # step NAME: the step NAME ends now

convert() { # convert MODEL_DIR OUTTYPE OUT.gguf [--sentencepiece-vocab]
  if ! "$python" "$shim" "$llama_dir" "${@:4}" "$1" --outtype "$2" --outfile "$3" >"$work/convert.log" 2>&1; then
    cat "$work/convert.log" >&2
    note "convert_hf_to_gguf.py failed for $1"
    exit 1
  fi
}

quantize() { # quantize IN OUT TYPE
  "$reference" quantize "$1" "$2" "$3" >"$res/$(basename "$2").quantize.json" 2>"$work/quantize.log" || {
    cat "$work/quantize.log" >&2
    note "quantize $1 -> $3 failed"
    exit 1
  }
}

# ---------------------------------------------------------------- demo models
note "converting the demo models (convert_hf_to_gguf.py)"
convert "$models/base" f16 "$out/base-f16.gguf"
convert "$models/base" f32 "$out/base-f32.gguf"
convert "$models/expert-code" f16 "$out/expert-code-f16.gguf"
step convert_demo
note "quantizing the demo models (llama_model_quantize)"
quantize "$out/base-f16.gguf" "$out/base-q8_0.gguf" q8_0
quantize "$out/base-f16.gguf" "$out/base-q4_k_m.gguf" q4_k_m
quantize "$out/base-f16.gguf" "$out/base-q4_0.gguf" q4_0
quantize "$out/expert-code-f16.gguf" "$out/expert-code-q4_k_m.gguf" q4_k_m
step quantize_demo

# ---------------------------------------------------------------- random models
note "random models (make-random-model) -> F32 GGUF"
for entry in "${random_models[@]}"; do
  name=${entry%%=*}
  args=${entry#*=}
  # shellcheck disable=SC2086 # word splitting of the argument lists is intended
  "$random_model" --out "$out/random-$name" $args $random_common >/dev/null
  # llama.cpp gives a model whose general.name says phi3 Phi-3's special
  # tokens' attributes, which the demo base's vocabulary lacks: another name.
  name_arg=()
  if [ "$name" = phi3 ]; then name_arg=(--model-name "random-p3"); fi
  convert "$out/random-$name" f32 "$out/random-$name-f32.gguf" --sentencepiece-vocab "${name_arg[@]}"
done
for name in "${random_q8_0[@]}"; do
  quantize "$out/random-$name-f32.gguf" "$out/random-$name-q8_0.gguf" q8_0
done
step random_models

# ---------------------------------------------------------------- reference results
note "llama.cpp reference results"
prompt_files=()
for i in "${!prompts[@]}"; do
  "$reference" tokenize "$out/base-f16.gguf" --text "${prompts[$i]}" --add-special >"$res/prompt$i.json"
  printf '%s' "${prompts[$i]}" >"$res/prompt$i.txt"
  prompt_files+=("$res/prompt$i.json")
done
ids_of() { "$python" -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["ids"])))' "$1"; }
for gguf in "$out"/*.gguf; do
  name=$(basename "$gguf")
  "$reference" info "$gguf" >"$res/$name.info.json"
  for text in "${eval_texts[@]}"; do
    domain=$(basename "$text" .txt)
    "$reference" perplexity "$gguf" --file "$text" --window "$ppl_window" --max-windows "$ppl_max_windows" \
      >"$res/$name.ppl.$domain.json"
  done
  for i in "${!prompts[@]}"; do
    "$reference" greedy "$gguf" --ids "$(ids_of "$res/prompt$i.json")" --n "$greedy_tokens" >"$res/$name.greedy$i.json"
  done
  "$reference" logits "$gguf" --ids "$(ids_of "$res/prompt0.json")" --last-only --top 5 >"$res/$name.logits.json"
done
step reference

"$python" - "$out" "$res" "$llama_dir/SOURCE" "$ppl_window" "$ppl_max_windows" "$greedy_tokens" \
  "$random_common" "${#prompts[@]}" "${random_models[@]}" <<'EOF'
import json, os, sys
out, res, source, window, max_windows, greedy_n, random_common, n_prompts = sys.argv[1:9]
random_models = dict(e.split("=", 1) for e in sys.argv[9:])
n_prompts = int(n_prompts)
load = lambda name: json.load(open(os.path.join(res, name)))
commit = open(source).readline().split()[1]
prompts = [load(f"prompt{i}.json")["ids"] for i in range(n_prompts)]
ref = {
    "format": 1,
    "llama_cpp": {"commit": commit, "source": "node-llama-cpp@3.22.1 (git bundle)",
                  "libraries": "@node-llama-cpp/linux-x64@3.22.1"},
    "settings": {"backend": "cpu", "kv_cache": "f32", "flash_attention": False,
                 "perplexity": {"window": int(window), "max_windows": int(max_windows), "prompt_tokens": 0,
                                "text": "tokenized whole, no special tokens; windows of W tokens, each [BOS]+window, "
                                        "every window token scored"},
                 "greedy_tokens": int(greedy_n)},
    "prompts": [{"text": open(os.path.join(res, f"prompt{i}.txt"), encoding="utf-8").read(), "ids": ids}
                for i, ids in enumerate(prompts)],
    "models": {},
}
sources = {
    "base-f16.gguf": {"from": "models:base", "convert": "f16"},
    "base-f32.gguf": {"from": "models:base", "convert": "f32"},
    "expert-code-f16.gguf": {"from": "models:expert-code", "convert": "f16"},
    "base-q8_0.gguf": {"from": "base-f16.gguf", "quantize": "q8_0"},
    "base-q4_k_m.gguf": {"from": "base-f16.gguf", "quantize": "q4_k_m"},
    "base-q4_0.gguf": {"from": "base-f16.gguf", "quantize": "q4_0"},
    "expert-code-q4_k_m.gguf": {"from": "expert-code-f16.gguf", "quantize": "q4_k_m"},
}
for name, args in random_models.items():
    sources[f"random-{name}-f32.gguf"] = {"from": f"random-{name}/", "convert": "f32",
                                          "make_random_model": args + " " + random_common.replace(
                                              os.path.dirname(random_common.split()[-1]), "MOE_MODELS_DIR")}
    sources[f"random-{name}-q8_0.gguf"] = {"from": f"random-{name}-f32.gguf", "quantize": "q8_0"}
for name in sorted(f for f in os.listdir(out) if f.endswith(".gguf")):
    info = load(f"{name}.info.json")
    ppl = {}
    for f in sorted(os.listdir(res)):
        if f.startswith(f"{name}.ppl."):
            r = load(f)
            ppl[f[len(name) + 5:-5]] = {k: r[k] for k in ("perplexity", "loss", "tokens", "windows")}
    logits = load(f"{name}.logits.json")
    ref["models"][name] = {
        **sources[name],
        "architecture": info["architecture"],
        "file_type": info.get("file_type"),
        "type_counts": info["type_counts"],
        "tensor_types": {t["name"]: t["type"] for t in info["tensors"]},
        "perplexity": ppl,
        "greedy": [load(f"{name}.greedy{i}.json")["ids"] for i in range(n_prompts)],
        "greedy_margins": [load(f"{name}.greedy{i}.json")["margins"] for i in range(n_prompts)],
        "logits": {"ids": logits["ids"], "top5": logits["top"], "last": logits["last_logits"]},
    }
with open(os.path.join(out, "reference.json"), "w") as f:
    json.dump(ref, f, indent=1)
    f.write("\n")
EOF
step assemble
"$python" - "${marks[@]}" >"$out/timings.json" <<'EOF'
import json, sys
marks = [(k, float(v)) for k, v in (m.split("=") for m in sys.argv[1:])]
t = {k: round(v - marks[i][1], 2) for i, (k, v) in enumerate(marks[1:])}
t["total"] = round(marks[-1][1] - marks[0][1], 2)
print(json.dumps(t))
EOF

echo "$stamp" >"$out/.make-test-ggufs.stamp"
rm -rf "$dest"
mv "$out" "$dest"
note "done ($dest): $(cat "$dest/timings.json")"
