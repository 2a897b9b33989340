#include "moe/byte_size.h"

#include "moe/error.h"

#include <cctype>
#include <map>

namespace moe {

uint64_t parseByteSize(const std::string& text) {
    size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
    std::string unit = text.substr(i);
    for (char& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
    static const std::map<std::string, double> kUnits = {
        {"", 1},       {"B", 1},          {"KB", 1e3},         {"MB", 1e6},         {"GB", 1e9},
        {"TB", 1e12},  {"KIB", 1024.0},   {"MIB", 1048576.0},  {"GIB", 1073741824.0}};
    const auto it = kUnits.find(unit);
    double number = 0;
    try {
        number = i > 0 ? std::stod(text.substr(0, i)) : 0;
    } catch (const std::exception&) {
    }
    if (it == kUnits.end() || !(number > 0))
        throw Error("\"" + text + "\": expected a size such as 5GB, 500MB or 2GiB");
    return uint64_t(number * it->second);
}

} // namespace moe
