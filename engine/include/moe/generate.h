#pragma once
// Token-by-token generation over a Session: prefill the prompt, then decode
// one token per step, streaming text, until EOS, a stop string or the limit.
#include "moe/session.h"
#include "moe/sampler.h"
#include "moe/tokenizer.h"

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace moe {

struct GenerateOptions {
    int maxTokens = 128;
    std::vector<std::string> stopStrings;
    SamplingParams sampling;
    // Runs the prompt instead of session.forward (MoE likelihood routing picks
    // an expert here); returns the last token's logits.
    std::function<std::span<const float>(Session&, std::span<const int32_t>)> prefill;
    // Checked before every token: set (from any thread) to stop ("cancelled").
    const std::atomic<bool>* cancel = nullptr;
    // Held around the prefill and every decode step: sessions of one model
    // generating on several threads take turns on it (null: not shared).
    std::mutex* forwardLock = nullptr;
};

struct GenerateResult {
    std::vector<int32_t> tokens; // generated ids (the stop token excluded)
    std::string text;            // their text, cut before any stop string
    std::string stopReason;      // "eos", "stop", "length", "context", "cancelled"
    int promptTokens = 0;
    double promptSeconds = 0;    // prefill time (= time to first token, less sampling)
    double decodeSeconds = 0;    // one-token steps after the prefill, with sampling
    int decodeSteps = 0;
    double promptTokensPerSecond() const { return promptSeconds > 0 ? promptTokens / promptSeconds : 0; }
    double decodeTokensPerSecond() const { return decodeSeconds > 0 ? decodeSteps / decodeSeconds : 0; }
};

// `onText` receives each new piece of text as soon as it is final; returning
// false stops generation ("cancelled").
GenerateResult generate(Session& session, const Tokenizer& tokenizer, const std::vector<int32_t>& prompt,
                        const GenerateOptions& options, const std::function<bool(const std::string&)>& onText = {});

} // namespace moe
