#include "moe/hf_cache.h"

#include "moe/error.h"
#include "moe/atomic_file.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace moe {
namespace fs = std::filesystem;
namespace {

std::string trim(std::string s) {
    const auto notSpace = [](unsigned char c) { return !std::isspace(c); };
    s.erase(s.begin(), std::find_if(s.begin(), s.end(), notSpace));
    s.erase(std::find_if(s.rbegin(), s.rend(), notSpace).base(), s.end());
    return s;
}

} // namespace

std::vector<fs::path> huggingFaceCacheRoots() {
    std::vector<fs::path> roots;
    auto add = [&](const fs::path& p) {
        if (!p.empty() && std::find(roots.begin(), roots.end(), p) == roots.end()) roots.push_back(p);
    };
    auto env = [](const char* name) -> std::string {
        const char* v = std::getenv(name);
        return v && *v ? v : "";
    };
    if (const std::string v = env("HF_HUB_CACHE"); !v.empty()) add(v);
    if (const std::string v = env("HUGGINGFACE_HUB_CACHE"); !v.empty()) add(v); // older name
    if (const std::string v = env("HF_HOME"); !v.empty()) add(fs::path(v) / "hub");
    if (const std::string v = env("XDG_CACHE_HOME"); !v.empty()) add(fs::path(v) / "huggingface" / "hub");
    if (const std::string v = env("HOME"); !v.empty()) add(fs::path(v) / ".cache" / "huggingface" / "hub");
    return roots;
}

fs::path findInHuggingFaceCache(const fs::path& root, const std::string& id, std::string& looked) {
    const fs::path repo = root / ("models--" + id.substr(0, id.find('/')) + "--" + id.substr(id.find('/') + 1));
    std::error_code ec;
    if (!fs::is_directory(repo, ec)) {
        looked = repo.string() + " (no such folder)";
        return {};
    }
    const fs::path refMain = repo / "refs" / "main";
    if (fs::is_regular_file(refMain, ec)) {
        std::string hash;
        try {
            hash = trim(readTextFile(refMain));
        } catch (const Error&) {
        }
        const fs::path snap = repo / "snapshots" / hash;
        if (!hash.empty() && fs::is_directory(snap, ec)) return snap;
        looked = snap.string() + " (refs/main names a missing snapshot)";
        return {};
    }
    // No refs/main (e.g. downloaded by revision): a single snapshot is unambiguous.
    std::vector<fs::path> snaps;
    for (fs::directory_iterator it(repo / "snapshots", ec), end; !ec && it != end; it.increment(ec)) {
        std::error_code dec;
        if (it->is_directory(dec)) snaps.push_back(it->path());
    }
    if (snaps.size() == 1) return snaps.front();
    looked = repo.string() + (snaps.empty() ? " (no snapshots)" : " (no refs/main and several snapshots)");
    return {};
}

} // namespace moe
