#include "moe/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

namespace moe {

int32_t argmax(std::span<const float> logits) {
    return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

Sampler::Sampler(const SamplingParams& params) : params_(params) {
    rng_.seed(params.seed ? params.seed : std::random_device{}());
}

void Sampler::applyPenalties(std::vector<float>& logits, std::span<const int32_t> history, const SamplingParams& p) {
    if (p.repetitionPenalty == 1.0f && p.presencePenalty == 0.0f && p.frequencyPenalty == 0.0f) return;
    size_t first = 0;
    if (p.penaltyLastN >= 0 && history.size() > size_t(p.penaltyLastN)) first = history.size() - size_t(p.penaltyLastN);
    std::unordered_map<int32_t, int> counts;
    for (size_t i = first; i < history.size(); ++i)
        if (history[i] >= 0 && size_t(history[i]) < logits.size()) ++counts[history[i]];
    for (auto [id, n] : counts) {
        float& l = logits[size_t(id)];
        if (p.repetitionPenalty != 1.0f) l = l > 0 ? l / p.repetitionPenalty : l * p.repetitionPenalty;
        l -= p.presencePenalty + p.frequencyPenalty * float(n);
    }
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
    work_.assign(logits.begin(), logits.end());
    applyPenalties(work_, history, params_);
    if (params_.temperature <= 0.0f) return argmax(work_);

    // Candidates sorted by logit; top-k keeps the first k.
    order_.resize(work_.size());
    std::iota(order_.begin(), order_.end(), 0);
    size_t keep = work_.size();
    if (params_.topK > 0) keep = std::min(keep, size_t(params_.topK));
    auto byLogit = [&](int32_t a, int32_t b) { return work_[size_t(a)] > work_[size_t(b)]; };
    std::partial_sort(order_.begin(), order_.begin() + long(keep), order_.end(), byLogit);
    order_.resize(keep);

    // Softmax with temperature over the candidates.
    const float maxLogit = work_[size_t(order_[0])];
    std::vector<double> probs(keep);
    double sum = 0;
    for (size_t i = 0; i < keep; ++i) sum += probs[i] = std::exp(double(work_[size_t(order_[i])] - maxLogit) / params_.temperature);
    for (auto& p : probs) p /= sum;

    // Top-p: the smallest prefix whose mass reaches p. Min-p: drop tokens below minP × the best.
    size_t n = keep;
    if (params_.topP < 1.0f) {
        double mass = 0;
        for (size_t i = 0; i < keep; ++i) {
            mass += probs[i];
            if (mass >= params_.topP) { n = i + 1; break; }
        }
    }
    if (params_.minP > 0.0f) {
        const double floor = probs[0] * params_.minP;
        size_t m = 1;
        while (m < n && probs[m] >= floor) ++m;
        n = m;
    }
    std::discrete_distribution<size_t> pick(probs.begin(), probs.begin() + long(n));
    return order_[pick(rng_)];
}

} // namespace moe
