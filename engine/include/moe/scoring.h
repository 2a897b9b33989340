#pragma once
// Scoring text with a model: next-token loss, perplexity over windows, and
// likelihood routing (each candidate expert, pinned in every MoE layer,
// scores the prompt; the lowest loss decodes the reply).
#include "moe/session.h"
#include "moe/tokenizer.h"

#include <functional>
#include <span>
#include <string>
#include <vector>

namespace moe {

// Sum of -log softmax(logits[i])[targets[i]] over the rows (logits [n, vocab]).
double sumNextTokenLoss(std::span<const float> logits, std::span<const int32_t> targets, uint32_t vocab);

struct LikelihoodPick {
    int slot = -1;             // the chosen slot, now pinned in the session
    std::vector<int> candidates; // slots scored, in order
    std::vector<double> loss;  // their mean next-token loss on the tokens
};

// Forwards `tokens` once per candidate slot (pinned, from the same position),
// keeps the one whose predictions of tokens[1..] have the lowest mean loss,
// leaves it pinned and its cache in the session, and returns the logits of
// the last token like Session::forward (all rows into `allLogits` if given).
LikelihoodPick forwardWithLikelihood(Session& session, std::span<const int32_t> tokens, const std::vector<int>& candidates,
                                     std::vector<float>* allLogits = nullptr);

struct PerplexityOptions {
    uint32_t window = 256;      // tokens per window (each window starts a fresh sequence, after BOS)
    uint32_t promptTokens = 0;  // the first P tokens of each window are the prompt, not scored
    size_t maxWindows = 0;      // 0 = every window of the text
    std::vector<int> likelihoodSlots; // non-empty: likelihood routing over these slots, decided by the prompt
    std::function<bool(size_t window, size_t windows)> progress; // return false to cancel
};

struct PerplexityResult {
    double loss = 0;        // nats per scored token
    double perplexity = 0;
    size_t tokens = 0;      // scored tokens
    size_t windows = 0;
    std::vector<int> picks; // likelihood routing: the slot chosen per window
    bool cancelled = false;
};

PerplexityResult perplexity(Session& session, const Tokenizer& tokenizer, const std::string& text,
                            const PerplexityOptions& options);

} // namespace moe
