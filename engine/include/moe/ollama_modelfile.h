#pragma once
// An Ollama Modelfile for an exported GGUF file, so that
// `ollama create NAME -f FILE.Modelfile` gives the model its chat format,
// stop tokens and default sampling.
#include <optional>
#include <string>
#include <vector>

namespace moe {

struct ModelfileInputs {
    std::string ggufFile;                 // the file's name, relative to the Modelfile
    std::string chatTemplate;             // the model's Jinja chat template (may be empty)
    std::vector<std::string> stops;       // texts that end a reply (EOS pieces)
    std::optional<double> temperature, topP;
    std::optional<int> topK;
};

// The chat template is translated to Ollama's Go template syntax when it is
// one of the common families (ChatML, Llama 2 [INST], Llama 3, Gemma, Phi-3,
// Mistral); otherwise the Modelfile says so and leaves the template to
// Ollama, which reads tokenizer.chat_template from the GGUF file.
std::string ollamaModelfile(const ModelfileInputs& in, std::string* family = nullptr);

} // namespace moe
