#include "moe/builder.h"
#include "moe/quant.h"

#include "moe/dataset.h"
#include "moe/error.h"
#include "moe/expert_loader.h"
#include "moe/scoring.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>

namespace moe {
namespace {

using Clock = std::chrono::steady_clock;
double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string joined(const std::vector<std::string>& v, const char* sep) {
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
    return out;
}

// Mean over tokens of each layer's features, for the rows of one slot.
std::vector<std::vector<float>> meanFeatures(const GateSamples& samples) {
    std::vector<std::vector<float>> means(samples.features.size(), std::vector<float>(samples.hidden, 0.0f));
    const size_t n = samples.tokenCount();
    if (n == 0) return {};
    for (size_t l = 0; l < samples.features.size(); ++l) {
        std::vector<double> acc(samples.hidden, 0.0);
        for (size_t t = 0; t < n; ++t)
            for (uint32_t h = 0; h < samples.hidden; ++h) acc[h] += samples.features[l][t * samples.hidden + h];
        for (uint32_t h = 0; h < samples.hidden; ++h) means[l][h] = float(acc[h] / double(n));
    }
    return means;
}

std::vector<DatasetRow> promptRows(const std::vector<std::string>& prompts) {
    std::vector<DatasetRow> rows;
    for (const auto& p : prompts) rows.push_back({p, 0, {}});
    return rows;
}

// The slot's positive and negative prompts (expert order, base first with include_base).
std::vector<ExpertPrompts> slotPrompts(const Selector& s) {
    std::vector<ExpertPrompts> out;
    if (s.includeBase) out.push_back(s.basePrompts);
    for (size_t e = 0; e < s.experts.size(); ++e)
        out.push_back(e < s.expertPrompts.size() ? s.expertPrompts[e] : ExpertPrompts{});
    return out;
}

bool allSlotsHavePrompts(const Selector& s) {
    for (const auto& p : slotPrompts(s))
        if (p.positive.empty()) return false;
    return true;
}

// mergekit's `hidden` gates on our router input: per layer and slot, the
// normalised mean MLP input over the positive prompts minus the negatives'.
std::vector<GateWeights> hiddenGates(Session& session, const Tokenizer& tok, const ChatTemplate& tmpl,
                                     const Selector& s, const std::vector<int>& layers, const std::atomic<bool>* cancel) {
    std::vector<std::vector<std::vector<float>>> pos(layers.size()), neg(layers.size()); // [layer][slot][hidden]
    CaptureProgress cp;
    cp.onPrompt = [&](size_t, size_t) {
        throwIfCancelled(cancel, "capturing the gates' prompts");
        return true;
    };
    for (const auto& prompts : slotPrompts(s)) {
        auto p = meanFeatures(captureSamples(session, tok, tmpl, promptRows(prompts.positive), layers, s.useChatTemplate, cp));
        auto n = prompts.negative.empty()
                     ? std::vector<std::vector<float>>{}
                     : meanFeatures(captureSamples(session, tok, tmpl, promptRows(prompts.negative), layers, s.useChatTemplate, cp));
        for (size_t l = 0; l < layers.size(); ++l) {
            pos[l].push_back(p.at(l));
            neg[l].push_back(n.empty() ? std::vector<float>{} : n[l]);
        }
    }
    std::vector<GateWeights> gates;
    for (size_t l = 0; l < layers.size(); ++l) gates.push_back(gateFromMeans(pos[l], neg[l], s.gateBias));
    return gates;
}

// mergekit's `cheap_embed`: the same rows at every layer, from token embeddings.
std::vector<GateWeights> cheapEmbedGates(const Model& model, const Tokenizer& tok, const Selector& s, size_t nLayers) {
    const TensorView& table = model.weights().require(model.config().weightPrefix + "embed_tokens.weight");
    const uint32_t H = uint32_t(model.config().hiddenSize);
    const size_t rowBytes = moe::rowBytes(table.dtype, H, table.name);
    auto rowOf = [&](int32_t id, std::vector<double>& acc) {
        TensorView row = table;
        row.shape = {1, int64_t(H)};
        row.data = table.data + size_t(id) * rowBytes;
        row.nbytes = rowBytes;
        const std::vector<float> v = toFloat32(row);
        for (uint32_t h = 0; h < H; ++h) acc[h] += v[h];
    };
    auto meanEmbedding = [&](const std::vector<std::string>& prompts) {
        std::vector<double> acc(H, 0.0);
        size_t n = 0;
        for (const auto& p : prompts)
            for (int32_t id : tok.encode(p, false, false)) {
                rowOf(id, acc);
                ++n;
            }
        std::vector<float> mean(H);
        for (uint32_t h = 0; h < H; ++h) mean[h] = n ? float(acc[h] / double(n)) : 0.0f;
        return mean;
    };
    std::vector<std::vector<float>> pos, neg;
    for (const auto& prompts : slotPrompts(s)) {
        pos.push_back(meanEmbedding(prompts.positive));
        neg.push_back(prompts.negative.empty() ? std::vector<float>{} : meanEmbedding(prompts.negative));
    }
    return std::vector<GateWeights>(nLayers, gateFromMeans(pos, neg, s.gateBias));
}

// Next-token loss of the validation prompts in one routing mode: each
// prompt's first half is the prompt, its second half is scored.
double routingValidationLoss(MoeModel& moe, Session& session, const std::vector<PromptTokens>& prompts,
                             const std::atomic<bool>* cancel) {
    const uint32_t vocab = uint32_t(moe.model().config().vocabSize);
    double total = 0;
    size_t count = 0;
    for (const auto& p : prompts) {
        if (cancel && cancel->load()) break; // the caller keeps the modes scored so far
        if (p.ids.size() < 4) continue;
        const size_t split = std::max<size_t>(2, p.ids.size() / 2);
        session.reset();
        std::vector<float> rows;
        moe.forwardPrompt(session, std::span<const int32_t>(p.ids.data(), split), &rows);
        std::vector<float> logits(rows.end() - vocab, rows.end());
        session.setReply(true);
        if (p.ids.size() > split + 1)
            session.forward(std::span<const int32_t>(p.ids.data() + split, p.ids.size() - split - 1), &logits);
        session.setReply(false);
        session.setPinnedSlot(-1);
        const std::span<const int32_t> targets(p.ids.data() + split, p.ids.size() - split);
        total += sumNextTokenLoss(logits, targets, vocab);
        count += targets.size();
    }
    return count ? total / double(count) : 0;
}

std::vector<LayerAccuracy> accuracyOf(vk::Context& ctx, const GateSamples& samples, const std::vector<int>& layers,
                                      const std::vector<GateWeights>& gates, uint32_t nExperts, RoutingMode mode,
                                      double halflife) {
    std::vector<LayerAccuracy> out;
    const size_t n = samples.tokenCount();
    if (n == 0) return out;
    const double decay = halflife > 0 ? std::exp2(-1.0 / halflife) : 1.0;
    for (size_t l = 0; l < layers.size(); ++l) {
        std::vector<float> probs = gateProbabilities(ctx, gates[l], samples.features[l].data(), n);
        if (mode != RoutingMode::Token) {
            // Running sums within each prompt (argmax is scale-free).
            std::vector<double> run(nExperts, 0.0);
            for (size_t t = 0; t < n; ++t) {
                if (t == 0 || samples.promptOf[t] != samples.promptOf[t - 1]) std::fill(run.begin(), run.end(), 0.0);
                for (uint32_t e = 0; e < nExperts; ++e) {
                    run[e] = decay * run[e] + probs[t * nExperts + e];
                    probs[t * nExperts + e] = float(run[e]);
                }
            }
        }
        const RoutingAccuracy a = routingAccuracy(probs, nExperts, samples.labels, samples.promptOf);
        out.push_back({layers[l], a.token, a.prompt, a.confusion});
    }
    return out;
}

} // namespace

PromptTokens tokenizePrompt(const Tokenizer& tok, const ChatTemplate& tmpl, const std::string& prompt, bool useTemplate) {
    PromptTokens p;
    const auto& sp = tok.special();
    if (!useTemplate || tmpl.isFallback()) {
        p.ids = tok.encode(prompt, true, false);
        p.contentBegin = (!p.ids.empty() && sp.bos && p.ids[0] == *sp.bos) ? 1 : 0;
        p.contentEnd = p.ids.size();
        return p;
    }
    const std::string text = tmpl.render({{"user", prompt}}, true, sp.bosText, sp.eosText);
    p.ids = tok.encode(text, false, true);
    const size_t at = text.find(prompt);
    if (at == std::string::npos || prompt.empty()) {
        p.contentEnd = p.ids.size();
        return p;
    }
    // Token counts of the text around the prompt mark its span (a token
    // merging across the boundary can shift it by one; harmless here).
    const size_t before = tok.encode(text.substr(0, at), false, true).size();
    const size_t after = tok.encode(text.substr(at + prompt.size()), false, true).size();
    p.contentBegin = std::min(before, p.ids.size());
    p.contentEnd = p.ids.size() > after ? p.ids.size() - after : p.ids.size();
    if (p.contentEnd <= p.contentBegin) {
        p.contentBegin = 0;
        p.contentEnd = p.ids.size();
    }
    return p;
}

GateSamples captureSamples(Session& session, const Tokenizer& tok, const ChatTemplate& tmpl,
                           const std::vector<DatasetRow>& rows, const std::vector<int>& layers, bool useTemplate,
                           const CaptureProgress& progress) {
    GateSamples s;
    s.hidden = uint32_t(session.model().config().hiddenSize);
    s.features.resize(layers.size());
    session.setCaptureLayers(layers);
    session.setPinnedSlot(-1);
    session.setReply(false);
    for (size_t i = 0; i < rows.size(); ++i) {
        if (progress.onPrompt && !progress.onPrompt(i, rows.size())) break;
        PromptTokens p = tokenizePrompt(tok, tmpl, rows[i].prompt, useTemplate);
        if (p.ids.empty()) continue;
        if (p.ids.size() > session.maxContext()) {
            p.ids.resize(session.maxContext());
            p.contentEnd = std::min(p.contentEnd, p.ids.size());
        }
        session.reset();
        session.forward(p.ids);
        for (size_t l = 0; l < layers.size(); ++l) {
            const auto& c = session.captured(l);
            s.features[l].insert(s.features[l].end(), c.begin() + long(p.contentBegin * s.hidden),
                                 c.begin() + long(p.contentEnd * s.hidden));
        }
        for (size_t t = p.contentBegin; t < p.contentEnd; ++t) {
            s.labels.push_back(rows[i].expert);
            s.promptOf.push_back(uint32_t(i));
        }
    }
    session.setCaptureLayers({});
    session.reset();
    return s;
}

void splitRows(const std::vector<DatasetRow>& rows, double fraction, uint64_t seed, std::vector<DatasetRow>& train,
               std::vector<DatasetRow>& validation) {
    std::map<int, std::vector<size_t>> byLabel;
    for (size_t i = 0; i < rows.size(); ++i) byLabel[rows[i].expert].push_back(i);
    std::vector<bool> isVal(rows.size(), false);
    std::mt19937_64 rng(seed);
    for (auto& [label, idx] : byLabel) {
        std::shuffle(idx.begin(), idx.end(), rng);
        size_t n = size_t(std::lround(fraction * double(idx.size())));
        if (fraction > 0 && n == 0 && idx.size() >= 2) n = 1;
        n = std::min(n, idx.size() > 1 ? idx.size() - 1 : 0);
        for (size_t k = 0; k < n; ++k) isVal[idx[k]] = true;
    }
    train.clear();
    validation.clear();
    for (size_t i = 0; i < rows.size(); ++i) (isVal[i] ? validation : train).push_back(rows[i]);
}

// "gate.safetensors" -> "gate.cancelled.safetensors": where a cancelled
// training's output goes, beside the last complete one.
static std::filesystem::path cancelledName(const std::filesystem::path& file) {
    return file.parent_path() / (file.stem().string() + ".cancelled" + file.extension().string());
}

// ---------------------------------------------------------------- build

namespace {

// Fills `result` as it goes, so that a stop keeps the report of what was done.
void build(vk::Context& ctx, const Selector& s, const std::function<void(const BuildProgress&)>& onProgress,
           const std::atomic<bool>* cancel, const std::atomic<bool>* abandon, BuildResult& result) {
    const auto t0 = Clock::now();
    BuildReport& rep = result.report;
    auto report = [&](const std::string& stage, size_t done, size_t total, const GateTrainProgress* tp = nullptr) {
        if (onProgress) onProgress({stage, done, total, tp});
    };
    auto cancelled = [&] { return cancel && cancel->load(); };

    report("validate", 0, 1);
    SelectionFacts facts = validateSelection(s, cancel);
    rep.warnings = facts.warnings;
    const uint32_t E = uint32_t(facts.nExperts), H = uint32_t(facts.base.hiddenSize);

    // The base model alone (dense) captures the router inputs.
    LoadProgress loading;
    loading.cancel = cancel;
    auto model = Model::load(ctx, s.baseModel, loading, 0, s.quantize);
    auto tok = Tokenizer::load(s.baseModel);
    const ChatTemplate tmpl = ChatTemplate::fromModelDir(s.baseModel);
    Session session(*model);

    std::vector<DatasetRow> trainRows, valRows;
    if (!facts.dataset.empty()) splitRows(facts.dataset, s.validationSplit, s.seed, trainRows, valRows);
    if (s.gateMode != GateMode::Trained) valRows = facts.dataset; // nothing is fitted to the dataset
    auto capture = [&](const std::vector<DatasetRow>& rows, const char* what) {
        CaptureProgress cp;
        cp.onPrompt = [&](size_t done, size_t total) {
            report(std::string("capture ") + what, done, total);
            return !cancelled();
        };
        const auto tc = Clock::now();
        GateSamples g = captureSamples(session, *tok, tmpl, rows, facts.layers, s.useChatTemplate, cp);
        rep.captureSeconds += secondsSince(tc);
        rep.captureTokens += g.tokenCount();
        return g;
    };

    std::vector<GateWeights> gates;
    GateSamples val;
    // A cancelled training never replaces the last complete gates: its
    // partial gates go to gate.cancelled.safetensors beside them.
    bool trainingCancelled = false;
    const std::filesystem::path gatesOut = gatesFile(s), partialGatesOut = cancelledName(gatesOut);
    std::vector<std::string> names;
    for (const auto& e : facts.experts) names.push_back(e.name);
    std::map<std::string, std::string> meta = {{"expert_ids", joined(names, ",")},
                                               {"include_base", s.includeBase ? "true" : "false"},
                                               {"gate_mode", toString(s.gateMode)},
                                               {"top_k", std::to_string(s.topK)},
                                               {"dataset_hash", facts.dataset.empty() ? "" : datasetHash(facts.dataset)}};
    if (s.routing) meta["routing"] = toString(*s.routing);
    auto saveBuiltGates = [&] {
        std::filesystem::create_directories(gatesFolder(s));
        meta["cancelled"] = rep.cancelled ? "true" : "false";
        saveGates(trainingCancelled ? partialGatesOut : gatesOut, facts.layers, gates, meta);
    };
    if (!s.training) {
        report("gates", 0, 1);
        gates = loadGates(gatesFile(s), facts.layers, E, H);
    } else if (s.gateMode == GateMode::Trained) {
        GateSamples train = capture(trainRows, "training prompts");
        val = capture(valRows, "validation prompts");
        if (cancelled()) {
            rep.cancelled = true;
            return;
        }
        std::vector<GateWeights> init;
        if (allSlotsHavePrompts(s)) init = hiddenGates(session, *tok, tmpl, s, facts.layers, cancel); // closed-form start
        GateTrainOptions opt;
        opt.lr = float(s.lr);
        opt.epochs = s.epochs;
        opt.batchSize = s.batchSize;
        opt.seed = s.seed;
        opt.bias = s.gateBias;
        const auto tt = Clock::now();
        GateTrainResult tr = trainGates(ctx, train, val.tokenCount() ? &val : nullptr, E, opt,
                                        init.empty() ? nullptr : &init,
                                        [&](const GateTrainProgress& p) { report("train", size_t(p.step), size_t(p.totalSteps), &p); },
                                        cancel);
        rep.trainSeconds = secondsSince(tt);
        rep.trainSteps = int(tr.history.size());
        rep.history = tr.history;
        rep.cancelled = tr.cancelled;
        trainingCancelled = tr.cancelled;
        gates = std::move(tr.gates);
        if (!s.lossCsvPath.empty()) {
            // A cancelled run's curve goes beside the last complete one, not over it.
            rep.lossCsv = trainingCancelled ? cancelledName(s.lossCsvPath) : s.lossCsvPath;
            writeLossCsv(rep.lossCsv, facts.layers, rep.history, s.anymoeLossHeader, !s.anymoeLossHeader);
        }
        // Saved now, so that a failure after training (installing the
        // experts, choosing the routing) keeps the trained gates; saved again
        // at the end with the routing chosen and the validation accuracy.
        saveBuiltGates();
        rep.gates = trainingCancelled ? partialGatesOut : gatesOut;
        if (trainingCancelled)
            rep.warnings.push_back("training cancelled after " + std::to_string(rep.trainSteps) +
                                   " steps: its gates are in " + partialGatesOut.string() + "; " + gatesOut.string() +
                                   (std::filesystem::exists(gatesOut) ? " keeps the last complete build's gates"
                                                                      : " was not written"));
    } else {
        report("gates", 0, 1);
        if (s.gateMode == GateMode::Hidden) gates = hiddenGates(session, *tok, tmpl, s, facts.layers, cancel);
        else if (s.gateMode == GateMode::CheapEmbed) gates = cheapEmbedGates(*model, *tok, s, facts.layers.size());
        else
            for (size_t l = 0; l < facts.layers.size(); ++l) gates.push_back(randomGate(E, H, s.seed + l, s.gateBias));
        if (!valRows.empty()) val = capture(valRows, "validation prompts");
    }
    // Stopped in the capture of training-free gates: nothing to install.
    if (cancelled() && !trainingCancelled) throw Cancelled("capturing the validation prompts");
    if (cancelled() && gates.empty()) {
        rep.cancelled = true;
        return;
    }
    if (val.tokenCount()) rep.layers = accuracyOf(ctx, val, facts.layers, gates, E, RoutingMode::Token, 0);

    // Install the routed layers into this model.
    report("experts", 0, 1);
    std::vector<PromptTokens> valPrompts;
    for (const auto& r : valRows) valPrompts.push_back(tokenizePrompt(*tok, tmpl, r.prompt, s.useChatTemplate));
    // A stop during training keeps the gates trained so far and installs them
    // (the user asked for those); a stop before or after training stops here.
    LoadProgress experts;
    experts.cancel = trainingCancelled ? abandon : cancel;
    throwIfCancelled(experts.cancel, "installing the experts");
    result.moe = MoeModel::load(ctx, s, facts, gates, std::move(model), 0, experts); // the capture model, made sparse
    MoeModel& moe = *result.moe;
    rep.expertBytes = moe.expertBytes();

    // Routing mode: the selector's, else the lowest next-token loss on the validation prompts.
    Session moeSession(moe.model());
    if (s.routing) {
        rep.routing = *s.routing;
    } else if (valPrompts.empty()) {
        rep.routing = RoutingMode::Running;
    } else {
        double best = 1e300;
        const RoutingMode modes[] = {RoutingMode::Token, RoutingMode::Running, RoutingMode::Sequence, RoutingMode::Likelihood};
        for (size_t i = 0; i < 4; ++i) {
            if (cancelled()) break;
            report("routing", i, 4);
            moe.setRouting(modes[i]);
            const double loss = routingValidationLoss(moe, moeSession, valPrompts, cancel);
            if (cancelled()) break;
            rep.validationLoss[toString(modes[i])] = loss;
            if (loss < best) {
                best = loss;
                rep.routing = modes[i];
            }
        }
        rep.routingChosen = true;
    }
    // Stopped while choosing the routing of complete gates: they are saved
    // already; the MoE is not returned half-chosen.
    if (cancelled() && !trainingCancelled) throw Cancelled("choosing the routing");
    moe.setRouting(rep.routing);

    meta["routing"] = toString(rep.routing);
    // "layer:token/prompt,..." for model cards (exports).
    std::string accuracy;
    for (const auto& l : rep.layers)
        accuracy += (accuracy.empty() ? "" : ",") + std::to_string(l.layer) + ":" + std::to_string(l.token) + "/" +
                    std::to_string(l.prompt);
    meta["validation_accuracy"] = accuracy;
    if (s.training) saveBuiltGates();
    rep.gates = trainingCancelled ? partialGatesOut : gatesOut;
    rep.seconds = secondsSince(t0);
}

} // namespace

BuildResult buildMoe(vk::Context& ctx, const Selector& s, const std::function<void(const BuildProgress&)>& onProgress,
                     const std::atomic<bool>* cancel, const std::atomic<bool>* abandon) {
    BuildResult result;
    try {
        build(ctx, s, onProgress, cancel, abandon, result);
    } catch (const Cancelled&) {
        // Stopped in validation, loading, capture, expert loading or routing:
        // no MoE; the gates of a training were saved already.
        result.moe.reset();
        result.report.cancelled = true;
    }
    return result;
}

std::vector<LayerAccuracy> evaluateRouting(Session& baseSession, const Tokenizer& tok, const ChatTemplate& tmpl,
                                           const std::vector<DatasetRow>& rows, const std::vector<int>& layers,
                                           const std::vector<GateWeights>& gates, uint32_t nExperts, RoutingMode mode,
                                           double halflife, bool useTemplate) {
    for (const auto& r : rows)
        if (r.expert < 0 || uint32_t(r.expert) >= nExperts)
            throw Error("dataset label " + std::to_string(r.expert) + " is outside the MoE's " +
                        std::to_string(nExperts) + " experts");
    GateSamples samples = captureSamples(baseSession, tok, tmpl, rows, layers, useTemplate);
    return accuracyOf(baseSession.model().context(), samples, layers, gates, nExperts, mode, halflife);
}

} // namespace moe
