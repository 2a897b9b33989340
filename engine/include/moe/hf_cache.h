#pragma once
// The local Hugging Face hub cache: where it is, and the snapshot folder of a
// model id in it (as huggingface_hub lays it out: models--org--name/,
// refs/main naming a folder under snapshots/).
#include <filesystem>
#include <string>
#include <vector>

namespace moe {

// $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE, $HF_HOME/hub,
// $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub, in that order,
// without duplicates (whether or not they exist).
std::vector<std::filesystem::path> huggingFaceCacheRoots();
// The snapshot folder of `id` ("org/name") under one cache root, or empty;
// `looked` then says what was tried.
std::filesystem::path findInHuggingFaceCache(const std::filesystem::path& root, const std::string& id,
                                             std::string& looked);

} // namespace moe
