#pragma once
// The tokenizer.* metadata of a GGUF export, as llama.cpp's converter writes
// it: from a model folder's tokenizer.model (SentencePiece, `llama`) or
// byte-level BPE tokenizer.json (`gpt2`, with the tokenizer.ggml.pre name of
// its split regex), or copied from a GGUF source.
#include "moe/gguf_writer.h"
#include "moe/model_config.h"

#include <string>
#include <vector>

namespace moe {

struct GgufVocabFacts {
    std::string model;                 // tokenizer.ggml.model
    std::string chatTemplate;          // tokenizer.chat_template, empty when none
    std::vector<std::string> stopTexts; // the pieces of the EOS ids (for an Ollama Modelfile)
};

// Throws moe::Error naming the file and field when the tokenizer has no GGUF form.
GgufVocabFacts addGgufTokenizer(GgufWriter& w, const ModelConfig& c);

// The tokenizer.ggml.pre name of a byte-level BPE whose pre-tokenizer splits
// by `regexes` in turn (tokenizer.json's Split patterns), or empty.
std::string ggufPreTokenizerName(const std::vector<std::string>& regexes, bool ignoreMerges);

} // namespace moe
