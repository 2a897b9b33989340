#pragma once
// llama.cpp's tokenizer test cases (models/ggml-vocab-*.gguf.inp/.out from its
// bundle, fetched by packaging/fetch-test-data.sh).
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace moe::test {

inline std::string readWholeFile(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}

struct ExpectedCase {
    std::string text;
    std::vector<int32_t> ids;
};

// llama.cpp's vocab tests: .inp holds the texts, each followed by a line
// "__ggml_vocab_test__"; .out holds one line of space-separated ids per text.
inline std::vector<ExpectedCase> readLlamaCppCases(const std::filesystem::path& inp) {
    const std::string raw = readWholeFile(inp);
    const std::string separator = "\n__ggml_vocab_test__\n";
    std::vector<ExpectedCase> cases;
    for (size_t pos = 0; pos < raw.size();) {
        const size_t next = raw.find(separator, pos);
        cases.push_back({raw.substr(pos, next == std::string::npos ? std::string::npos : next - pos), {}});
        if (next == std::string::npos) break;
        pos = next + separator.size();
    }
    std::istringstream out(readWholeFile(std::filesystem::path(inp).replace_extension(".out")));
    std::string line;
    for (size_t i = 0; std::getline(out, line); ++i) {
        if (i >= cases.size()) throw std::runtime_error(inp.string() + ": more id lines than texts");
        std::istringstream ids(line);
        for (int32_t id; ids >> id;) cases[i].ids.push_back(id);
    }
    return cases;
}

} // namespace moe::test
