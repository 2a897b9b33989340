#pragma once
// Experts under a memory budget: which (layer, expert) pairs are resident on
// the device. Least-frequently-used eviction with frequencies that decay every
// step, so the resident set follows the conversation's current topic. The
// policy is host-only bookkeeping; RoutedMlp moves the weights.
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>

namespace moe {

struct ExpertKey {
    int layer = 0;
    uint32_t expert = 0;
    auto operator<=>(const ExpertKey&) const = default;
};

// Counters of an expert cache since load (or resetStats()).
struct ExpertCacheStats {
    uint64_t hits = 0;          // expert uses whose weights were resident
    uint64_t misses = 0;        // expert uses that needed an upload first
    uint64_t bytesUploaded = 0; // host → device expert bytes
    uint64_t evictions = 0;
    uint64_t residentBytes = 0; // now
    uint64_t peakResidentBytes = 0;
    uint64_t budgetBytes = 0;
};

class LfuExpertPolicy {
public:
    // `decay` multiplies every frequency once per step (0.9: a use counts
    // half after ~7 steps).
    explicit LfuExpertPolicy(double decay = 0.9) : decay_(decay) {}

    // An expert was used in this step.
    void touch(const ExpertKey& key) { frequency_[key] += 1.0; }
    // Ends a step: every frequency decays.
    void decay();
    double frequency(const ExpertKey& key) const;
    // The resident expert to evict: lowest frequency, ties broken by the
    // lower (layer, expert); never one of `keep`. nullopt when none qualifies.
    std::optional<ExpertKey> victim(const std::set<ExpertKey>& resident, const std::set<ExpertKey>& keep) const;

private:
    double decay_;
    std::map<ExpertKey, double> frequency_;
};

} // namespace moe
