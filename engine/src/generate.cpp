#include "moe/generate.h"

#include <algorithm>
#include <chrono>

#include "moe/error.h"

namespace moe {
namespace {

using Clock = std::chrono::steady_clock;
double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Length of the longest suffix of `text` that is a proper prefix of a stop
// string: that much text is held back until it is known not to be a stop.
size_t heldBackLength(const std::string& text, const std::vector<std::string>& stops) {
    size_t hold = 0;
    for (const auto& s : stops)
        for (size_t n = std::min(s.size() - 1, text.size()); n > hold; --n)
            if (text.compare(text.size() - n, n, s, 0, n) == 0) { hold = n; break; }
    return hold;
}

} // namespace

GenerateResult generate(Session& session, const Tokenizer& tokenizer, const std::vector<int32_t>& prompt,
                        const GenerateOptions& options, const std::function<bool(const std::string&)>& onText) {
    GenerateResult result;
    result.promptTokens = int(prompt.size());
    Sampler sampler(options.sampling);
    std::vector<int32_t> history = prompt;
    StreamingDecoder decoder(tokenizer);
    std::string pending; // decoded text not yet handed to onText
    for (const auto& s : options.stopStrings)
        if (s.empty()) throw Error("a stop string must not be empty");

    // However the reply ends, sequences sharing the session stop waiting for this one's next token.
    struct DecodingEnds {
        Session& s;
        ~DecodingEnds() { s.finishDecoding(); }
    } decodingEnds{session};
    std::unique_lock<std::mutex> turn;
    if (options.forwardLock) turn = std::unique_lock<std::mutex>(*options.forwardLock, std::defer_lock);
    auto t0 = Clock::now();
    if (turn.mutex()) turn.lock();
    session.setReply(false);
    std::span<const float> logits = options.prefill ? options.prefill(session, prompt) : session.forward(prompt);
    if (turn.mutex()) turn.unlock();
    session.setReply(true); // sequence routing keeps the prompt's choice for the reply
    result.promptSeconds = secondsSince(t0);
    auto decodeStart = Clock::now();

    auto emit = [&](const std::string& piece) {
        result.text += piece;
        return !onText || onText(piece);
    };
    for (;;) {
        if (options.cancel && options.cancel->load()) { result.stopReason = "cancelled"; break; }
        if (int(result.tokens.size()) >= options.maxTokens) { result.stopReason = "length"; break; }
        const int32_t next = sampler.sample(logits, history);
        if (tokenizer.isEos(next)) { result.stopReason = "eos"; break; }
        result.tokens.push_back(next);
        history.push_back(next);
        pending += decoder.push(next);

        bool stopped = false;
        for (const auto& s : options.stopStrings)
            if (auto at = pending.find(s); at != std::string::npos) {
                pending.resize(at);
                stopped = true;
            }
        if (stopped) {
            emit(pending);
            pending.clear();
            result.stopReason = "stop";
            break;
        }
        const size_t hold = heldBackLength(pending, options.stopStrings);
        if (pending.size() > hold) {
            std::string out = pending.substr(0, pending.size() - hold);
            pending.erase(0, pending.size() - hold);
            if (!emit(out)) { result.stopReason = "cancelled"; break; }
        }
        if (int(result.tokens.size()) >= options.maxTokens) { result.stopReason = "length"; break; }
        if (session.position() >= session.maxContext()) { result.stopReason = "context"; break; }
        if (turn.mutex()) turn.lock();
        logits = session.forward(std::span<const int32_t>(&next, 1));
        if (turn.mutex()) turn.unlock();
        ++result.decodeSteps;
    }
    if (result.stopReason != "stop" && result.stopReason != "cancelled") {
        pending += decoder.flush();
        emit(pending);
    }
    result.decodeSeconds = secondsSince(decodeStart);
    session.setReply(false);
    return result;
}

} // namespace moe
