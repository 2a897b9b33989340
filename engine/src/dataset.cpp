// AnyMoE gate-training datasets (JSON): strict reading with row/field errors.
#include "moe/dataset.h"

#include "moe/atomic_file.h"
#include "json_input.h"
#include "moe/error.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <limits>

namespace moe {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// nlohmann reports a byte offset; people want line:column (both 1-based,
// column counted in bytes).
std::string lineColumn(const std::string& text, size_t byte) {
    byte = std::min(byte, text.size());
    size_t line = 1, lineStart = 0;
    for (size_t i = 0; i < byte; ++i)
        if (text[i] == '\n') {
            ++line;
            lineStart = i + 1;
        }
    // nlohmann's offset counts the characters read, so this is the column of
    // the last character it read (the end of the offending token).
    const size_t column = byte > lineStart ? byte - lineStart : 1;
    return std::to_string(line) + ":" + std::to_string(column);
}

std::string typeName(const json& j) {
    switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a non-integer number";
    default: return "something else";
    }
}

} // namespace

std::vector<DatasetRow> loadDataset(const fs::path& file) {
    const std::string name = file.string();
    const std::string text = readTextFile(file);
    json root;
    try {
        root = parseJsonChecked(text, file);
    } catch (const json::parse_error& e) {
        // e.what() is "[json.exception...] parse error at line L, column C: <why>"; keep <why>.
        std::string why = e.what();
        if (const size_t col = why.find("column "); col != std::string::npos)
            if (const size_t colon = why.find(": ", col); colon != std::string::npos) why = why.substr(colon + 2);
        throw Error(name + ":" + lineColumn(text, e.byte) + ": JSON syntax error: " + why);
    }
    if (!root.is_object()) throw Error(name + ": expected an object {\"rows\": [...]}, got " + typeName(root));
    const auto rowsIt = root.find("rows");
    if (rowsIt == root.end()) throw Error(name + ": rows: missing (expected {\"rows\": [...]})");
    if (!rowsIt->is_array()) throw Error(name + ": rows: expected an array, got " + typeName(*rowsIt));
    if (rowsIt->empty()) throw Error(name + ": rows: is empty (a dataset needs at least one labelled prompt)");

    std::vector<DatasetRow> rows;
    rows.reserve(rowsIt->size());
    for (size_t i = 0; i < rowsIt->size(); ++i) {
        const json& r = (*rowsIt)[i];
        const std::string at = name + ": rows[" + std::to_string(i) + "]";
        if (!r.is_object()) throw Error(at + ": expected an object {\"prompt\", \"expert\"}, got " + typeName(r));
        DatasetRow row;

        const auto prompt = r.find("prompt");
        if (prompt == r.end()) throw Error(at + ".prompt: missing");
        if (!prompt->is_string()) throw Error(at + ".prompt: expected a string, got " + typeName(*prompt));
        row.prompt = prompt->get<std::string>();
        if (row.prompt.empty()) throw Error(at + ".prompt: is empty");

        const auto expert = r.find("expert");
        if (expert == r.end()) throw Error(at + ".expert: missing");
        if (!expert->is_number_integer())
            throw Error(at + ".expert: expected an integer label, got " + typeName(*expert));
        if (expert->is_number_unsigned() ? expert->get<uint64_t>() > uint64_t(std::numeric_limits<int>::max())
                                         : expert->get<int64_t>() > std::numeric_limits<int>::max())
            throw Error(at + ".expert: " + jsonSnippet(*expert) + " is too large");
        if (!expert->is_number_unsigned() && expert->get<int64_t>() < 0)
            throw Error(at + ".expert: " + jsonSnippet(*expert) + " is negative");
        row.expert = expert->get<int>();

        if (const auto urls = r.find("image_urls"); urls != r.end() && !urls->is_null()) {
            if (!urls->is_array()) throw Error(at + ".image_urls: expected an array of strings, got " + typeName(*urls));
            for (size_t k = 0; k < urls->size(); ++k) {
                if (!(*urls)[k].is_string())
                    throw Error(at + ".image_urls[" + std::to_string(k) + "]: expected a string, got " +
                                typeName((*urls)[k]));
                row.imageUrls.push_back((*urls)[k].get<std::string>());
            }
        }
        rows.push_back(std::move(row));
    }
    return rows;
}

void saveDataset(const std::vector<DatasetRow>& rows, const fs::path& file) {
    nlohmann::ordered_json out;
    out["rows"] = nlohmann::ordered_json::array();
    for (const DatasetRow& r : rows) {
        nlohmann::ordered_json row;
        row["prompt"] = r.prompt;
        row["expert"] = r.expert;
        if (!r.imageUrls.empty()) row["image_urls"] = r.imageUrls;
        out["rows"].push_back(std::move(row));
    }
    std::string text;
    try {
        text = out.dump(1) + "\n";
    } catch (const json::type_error& e) { // invalid UTF-8 in a prompt
        throw Error(file.string() + ": cannot save: " + e.what());
    }
    writeFileAtomic(file, text);
}

std::string datasetHash(const std::vector<DatasetRow>& rows) {
    uint64_t h = 0xcbf29ce484222325ull; // FNV-1a 64 offset basis
    auto bytes = [&](const void* p, size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        for (size_t i = 0; i < n; ++i) {
            h ^= b[i];
            h *= 0x100000001b3ull; // FNV prime
        }
    };
    // Fixed-width little-endian integers, so the digest does not depend on the host.
    auto u64 = [&](uint64_t v) {
        unsigned char le[8];
        for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>(v >> (8 * i));
        bytes(le, 8);
    };
    auto str = [&](const std::string& s) {
        u64(s.size()); // length prefix: ("ab","c") and ("a","bc") differ
        bytes(s.data(), s.size());
    };
    u64(rows.size());
    for (const DatasetRow& r : rows) {
        str(r.prompt);
        u64(static_cast<uint64_t>(static_cast<int64_t>(r.expert)));
        u64(r.imageUrls.size());
        for (const auto& u : r.imageUrls) str(u);
    }
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    return hex;
}

} // namespace moe
