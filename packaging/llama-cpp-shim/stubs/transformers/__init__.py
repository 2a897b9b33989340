"""Stand-in for Hugging Face `transformers`, which Debian 12 does not package.

llama.cpp's convert_hf_to_gguf.py imports `AutoConfig` at module level
(conversion/base.py) and `AutoTokenizer` inside some vocabulary functions. Both
names exist here only so that the import succeeds; calling them raises
ImportError, which the converter already handles where it matters for us:

* ModelBase.load_hparams catches the failure of AutoConfig.from_pretrained and
  reads config.json with `json` instead (its documented fallback);
* the SentencePiece vocabulary path (tokenizer.model via the `sentencepiece`
  package) does not use transformers at all.

Any code path that really needs transformers (BPE vocabularies through
AutoTokenizer, transformers.convert_slow_tokenizer, ...) fails loudly instead
of producing something else. packaging/llama-cpp-shim/convert.py puts this
folder on sys.path only when the real package is not installed.
"""


class _Unavailable:
    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        raise ImportError(f"transformers.{cls.__name__} is not available: the transformers package is not installed "
                          "(packaging/llama-cpp-shim/stubs/transformers is a stand-in)")


class AutoConfig(_Unavailable):
    pass


class AutoTokenizer(_Unavailable):
    pass
