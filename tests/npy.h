#pragma once
// Reads the torch reference logits (.npy files) the shared models ship with.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace moe::test {

// Minimal .npy reader for little-endian float32 C-order arrays.
inline std::vector<float> readNpy(const std::filesystem::path& path, std::vector<size_t>& shape) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path.string());
    char magic[6];
    in.read(magic, 6);
    if (std::string(magic, 6) != "\x93NUMPY") throw std::runtime_error(path.string() + ": not an .npy file");
    uint8_t version[2];
    in.read(reinterpret_cast<char*>(version), 2);
    uint32_t headerLen = 0;
    if (version[0] == 1) {
        uint16_t h;
        in.read(reinterpret_cast<char*>(&h), 2);
        headerLen = h;
    } else {
        in.read(reinterpret_cast<char*>(&headerLen), 4);
    }
    std::string header(headerLen, '\0');
    in.read(header.data(), headerLen);
    if (header.find("'<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos)
        throw std::runtime_error(path.string() + ": expected little-endian float32 in C order");
    auto open = header.find('(', header.find("'shape'"));
    auto close = header.find(')', open);
    shape.clear();
    std::string dims = header.substr(open + 1, close - open - 1);
    size_t total = 1;
    for (size_t p = 0; p < dims.size();) {
        size_t q = dims.find(',', p);
        std::string d = dims.substr(p, q == std::string::npos ? std::string::npos : q - p);
        if (d.find_first_of("0123456789") != std::string::npos) {
            shape.push_back(std::stoul(d));
            total *= shape.back();
        }
        if (q == std::string::npos) break;
        p = q + 1;
    }
    std::vector<float> data(total);
    in.read(reinterpret_cast<char*>(data.data()), std::streamsize(total * 4));
    if (!in) throw std::runtime_error(path.string() + ": truncated");
    return data;
}

} // namespace moe::test
