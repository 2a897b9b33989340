// Experts under a device memory budget: which routed experts stay resident,
// LFU eviction, and the counts behind ExpertCacheStats.
#include "moe/model.h"

#include "moe/routed_mlp.h"

#include <algorithm>

namespace moe {

RoutedMlp* Model::routedPart(size_t l) {
    MlpBlock* block = layers_.at(l).mlp.get();
    if (auto* r = dynamic_cast<RoutedMlp*>(block)) return r;
    if (auto* s = dynamic_cast<SharedExpertMoe*>(block)) return &s->routed();
    return nullptr;
}

void Model::setExpertBudget(uint64_t bytes, double decay) {
    ++revision_; // recorded steps point at expert buffers that are about to move
    if (bytes == 0) {
        for (size_t l = 0; l < layers_.size(); ++l)
            if (RoutedMlp* r = routedPart(l))
                for (uint32_t e = 0; e < r->expertCount(); ++e) r->makeResident(ctx_, e);
        cache_.reset();
        return;
    }
    cache_.emplace(ExpertCache{LfuExpertPolicy(decay), {}, {}, ~0ull});
    cache_->stats.budgetBytes = bytes;
    syncExpertCache();
}

void Model::resetExpertCacheStats() {
    if (!cache_) return;
    ExpertCacheStats& s = cache_->stats;
    s.hits = s.misses = s.bytesUploaded = s.evictions = 0;
    s.peakResidentBytes = s.residentBytes;
}

uint64_t Model::pageableExpertBytes() {
    uint64_t n = 0;
    for (size_t l = 0; l < layers_.size(); ++l)
        if (RoutedMlp* r = routedPart(l))
            for (uint32_t e = 0; e < r->expertCount(); ++e)
                if (r->ownsWeights(e)) n += r->expertBytes(e);
    return n;
}

uint64_t Model::expertHostCopyBytes() {
    uint64_t n = 0;
    for (size_t l = 0; l < layers_.size(); ++l)
        if (RoutedMlp* r = routedPart(l)) n += r->hostCopyBytes();
    return n;
}

void Model::syncExpertCache() {
    if (!cache_ || cache_->revision == revision_) return;
    // Blocks may have been replaced: start from an empty device set.
    for (size_t l = 0; l < layers_.size(); ++l)
        if (RoutedMlp* r = routedPart(l)) r->pageOutExperts(ctx_);
    cache_->resident.clear();
    cache_->stats.residentBytes = 0;
    cache_->revision = revision_;
}

void Model::requireExperts(size_t layer, RoutedMlp& routed, const std::vector<uint32_t>& tokensPerSlot) {
    ExpertCache& c = *cache_;
    std::set<ExpertKey> keep;
    std::vector<uint32_t> missing;
    uint64_t missingBytes = 0;
    for (uint32_t e = 0; e < routed.expertCount(); ++e) {
        if (tokensPerSlot.at(e) == 0) continue;
        const ExpertKey key{int(layer), e};
        c.policy.touch(key);
        if (!routed.ownsWeights(e)) { // the base MLP: always on the device
            ++c.stats.hits;
            continue;
        }
        keep.insert(key);
        if (routed.isResident(e)) {
            ++c.stats.hits;
        } else {
            ++c.stats.misses;
            missing.push_back(e);
            missingBytes += routed.expertBytes(e);
        }
    }
    while (c.stats.residentBytes + missingBytes > c.stats.budgetBytes) {
        const auto victim = c.policy.victim(c.resident, keep);
        if (!victim) break; // this layer's experts alone exceed the budget
        RoutedMlp& owner = *routedPart(size_t(victim->layer));
        owner.evict(victim->expert);
        c.stats.residentBytes -= owner.expertBytes(victim->expert);
        c.resident.erase(*victim);
        ++c.stats.evictions;
    }
    for (uint32_t e : missing) {
        c.stats.bytesUploaded += routed.makeResident(ctx_, e);
        c.stats.residentBytes += routed.expertBytes(e);
        c.resident.insert({int(layer), e});
    }
    c.stats.peakResidentBytes = std::max(c.stats.peakResidentBytes, c.stats.residentBytes);
}

} // namespace moe
