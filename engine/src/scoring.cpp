#include "moe/scoring.h"

#include "moe/error.h"

#include <cmath>
#include <limits>

namespace moe {

double sumNextTokenLoss(std::span<const float> logits, std::span<const int32_t> targets, uint32_t vocab) {
    if (logits.size() < targets.size() * size_t(vocab)) throw Error("internal: fewer logit rows than targets");
    double total = 0;
    for (size_t i = 0; i < targets.size(); ++i) {
        const float* row = logits.data() + i * vocab;
        double mx = row[0];
        for (uint32_t v = 1; v < vocab; ++v) mx = std::max(mx, double(row[v]));
        double sum = 0;
        for (uint32_t v = 0; v < vocab; ++v) sum += std::exp(double(row[v]) - mx);
        total += mx + std::log(sum) - double(row[targets[i]]);
    }
    return total;
}

LikelihoodPick forwardWithLikelihood(Session& session, std::span<const int32_t> tokens,
                                     const std::vector<int>& candidates, std::vector<float>* allLogits) {
    const std::vector<int>& slots = candidates;
    if (slots.empty()) throw Error("likelihood routing needs at least one candidate");
    const uint32_t vocab = uint32_t(session.model().config().vocabSize);
    const uint32_t start = session.position();
    LikelihoodPick pick;
    double best = std::numeric_limits<double>::infinity();
    std::vector<float> logits;
    for (size_t i = 0; i < slots.size(); ++i) {
        session.truncate(start);
        session.setPinnedSlot(slots[i]);
        logits.clear();
        session.forward(tokens, &logits);
        const double loss = tokens.size() > 1
                                ? sumNextTokenLoss(logits, tokens.subspan(1), vocab) / double(tokens.size() - 1)
                                : 0.0;
        pick.candidates.push_back(slots[i]);
        pick.loss.push_back(loss);
        if (loss < best) {
            best = loss;
            pick.slot = slots[i];
        }
    }
    // Leave the winner's cache: run it again unless it was the last scored.
    if (pick.slot != slots.back()) {
        session.truncate(start);
        session.setPinnedSlot(pick.slot);
        logits.clear();
        session.forward(tokens, &logits);
    }
    if (allLogits) allLogits->insert(allLogits->end(), logits.begin(), logits.end());
    return pick;
}

PerplexityResult perplexity(Session& session, const Tokenizer& tokenizer, const std::string& text,
                            const PerplexityOptions& opt) {
    if (opt.window < 2) throw Error("the perplexity window must hold at least 2 tokens");
    if (opt.promptTokens >= opt.window)
        throw Error("--prompt-tokens (" + std::to_string(opt.promptTokens) + ") must be below the window (" +
                    std::to_string(opt.window) + ")");
    const uint32_t vocab = uint32_t(session.model().config().vocabSize);
    const std::vector<int32_t> ids = tokenizer.encode(text, /*addSpecial=*/false, /*parseSpecial=*/false);
    const std::vector<int>& bos = session.model().config().bosTokenIds;
    PerplexityResult r;
    size_t windows = (ids.size() + opt.window - 1) / opt.window;
    if (opt.maxWindows) windows = std::min(windows, opt.maxWindows);
    double total = 0;
    for (size_t w = 0; w < windows; ++w) {
        if (opt.progress && !opt.progress(w, windows)) {
            r.cancelled = true;
            break;
        }
        const size_t from = w * opt.window, to = std::min(ids.size(), from + opt.window);
        std::vector<int32_t> seq(to - from + (bos.empty() ? 0 : 1));
        if (!bos.empty()) seq[0] = bos[0];
        std::copy(ids.begin() + long(from), ids.begin() + long(to), seq.end() - long(to - from));
        const size_t promptLen = std::min(seq.size() - 1, size_t(bos.empty() ? 0 : 1) + opt.promptTokens);
        if (promptLen == 0 || seq.size() - promptLen == 0) continue; // nothing to predict from / to score
        session.reset();
        session.setReply(false);
        session.setPinnedSlot(-1);
        std::vector<float> logits;
        const std::span<const int32_t> prompt(seq.data(), promptLen);
        if (!opt.likelihoodSlots.empty() && promptLen > 1) {
            r.picks.push_back(forwardWithLikelihood(session, prompt, opt.likelihoodSlots, &logits).slot);
        } else {
            session.forward(prompt, &logits);
        }
        // Only the last prompt row is needed: it predicts the first scored token.
        std::vector<float> rows(logits.end() - vocab, logits.end());
        session.setReply(true);
        if (seq.size() > promptLen + 1)
            session.forward(std::span<const int32_t>(seq.data() + promptLen, seq.size() - promptLen - 1), &rows);
        const std::span<const int32_t> targets(seq.data() + promptLen, seq.size() - promptLen);
        total += sumNextTokenLoss(rows, targets, vocab);
        r.tokens += targets.size();
        ++r.windows;
    }
    session.setReply(false);
    session.setPinnedSlot(-1);
    r.loss = r.tokens ? total / double(r.tokens) : 0;
    r.perplexity = std::exp(r.loss);
    return r;
}

} // namespace moe
