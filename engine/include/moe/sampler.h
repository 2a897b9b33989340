#pragma once
// Next-token sampling on the host from one row of logits.
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace moe {

struct SamplingParams {
    float temperature = 0.8f;      // <= 0: greedy
    int topK = 40;                 // <= 0: off
    float topP = 0.95f;            // >= 1: off
    float minP = 0.05f;            // <= 0: off
    float repetitionPenalty = 1.0f; // 1: off (CTRL-style: divides positive logits, multiplies negative)
    float presencePenalty = 0.0f;  // subtracted once from every token already present
    float frequencyPenalty = 0.0f; // subtracted per occurrence
    int penaltyLastN = 64;         // how many recent tokens the penalties look at (<0: all)
    uint64_t seed = 0;             // 0: a random seed
};

class Sampler {
public:
    explicit Sampler(const SamplingParams& params);
    // `history`: prompt and generated ids so far (for the penalties).
    int32_t sample(std::span<const float> logits, std::span<const int32_t> history);
    const SamplingParams& params() const { return params_; }

    // Applies the penalties in place (exposed for tests).
    static void applyPenalties(std::vector<float>& logits, std::span<const int32_t> history, const SamplingParams& p);

private:
    SamplingParams params_;
    std::mt19937_64 rng_;
    std::vector<float> work_;
    std::vector<int32_t> order_;
};

int32_t argmax(std::span<const float> logits);

} // namespace moe
