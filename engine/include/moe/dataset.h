#pragma once
// The gate-training dataset in mistral.rs AnyMoE's JSON form:
//   {"rows": [{"prompt": "...", "expert": 0, "image_urls": ["..."]}, ...]}
// `expert` is the label (with include_base, 0 is the base model's own MLP).
#include <filesystem>
#include <string>
#include <vector>

namespace moe {

struct DatasetRow {
    std::string prompt;
    int expert = 0;
    std::vector<std::string> imageUrls; // optional in the file; kept for round trips
    bool operator==(const DatasetRow&) const = default;
};

// Throws moe::Error naming the file, and the row index and field at fault
// ("amoe.json: rows[3].expert: -1 is negative"); JSON syntax errors give
// <file>:<line>:<column>.
std::vector<DatasetRow> loadDataset(const std::filesystem::path& file);
// Writes atomically (temp file, then rename).
void saveDataset(const std::vector<DatasetRow>& rows, const std::filesystem::path& file);
// FNV-1a 64 over the rows in order (prompt, label, image urls, each length-
// prefixed): 16 lowercase hex digits, stable across runs and machines. Gate
// metadata records it to tell which data trained a gate.
std::string datasetHash(const std::vector<DatasetRow>& rows);

} // namespace moe
