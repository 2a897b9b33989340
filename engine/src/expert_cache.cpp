#include "moe/expert_cache.h"


namespace moe {

void LfuExpertPolicy::decay() {
    for (auto it = frequency_.begin(); it != frequency_.end();) {
        it->second *= decay_;
        // Forgotten experts drop out so the map stays as small as the working set.
        it = it->second < 1e-6 ? frequency_.erase(it) : std::next(it);
    }
}

double LfuExpertPolicy::frequency(const ExpertKey& key) const {
    const auto it = frequency_.find(key);
    return it == frequency_.end() ? 0.0 : it->second;
}

std::optional<ExpertKey> LfuExpertPolicy::victim(const std::set<ExpertKey>& resident,
                                                 const std::set<ExpertKey>& keep) const {
    std::optional<ExpertKey> best;
    double bestFrequency = 0;
    for (const ExpertKey& k : resident) { // ordered: the first of equal frequencies wins
        if (keep.count(k)) continue;
        const double f = frequency(k);
        if (!best || f < bestFrequency) {
            best = k;
            bestFrequency = f;
        }
    }
    return best;
}

} // namespace moe
