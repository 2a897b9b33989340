#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

Seeds are small real files (the demo models in ../shared/models, the test
data in .testdata/, templates from tests/) and hand-written hostile ones
(deep nesting, absurd sizes, ids past the vocabulary). Run once by a
developer; the output is committed, so CI does not need the models.
Usage: fuzz/make_seeds.py [models-dir]
"""
import json
import os
import re
import struct
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
models = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "..", "shared", "models")
testdata = os.path.join(root, ".testdata")
corpus = os.path.join(root, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def exists(path):
    return os.path.exists(path)


def split_two(first, second):
    """The input layout of fuzz_common.h's splitTwo."""
    if isinstance(first, str):
        first = first.encode()
    if isinstance(second, str):
        second = second.encode()
    return struct.pack("<I", len(first)) + first + second


deep_array = "[" * 3000 + "]" * 3000
deep_object = "{\"a\":" * 2000 + "1" + "}" * 2000

# --- safetensors -------------------------------------------------------------


def safetensors(tensors, metadata=None, pad=True, data=None):
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blob = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + (blob if data is None else data)


f32 = struct.pack("<4f", 1, 2, 3, 4)
put("safetensors", "valid", safetensors([("a", "F32", [2, 2], f32), ("b", "BF16", [4], f32[:8]),
                                         ("c", "F16", [2], f32[:4])], {"format": "pt"}))
put("safetensors", "empty-tensor", safetensors([("e", "F32", [0, 4], b""), ("x", "I8", [], b"\x01")]))
put("safetensors", "overlap", struct.pack("<Q", 96) + json.dumps(
    {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
     "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}).encode().ljust(96) + f32)
put("safetensors", "huge-shape", safetensors([("a", "F32", [2**62, 2**62, 16], f32)]))
put("safetensors", "huge-header-length", struct.pack("<Q", 2**63) + b"{}")
for name, text in (("deep-array", deep_array), ("deep-object", deep_object),
                   ("deep-shape", '{"a":{"dtype":"F32","shape":' + deep_array + ',"data_offsets":[0,0]}}'),
                   ("deep-offsets", '{"a":{"dtype":"F32","shape":[1],"data_offsets":[' + "[" * 5000 + "]" * 5000 + ',4]}}')):
    put("safetensors", name, struct.pack("<Q", len(text)) + text.encode())

# --- shard index -------------------------------------------------------------

put("shard_index", "valid", json.dumps({"metadata": {"total_size": 64}, "weight_map": {
    "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
    "model.norm.weight": "model-00001-of-00002.safetensors",
    "lm_head.weight": "model-00002-of-00002.safetensors"}}))
put("shard_index", "escape", json.dumps({"weight_map": {"lm_head.weight": "../../../../etc/passwd",
                                                         "model.norm.weight": "/etc/passwd"}}))
put("shard_index", "missing-tensor", json.dumps({"weight_map": {"nope": "model-00001-of-00002.safetensors"}}))
put("shard_index", "deep", '{"weight_map":' + deep_array + "}")
put("shard_index", "not-string", json.dumps({"weight_map": {"lm_head.weight": [[1]]}}))

# --- GGUF --------------------------------------------------------------------


class Gguf:
    TYPES = {"u8": (0, "<B"), "i8": (1, "<b"), "u16": (2, "<H"), "i16": (3, "<h"), "u32": (4, "<I"),
             "i32": (5, "<i"), "f32": (6, "<f"), "bool": (7, "<?"), "u64": (10, "<Q"), "i64": (11, "<q"),
             "f64": (12, "<d")}

    def __init__(self):
        self.kv = []
        self.tensors = []

    @staticmethod
    def s(text):
        b = text.encode() if isinstance(text, str) else text
        return struct.pack("<Q", len(b)) + b

    def add(self, key, kind, value):
        if kind == "str":
            body = struct.pack("<I", 8) + self.s(value)
        elif kind.startswith("arr:"):
            et = kind[4:]
            if et == "str":
                body = struct.pack("<IIQ", 9, 8, len(value)) + b"".join(self.s(v) for v in value)
            else:
                code, fmt = self.TYPES[et]
                body = struct.pack("<IIQ", 9, code, len(value)) + b"".join(struct.pack(fmt, v) for v in value)
        else:
            code, fmt = self.TYPES[kind]
            body = struct.pack("<I", code) + struct.pack(fmt, value)
        self.kv.append(self.s(key) + body)
        return self

    def tensor(self, name, ne, raw, ggml_type=0):
        self.tensors.append((name, ne, raw, ggml_type))
        return self

    def bytes(self, alignment=32):
        out = b"GGUF" + struct.pack("<IQQ", 3, len(self.tensors), len(self.kv)) + b"".join(self.kv)
        offset = 0
        infos, data = b"", b""
        for name, ne, raw, t in self.tensors:
            infos += self.s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
            infos += struct.pack("<IQ", t, offset)
            data += raw + b"\0" * (-len(raw) % alignment)
            offset = len(data)
        out += infos
        out += b"\0" * (-len(out) % alignment)
        return out + data


def tiny_vocab(g, model="llama"):
    tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + \
             ["\u2581", "\u2581H", "ello", "\u2581w", "orld", "!", "H", "e", "l", "o", "w", "r", "d"]
    if model == "llama":
        g.add("tokenizer.ggml.model", "str", "llama")
        g.add("tokenizer.ggml.tokens", "arr:str", tokens)
        g.add("tokenizer.ggml.scores", "arr:f32", [float(-i) for i in range(len(tokens))])
        g.add("tokenizer.ggml.token_type", "arr:i32", [2, 3, 3] + [6] * 256 + [1] * 13)
    else:
        byte_tokens = [chr(c) for c in range(33, 127)] + ["Ġ", "Ċ", "ĉ"]
        tokens = byte_tokens + ["Ġw", "or", "ld", "He", "ll", "<|endoftext|>"]
        g.add("tokenizer.ggml.model", "str", "gpt2")
        g.add("tokenizer.ggml.pre", "str", "qwen2")
        g.add("tokenizer.ggml.tokens", "arr:str", tokens)
        g.add("tokenizer.ggml.token_type", "arr:i32", [1] * (len(tokens) - 1) + [3])
        g.add("tokenizer.ggml.merges", "arr:str", ["Ġ w", "o r", "l d", "H e", "l l"])
        g.add("tokenizer.ggml.eos_token_id", "u32", len(tokens) - 1)
        return g
    g.add("tokenizer.ggml.bos_token_id", "u32", 1)
    g.add("tokenizer.ggml.eos_token_id", "u32", 2)
    g.add("tokenizer.ggml.add_bos_token", "bool", True)
    return g


def tiny_llama_gguf(vocab=16, hidden=8, inter=16, layers=1, heads=2, kv=2):
    g = Gguf()
    g.add("general.architecture", "str", "llama").add("general.alignment", "u32", 32)
    g.add("llama.context_length", "u32", 64).add("llama.embedding_length", "u32", hidden)
    g.add("llama.block_count", "u32", layers).add("llama.feed_forward_length", "u32", inter)
    g.add("llama.attention.head_count", "u32", heads).add("llama.attention.head_count_kv", "u32", kv)
    g.add("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5).add("llama.rope.freq_base", "f32", 10000.0)
    g.add("llama.vocab_size", "u32", vocab)
    g.add("tokenizer.chat_template", "str", "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}")

    def t(name, *ne):
        n = 1
        for d in ne:
            n *= d
        g.tensor(name, list(ne), struct.pack("<%df" % n, *([0.01] * n)))
    t("token_embd.weight", hidden, vocab)
    t("output_norm.weight", hidden)
    t("output.weight", hidden, vocab)
    for l in range(layers):
        p = "blk.%d." % l
        t(p + "attn_norm.weight", hidden)
        t(p + "attn_q.weight", hidden, hidden)
        t(p + "attn_k.weight", hidden, hidden // heads * kv)
        t(p + "attn_v.weight", hidden, hidden // heads * kv)
        t(p + "attn_output.weight", hidden, hidden)
        t(p + "ffn_norm.weight", hidden)
        t(p + "ffn_gate.weight", hidden, inter)
        t(p + "ffn_up.weight", hidden, inter)
        t(p + "ffn_down.weight", inter, hidden)
    return g


def header_only(path):
    """A real GGUF cut after its tensor table (the data section dropped)."""
    b = read(path)
    pos = 24
    nt, nkv = struct.unpack_from("<QQ", b, 8)
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def value(t, pos):
        if t == 8:
            n, = struct.unpack_from("<Q", b, pos)
            return pos + 8 + n
        if t == 9:
            et, n = struct.unpack_from("<IQ", b, pos)
            pos += 12
            for _ in range(n):
                pos = value(et, pos)
            return pos
        return pos + sizes[t]
    for _ in range(nkv):
        n, = struct.unpack_from("<Q", b, pos)
        pos += 8 + n
        t, = struct.unpack_from("<I", b, pos)
        pos = value(t, pos + 4)
    for _ in range(nt):
        n, = struct.unpack_from("<Q", b, pos)
        pos += 8 + n
        dims, = struct.unpack_from("<I", b, pos)
        pos += 4 + 8 * dims + 12
    return b[:pos]


model_gguf = tiny_vocab(tiny_llama_gguf()).bytes()
put("gguf", "tiny-llama", model_gguf)
put("gguf", "tiny-llama-2-layers", tiny_vocab(tiny_llama_gguf(layers=2, heads=4, kv=1)).bytes())
put("gguf", "no-tensors", tiny_vocab(Gguf().add("general.architecture", "str", "llama")).bytes())
put("gguf", "huge-counts", b"GGUF" + struct.pack("<IQQ", 3, 2**62, 2**62))
put("gguf", "huge-string", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + Gguf.s("k") + struct.pack("<IQ", 8, 2**63))
put("gguf", "huge-array", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + Gguf.s("k") + struct.pack("<IIQ", 9, 9, 2**40))
put("gguf", "huge-sizes", tiny_vocab(tiny_llama_gguf()).add("llama.block_count", "u32", 2**31 - 1)
    .add("llama.embedding_length", "u64", 2**40).bytes())
q4 = os.path.join(testdata, "gguf", "base-q4_k_m.gguf")
if exists(q4):
    put("gguf", "base-q4_k_m-header", header_only(q4))

put("gguf_vocab", "llama-spm", tiny_vocab(Gguf()).bytes())
put("gguf_vocab", "gpt2-bpe", tiny_vocab(Gguf(), "gpt2").bytes())
put("gguf_vocab", "ids-past-vocab", tiny_vocab(Gguf()).add("tokenizer.ggml.unknown_token_id", "u32", 2**31 - 1)
    .add("tokenizer.ggml.padding_token_id", "i64", -5).bytes())
put("gguf_vocab", "short-scores", Gguf().add("tokenizer.ggml.model", "str", "llama")
    .add("tokenizer.ggml.tokens", "arr:str", ["a", "b", "c"]).add("tokenizer.ggml.scores", "arr:f32", [0.0]).bytes())

# --- config.json -------------------------------------------------------------

for m in ("base", "expert-code"):
    if exists(os.path.join(models, m, "config.json")):
        put("config", m, read(os.path.join(models, m, "config.json")))
for m in ("random-mixtral", "random-qwen2", "random-qwen2moe", "random-qwen3moe"):
    p = os.path.join(testdata, "gguf", m, "config.json")
    if exists(p):
        put("config", m, read(p))
put("config", "deep", '{"architectures":["LlamaForCausalLM"],"rope_scaling":' + deep_object + "}")
put("config", "deep-array-value", '{"architectures":["LlamaForCausalLM"],"hidden_size":' + deep_array + "}")
put("config", "huge", json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                                  "hidden_size": 2**31 - 1, "intermediate_size": 2**31 - 1,
                                  "num_hidden_layers": 2**31 - 1, "num_attention_heads": 1,
                                  "num_key_value_heads": 1, "vocab_size": 2**31 - 1, "head_dim": 2**31 - 1,
                                  "max_position_embeddings": 2**62, "eos_token_id": [2**40, -1]}))
put("config", "rope", json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 8,
                                  "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 8,
                                  "rope_scaling": {"rope_type": "llama3", "factor": 1e308,
                                                   "low_freq_factor": 0, "high_freq_factor": 0,
                                                   "original_max_position_embeddings": 0}}))

# --- tokenizer.json (+ tokenizer_config.json) --------------------------------

tiny_tok = {
    "version": "1.0", "added_tokens": [
        {"id": 0, "content": "<unk>", "special": True}, {"id": 1, "content": "<s>", "special": True},
        {"id": 2, "content": "</s>", "special": True}],
    "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                                {"Sequence": {"id": "A", "type_id": 0}}],
                       "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "byte_fallback": False, "vocab": {}, "merges": ["H e", "l l"]}}
vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
for c in [chr(c) for c in range(33, 127)] + ["Ġ", "Ċ", "ĉ"]:
    vocab[c] = len(vocab)
vocab["He"] = len(vocab)
vocab["ll"] = len(vocab)
tiny_tok["model"]["vocab"] = vocab
tok_config = json.dumps({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True,
                         "added_tokens_decoder": {"2": {"content": "</s>", "special": True}}})
put("tokenizer_json", "tiny-byte-level", split_two("", json.dumps(tiny_tok)))
put("tokenizer_json", "tiny-with-config", split_two(tok_config, json.dumps(tiny_tok)))
bad = json.loads(json.dumps(tiny_tok))
bad["added_tokens"].append({"id": 2**31 - 1, "content": "<big>", "special": True})
bad["added_tokens"].append({"id": 2**32 + 3, "content": "<wrap>", "special": True})
put("tokenizer_json", "ids-past-vocab", split_two("", json.dumps(bad)))
bad = json.loads(json.dumps(tiny_tok))
bad["model"]["vocab"]["far"] = 2**31 - 1
put("tokenizer_json", "vocab-id-huge", split_two("", json.dumps(bad)))
bad = json.loads(json.dumps(tiny_tok))
bad["post_processor"]["special_tokens"]["<s>"]["ids"] = [2**40, "x", -7]
put("tokenizer_json", "post-processor-ids", split_two("", json.dumps(bad)))
put("tokenizer_json", "config-ids", split_two(json.dumps({"eos_token_id": [2**40, -3], "added_tokens_decoder": {
    "99999999999": {"content": "x"}, "-1": {"content": "y"}}}), json.dumps(tiny_tok)))
put("tokenizer_json", "deep", split_two("", '{"model":' + deep_array + "}"))
put("tokenizer_json", "deep-config", split_two('{"bos_token":' + deep_object + "}", json.dumps(tiny_tok)))
p = os.path.join(testdata, "gguf", "random-qwen2", "tokenizer.json")
if exists(p) and os.path.getsize(p) < 300000:
    put("tokenizer_json", "random-qwen2", split_two(read(os.path.join(testdata, "gguf", "random-qwen2",
                                                                      "tokenizer_config.json")), read(p)))

# --- tokenizer.model (+ tokenizer_config.json) -------------------------------

spm = os.path.join(models, "base", "tokenizer.model")
if exists(spm):
    put("sentencepiece", "base", split_two(read(spm), read(os.path.join(models, "base", "tokenizer_config.json"))))
    put("sentencepiece", "base-no-config", split_two(read(spm), ""))
    put("sentencepiece", "base-truncated", split_two(read(spm)[:3000], ""))
    put("sentencepiece", "base-hostile-config", split_two(read(spm), json.dumps(
        {"bos_token": {"content": "<nope>"}, "eos_token_id": 2**40,
         "added_tokens_decoder": {"4294967297": {"content": "x", "special": True}}})))
    put("sentencepiece", "base-deep-config", split_two(read(spm), '{"added_tokens_decoder":' + deep_object + "}"))

# --- chat templates ----------------------------------------------------------

for m, p in (("base", os.path.join(models, "base", "tokenizer_config.json")),
             ("llama3", os.path.join(testdata, "llama3", "tokenizer_config.json")),
             ("qwen3", os.path.join(testdata, "qwen3", "tokenizer_config.json"))):
    if exists(p):
        t = json.load(open(p)).get("chat_template")
        if isinstance(t, str):
            put("chat_template", m, t)
src = open(os.path.join(root, "tests", "test_chat_template.cpp")).read()
for i, t in enumerate(re.findall(r'R"\((.*?)\)"', src, re.S)):
    if "{%" in t or "{{" in t:
        put("chat_template", "test-%02d" % i, t)
for name, t in (
        ("loop-forever", "{% for a in range(100000) %}{% for b in range(100000) %}{{ a }}{% endfor %}{% endfor %}"),
        ("doubling", "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"),
        ("list-doubling", "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}"),
        ("deep-value", "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}"),
        ("deep-dict", "{% set ns = namespace(d={}) %}{% for i in range(100000) %}{% set ns.d = {'a': ns.d} %}{% endfor %}{{ ns.d|tojson }}"),
        ("macro-fanout", "{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}"),
        ("repeat", "{{ 'x' * 100000000 }}{{ [1] * 100000000 }}"),
        ("ns-cycle", "{% set ns = namespace(a=1) %}{% set ns.a = ns %}{{ ns }}"),
        ("huge-format", "{{ '%999999999d' % 1 }}{{ 'x'.center(999999999) }}{{ 'a'|indent(999999999, true) }}"),
        ("replace-blowup", "{{ ('x' * 100000).replace('x', 'y' * 100000) }}{{ ('x' * 10000).replace('', 'abc' * 1000) }}"),
        ("join-blowup", "{{ (['x' * 100000] * 100000)|join('-' * 100000) }}"),
        ("deep-expr", "{{ " + "(" * 10000 + "1" + ")" * 10000 + " }}"),
        ("deep-blocks", "{% if true %}" * 1000 + "{% endif %}" * 1000),
        ("empty", ""),
):
    put("chat_template", name, t)

# --- selectors ---------------------------------------------------------------

selector = """[model]
model_id = "base"
arch = "llama"

[anymoe]
dataset_json = "amoe.json"
prefix = "model.layers"
mlp = "mlp"
model_ids = ["expert-a", "expert-b"]
layers = [0, 1]

[anymoe.config]
hidden_size = 8
lr = 1e-3
epochs = 2
batch_size = 4
expert_type = "fine_tuned"
gate_model_id = "gates"
training = true
top_k = 2
gate_mode = "trained"
routing = "token"
include_base = false
validation_split = 0.1
seed = 0

[[anymoe.config.experts]]
model_id = "expert-a"
positive_prompts = ["def f(x):"]

[[anymoe.config.experts]]
model_id = "expert-b"
positive_prompts = ["The court"]
"""
put("selector", "fine-tuned", selector)
put("selector", "lora", """[model]
model_id = "base"

[anymoe]
dataset_json = "amoe.json"
model_ids = ["lora-a", "lora-a"]

[anymoe.config]
expert_type = "lora_adapter"
gate_mode = "hidden"
include_base = true

[anymoe.config.expert_type.lora_adapter]
rank = 2
alpha = 4
target_modules = ["gate_proj", "up_proj", "down_proj"]
""")
put("selector", "hostile", """[model]
model_id = "/"
[anymoe]
dataset_json = "/dev/zero"
model_ids = ["../../../../", "base"]
layers = [2147483647, -1, 9223372036854775807]
[anymoe.config]
top_k = 9223372036854775807
epochs = -1
batch_size = 0
lr = nan
validation_split = inf
hidden_size = 2147483648
seed = -1
""")
put("selector", "deep", "a = " + "[" * 10000 + "]" * 10000 + "\n" + "b = " + "{x=" * 5000 + "1" + "}" * 5000 + "\n")
put("selector", "deep-tables", "".join("[%s]\n" % ".".join(["t"] * n) for n in range(1, 100)))

# --- mergekit ----------------------------------------------------------------

put("mergekit", "hidden", """base_model: base
gate_mode: hidden
dtype: bfloat16
experts_per_token: 2
experts:
  - source_model: expert-a
    positive_prompts:
      - "def f(x):"
  - source_model: expert-b
    positive_prompts:
      - "The court"
    negative_prompts:
      - "def"
""")
put("mergekit", "random", """base_model: base
architecture: mixtral
gate_mode: random
experts_per_token: 1
experts:
  - source_model: expert-a
  - source_model: expert-b
""")
put("mergekit", "hostile", """base_model: /
gate_mode: cheap_embed
experts_per_token: 99999999999999999999
experts: &a [*a]
""")
put("mergekit", "deep", "a: " + "[" * 10000 + "]" * 10000 + "\n")
put("mergekit", "deep-block", "".join("  " * i + "k:\n" for i in range(200)))
put("mergekit", "aliases", "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    "%s: &%s [*%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s]\n" % ((chr(98 + i),) * 2 + (chr(97 + i),) * 9)
    for i in range(20)))

# --- datasets ----------------------------------------------------------------

for name in ("amoe.json", "amoe-with-base.json"):
    p = os.path.join(models, name)
    if exists(p):
        rows = json.load(open(p))["rows"][:12]
        put("dataset", name[:-5], json.dumps({"rows": rows}, indent=1))
put("dataset", "labels", json.dumps({"rows": [{"prompt": "a", "expert": 2**31}, {"prompt": "b", "expert": -1},
                                              {"prompt": "c", "expert": 2**64 - 1}, {"prompt": "d", "expert": 1.5},
                                              {"prompt": "e", "expert": 0, "image_urls": [1]}]}))
put("dataset", "deep", '{"rows":[{"prompt":"a","expert":' + deep_array + "}]}")
put("dataset", "deep-urls", '{"rows":[{"prompt":"a","expert":0,"image_urls":' + deep_object + "}]}")

# --- adapter_config.json -----------------------------------------------------

for m in ("lora-code", "lora-legal"):
    p = os.path.join(models, m, "adapter_config.json")
    if exists(p):
        put("adapter_config", m, read(p))
put("adapter_config", "tiny", json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "bias": "none",
                                          "target_modules": ["gate_proj", "up_proj", "down_proj"]}))
put("adapter_config", "hostile", json.dumps({"peft_type": [[["LORA"]]], "r": 2**40, "lora_alpha": -1e308,
                                             "target_modules": "(.*)+$", "use_dora": True,
                                             "layers_to_transform": [2**31, -1]}))
put("adapter_config", "deep", '{"peft_type":' + deep_array + "}")
put("adapter_config", "deep-targets", '{"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":' + deep_object + "}")

# --- saved conversations (ui/conversation.cpp) --------------------------------

conversation = {"format": "moe-studio-conversation-1", "id": "20261203-151200-0a1b2c3d", "title": "Hello",
                "model": "/models/base", "system_prompt": "Be brief.", "created": "2026-12-03T15:12:00.000",
                "updated": "2026-12-03T15:13:00.000",
                "messages": [{"role": "user", "content": "Hello", "time": "2026-12-03T15:12:00.000"},
                             {"role": "assistant", "content": "Hi **there**", "time": "2026-12-03T15:12:01.500",
                              "tokens": 3, "seconds_to_first_token": 0.25, "tokens_per_second": 40.5,
                              "stop_reason": "eos"}]}
put("conversation", "chat", json.dumps(conversation, indent=4))
put("conversation", "path-id", json.dumps(dict(conversation, id="../../escaped")))
put("conversation", "hostile", json.dumps(dict(conversation, id="." * 300, created="9999-99-99",
    messages=[{"role": "assistant", "content": ["x"], "tokens": 2**63, "tokens_per_second": -1e308},
              {"role": "system"}])))
put("conversation", "deep", '{"id":"a","messages":' + deep_array + "}")
put("conversation", "deep-content", '{"id":"a","messages":[{"role":"user","content":' + deep_object + "}]}")
