#include "moe/ollama_modelfile.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace moe {

namespace {

struct Family {
    const char* name;
    const char* marker;   // text only this family's Jinja templates contain
    const char* goTemplate;
    std::vector<std::string> stops;
};

// Ollama's templates for the families, over .Messages (system messages included).
const std::vector<Family>& families() {
    static const std::vector<Family> kFamilies = {
        {"chatml", "<|im_start|>",
         "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n",
         {"<|im_start|>", "<|im_end|>"}},
        {"llama3", "<|start_header_id|>",
         "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end "
         "}}<|start_header_id|>assistant<|end_header_id|>\n\n",
         {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}},
        {"gemma", "<start_of_turn>",
         "{{- range .Messages }}<start_of_turn>{{ if eq .Role \"assistant\" }}model{{ else }}{{ .Role }}{{ end }}\n"
         "{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n",
         {"<start_of_turn>", "<end_of_turn>"}},
        {"phi3", "<|assistant|>",
         "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n",
         {"<|end|>", "<|user|>", "<|assistant|>"}},
        // Llama 2 and Mistral: the system prompt inside the first [INST].
        {"llama2", "<<SYS>>",
         "{{- range $i, $_ := .Messages }}{{- if eq .Role \"user\" }}[INST] {{ if and (eq $i 1) $.System }}<<SYS>>\n"
         "{{ $.System }}\n<</SYS>>\n\n{{ end }}{{ .Content }} [/INST]{{- else if eq .Role \"assistant\" }} "
         "{{ .Content }}</s>{{- end }}{{- end }}",
         {"[INST]", "[/INST]"}},
        {"mistral", "[INST]",
         "{{- range .Messages }}{{- if eq .Role \"user\" }}[INST] {{ .Content }} [/INST]{{- else if eq .Role "
         "\"assistant\" }}{{ .Content }}</s>{{- end }}{{- end }}",
         {"[INST]", "[/INST]"}},
    };
    return kFamilies;
}

std::string quoted(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

std::string number(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.6g", v);
    return b;
}

} // namespace

std::string ollamaModelfile(const ModelfileInputs& in, std::string* familyName) {
    const Family* family = nullptr;
    for (const Family& f : families())
        if (in.chatTemplate.find(f.marker) != std::string::npos) {
            family = &f;
            break;
        }
    if (familyName) *familyName = family ? family->name : "";
    std::ostringstream m;
    m << "# Ollama Modelfile written by MoE Studio: ollama create NAME -f THIS_FILE\n"
      << "FROM ./" << in.ggufFile << "\n\n";
    if (family) {
        m << "# The model's chat template (" << family->name << "), in Ollama's syntax.\n"
          << "TEMPLATE \"\"\"" << family->goTemplate << "\"\"\"\n\n";
    } else if (in.chatTemplate.empty()) {
        m << "# The model has no chat template; Ollama sends prompts as they are.\n\n";
    } else {
        m << "# The chat template is none of the families MoE Studio translates; Ollama takes it\n"
          << "# from the GGUF file's tokenizer.chat_template.\n\n";
    }
    std::vector<std::string> stops = in.stops;
    if (family)
        for (const auto& s : family->stops) stops.push_back(s);
    std::vector<std::string> written;
    for (const auto& s : stops) {
        if (s.empty() || std::find(written.begin(), written.end(), s) != written.end()) continue;
        written.push_back(s);
        m << "PARAMETER stop " << quoted(s) << "\n";
    }
    if (in.temperature) m << "PARAMETER temperature " << number(*in.temperature) << "\n";
    if (in.topP) m << "PARAMETER top_p " << number(*in.topP) << "\n";
    if (in.topK) m << "PARAMETER top_k " << *in.topK << "\n";
    return m.str();
}

} // namespace moe
