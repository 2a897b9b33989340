#!/usr/bin/python3
"""Runs llama.cpp's convert_hf_to_gguf.py with Debian 12's Python packages.

usage: convert.py LLAMA_CPP_DIR [--sentencepiece-vocab] CONVERTER-ARGS...

LLAMA_CPP_DIR holds convert_hf_to_gguf.py, conversion/ and gguf-py/
(packaging/fetch-test-data.sh puts them in .testdata/llama.cpp). The converter
runs unchanged; three things are arranged around it, none of which touches how
tensors are converted:

1. `transformers` is not packaged in Debian 12: if it is missing, stubs/ goes
   on sys.path (see stubs/transformers/__init__.py: only ImportError paths the
   converter already handles).
2. Debian 12's torch (1.13) predates the float8 dtypes (torch 2.1) that
   conversion/base.py names in its dtype tables at import time. If they are
   missing, placeholder objects stand in for torch.float8_e4m3fn and
   torch.float8_e5m2; they are only dictionary keys, equal to no real dtype,
   so an F8 checkpoint would still fail instead of being misread.
3. --sentencepiece-vocab: Qwen2MoeModel (and Qwen3MoeModel, its subclass)
   and Phi2Model only know the BPE vocabulary path, which needs transformers.
   With this flag they try the SentencePiece path first, exactly as the
   converter's own Qwen2Model.set_vocab does (tokenizer.model; BPE if there is
   none). For the random test models that carry the demo base's SentencePiece
   tokenizer.
"""
import importlib.util
import os
import runpy
import sys


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    llama_dir = os.path.abspath(sys.argv[1])
    args = sys.argv[2:]
    sentencepiece_vocab = "--sentencepiece-vocab" in args
    args = [a for a in args if a != "--sentencepiece-vocab"]

    sys.path[:0] = [llama_dir, os.path.join(llama_dir, "gguf-py")]
    if importlib.util.find_spec("transformers") is None:
        sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "stubs"))

    import torch

    class MissingDtype:
        def __init__(self, name: str) -> None:
            self.name = name

        def __repr__(self) -> str:
            return f"<torch.{self.name}: not in torch {torch.__version__}>"

    for name in ("float8_e4m3fn", "float8_e5m2"):
        if not hasattr(torch, name):
            setattr(torch, name, MissingDtype(name))

    if sentencepiece_vocab:
        from conversion import phi, qwen

        def set_vocab(self):
            try:
                self._set_vocab_sentencepiece()
            except FileNotFoundError:
                self._set_vocab_gpt2()

        qwen.Qwen2MoeModel.set_vocab = set_vocab
        phi.Phi2Model.set_vocab = set_vocab

    converter = os.path.join(llama_dir, "convert_hf_to_gguf.py")
    sys.argv = [converter] + args
    runpy.run_path(converter, run_name="__main__")


if __name__ == "__main__":
    main()
