#include "moe/gate_training.h"

#include "gate_trainer.h"
#include "moe/atomic_file.h"
#include "moe/error.h"
#include "moe/ops.h"
#include "moe/safetensors.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <set>

namespace moe {
namespace {

// Each shader invocation keeps all E logits in registers.
constexpr uint32_t kMaxExperts = 256;

struct PromptSpan {
    uint32_t first = 0, count = 0;
};

std::string where(const char* what, size_t layer) { return std::string(what) + " layer " + std::to_string(layer); }

// Checks the samples' shapes and labels; returns the prompts as token spans.
std::vector<PromptSpan> checkSamples(const GateSamples& s, const char* name, uint32_t nExperts, size_t layers) {
    const std::string n(name);
    if (s.hidden == 0) throw Error(n + " samples: hidden size is 0");
    if (s.features.size() != layers)
        throw Error(n + " samples: features for " + std::to_string(s.features.size()) + " layers, expected " +
                    std::to_string(layers));
    if (s.promptOf.size() != s.labels.size())
        throw Error(n + " samples: " + std::to_string(s.promptOf.size()) + " prompt indices for " +
                    std::to_string(s.labels.size()) + " tokens");
    if (s.labels.size() > 0xffffffffu) throw Error(n + " samples: too many tokens");
    for (size_t l = 0; l < layers; ++l)
        if (s.features[l].size() != s.labels.size() * size_t(s.hidden))
            throw Error(n + " samples, " + where("features of", l) + ": " + std::to_string(s.features[l].size()) +
                        " values, expected tokens x hidden = " + std::to_string(s.labels.size()) + " x " +
                        std::to_string(s.hidden));
    for (size_t t = 0; t < s.labels.size(); ++t)
        if (s.labels[t] < 0 || uint32_t(s.labels[t]) >= nExperts)
            throw Error(n + " samples, token " + std::to_string(t) + ": label " + std::to_string(s.labels[t]) +
                        " is not an expert index (0.." + std::to_string(nExperts - 1) + ")");
    std::vector<PromptSpan> prompts;
    std::set<uint32_t> seen;
    for (size_t t = 0; t < s.promptOf.size(); ++t) {
        if (t == 0 || s.promptOf[t] != s.promptOf[t - 1]) {
            if (!seen.insert(s.promptOf[t]).second)
                throw Error(n + " samples, token " + std::to_string(t) + ": the tokens of prompt " +
                            std::to_string(s.promptOf[t]) + " are not contiguous");
            prompts.push_back({uint32_t(t), 0});
        }
        ++prompts.back().count;
    }
    return prompts;
}

void checkGate(const GateWeights& g, const std::string& what) {
    if (g.nExperts == 0 || g.hidden == 0) throw Error(what + ": empty gate");
    if (g.weight.size() != size_t(g.nExperts) * g.hidden)
        throw Error(what + ": weight has " + std::to_string(g.weight.size()) + " values, expected " +
                    std::to_string(g.nExperts) + " x " + std::to_string(g.hidden));
    if (!g.bias.empty() && g.bias.size() != g.nExperts)
        throw Error(what + ": bias has " + std::to_string(g.bias.size()) + " values, expected " +
                    std::to_string(g.nExperts));
}

// torch.nn.Linear's default initialisation: uniform in ±1/sqrt(fan_in).
GateWeights defaultGate(uint32_t nExperts, uint32_t hidden, bool bias, std::mt19937_64& rng) {
    const float bound = 1.0f / std::sqrt(float(hidden));
    std::uniform_real_distribution<float> d(-bound, bound);
    GateWeights g;
    g.nExperts = nExperts;
    g.hidden = hidden;
    g.weight.resize(size_t(nExperts) * hidden);
    for (float& w : g.weight) w = d(rng);
    if (bias) {
        g.bias.resize(nExperts);
        for (float& b : g.bias) b = d(rng);
    }
    return g;
}

float mean(const std::vector<float>& v) {
    return v.empty() ? 0.0f : float(std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()));
}

std::string joinLayers(const std::vector<int>& layers) {
    std::string s;
    for (size_t i = 0; i < layers.size(); ++i) s += (i ? "," : "") + std::to_string(layers[i]);
    return s;
}

std::string formatFloat(const char* fmt, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, fmt, v);
    return buf;
}

} // namespace

// ---------------------------------------------------------------- training

GateTrainResult trainGates(vk::Context& ctx, const GateSamples& train, const GateSamples* validation, uint32_t nExperts,
                           const GateTrainOptions& opt, const std::vector<GateWeights>* init,
                           const std::function<void(const GateTrainProgress&)>& onProgress,
                           const std::atomic<bool>* cancel) {
    if (nExperts < 2 || nExperts > kMaxExperts)
        throw Error("gate training: " + std::to_string(nExperts) + " experts (2.." + std::to_string(kMaxExperts) +
                    " supported)");
    if (!(opt.lr > 0) || opt.epochs < 0 || opt.batchSize < 1 || !(opt.beta1 >= 0 && opt.beta1 < 1) ||
        !(opt.beta2 >= 0 && opt.beta2 < 1) || !(opt.eps > 0) || !(opt.weightDecay >= 0))
        throw Error("gate training: invalid options (lr > 0, epochs >= 0, batch size >= 1, betas in [0, 1), eps > 0, "
                    "weight decay >= 0)");
    const size_t nLayers = train.features.size();
    if (nLayers == 0) throw Error("gate training: no layers to train (training samples have no features)");
    const std::vector<PromptSpan> prompts = checkSamples(train, "training", nExperts, nLayers);
    if (prompts.empty()) throw Error("gate training: the training samples have no tokens");
    std::vector<PromptSpan> valPrompts;
    if (validation && validation->tokenCount() > 0) {
        valPrompts = checkSamples(*validation, "validation", nExperts, nLayers);
        if (validation->hidden != train.hidden)
            throw Error("validation samples: hidden size " + std::to_string(validation->hidden) +
                        " differs from the training samples' " + std::to_string(train.hidden));
    }

    std::mt19937_64 shuffleRng(opt.seed);
    std::vector<GateWeights> start;
    if (init) {
        if (init->size() != nLayers)
            throw Error("gate training: " + std::to_string(init->size()) + " initial gates for " +
                        std::to_string(nLayers) + " layers");
        for (size_t l = 0; l < nLayers; ++l) {
            const GateWeights& g = (*init)[l];
            checkGate(g, "initial gate of layer " + std::to_string(l));
            if (g.nExperts != nExperts || g.hidden != train.hidden)
                throw Error("initial gate of layer " + std::to_string(l) + ": shape [" + std::to_string(g.nExperts) +
                            ", " + std::to_string(g.hidden) + "], expected [" + std::to_string(nExperts) + ", " +
                            std::to_string(train.hidden) + "]");
            GateWeights copy = g;
            if (!opt.bias) copy.bias.clear();
            else if (copy.bias.empty()) copy.bias.assign(nExperts, 0.0f);
            start.push_back(std::move(copy));
        }
    } else {
        // A separate stream, so the initial weights do not depend on the shuffles.
        std::mt19937_64 initRng(opt.seed ^ 0x9e3779b97f4a7c15ull);
        for (size_t l = 0; l < nLayers; ++l) start.push_back(defaultGate(nExperts, train.hidden, opt.bias, initRng));
    }

    // The largest batch: the batchSize longest prompts.
    std::vector<uint32_t> lengths;
    for (const auto& p : prompts) lengths.push_back(p.count);
    std::sort(lengths.rbegin(), lengths.rend());
    const size_t perBatch = std::min<size_t>(size_t(opt.batchSize), prompts.size());
    const uint64_t maxBatchTokens = std::accumulate(lengths.begin(), lengths.begin() + perBatch, uint64_t(0));

    detail::GateTrainer trainer(ctx, train, nExperts, opt, start, uint32_t(maxBatchTokens));
    if (!valPrompts.empty()) trainer.setValidation(*validation);

    GateTrainResult result;
    const int stepsPerEpoch = int((prompts.size() + perBatch - 1) / perBatch);
    const int totalSteps = stepsPerEpoch * opt.epochs;
    const auto started = std::chrono::steady_clock::now();
    std::vector<uint32_t> order(prompts.size());
    std::vector<uint32_t> rows;
    for (int epoch = 1; epoch <= opt.epochs && !result.cancelled; ++epoch) {
        std::iota(order.begin(), order.end(), 0u);
        std::shuffle(order.begin(), order.end(), shuffleRng);
        for (int s = 0; s < stepsPerEpoch; ++s) {
            if (cancel && cancel->load()) {
                result.cancelled = true;
                break;
            }
            rows.clear();
            for (size_t i = size_t(s) * perBatch; i < std::min(order.size(), size_t(s + 1) * perBatch); ++i) {
                const PromptSpan& p = prompts[order[i]];
                for (uint32_t t = 0; t < p.count; ++t) rows.push_back(p.first + t);
            }
            LossRow row;
            row.loss = trainer.step(rows);
            row.step = trainer.stepsTaken();
            row.epoch = epoch;
            row.mean = mean(row.loss);

            GateTrainProgress progress;
            progress.epoch = epoch;
            progress.epochs = opt.epochs;
            progress.step = row.step;
            progress.totalSteps = totalSteps;
            progress.loss = row.loss;
            progress.meanLoss = row.mean;
            progress.elapsedSeconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            progress.etaSeconds = progress.elapsedSeconds / row.step * (totalSteps - row.step);
            progress.epochEnd = s == stepsPerEpoch - 1;
            if (progress.epochEnd && !valPrompts.empty()) {
                const auto probs = trainer.validationProbabilities();
                result.valAccuracyToken.clear();
                result.valAccuracyPrompt.clear();
                for (const auto& p : probs) {
                    const RoutingAccuracy acc = routingAccuracy(p, nExperts, validation->labels, validation->promptOf);
                    result.valAccuracyToken.push_back(acc.token);
                    result.valAccuracyPrompt.push_back(acc.prompt);
                }
                progress.valAccuracyToken = result.valAccuracyToken;
                progress.valAccuracyPrompt = result.valAccuracyPrompt;
                row.valAccuracy = mean(result.valAccuracyToken);
            }
            result.history.push_back(row);
            if (onProgress) onProgress(progress);
        }
    }
    for (size_t l = 0; l < nLayers; ++l) result.gates.push_back(trainer.weights(l));
    return result;
}

std::vector<float> gateProbabilities(vk::Context& ctx, const GateWeights& gate, const float* features, size_t n) {
    checkGate(gate, "gate");
    if (gate.nExperts > kMaxExperts)
        throw Error("gate: " + std::to_string(gate.nExperts) + " experts (at most " + std::to_string(kMaxExperts) +
                    " supported)");
    if (n == 0) return {};
    if (n > 0xffffffffu) throw Error("gate probabilities: too many tokens");
    const auto features32 = detail::GateFeatureMatrix::upload(ctx, features, uint32_t(n), gate.hidden);
    const vk::Buffer params = uploadFloats(ctx, detail::packGateParams(gate, features32.hiddenPadded));
    detail::GateStepHeader h;
    h.nTokens = uint32_t(n);
    std::vector<uint32_t> rows(n);
    std::iota(rows.begin(), rows.end(), 0u);
    vk::Buffer step(ctx, sizeof h + n * 4, vk::MemoryUse::Upload);
    step.upload(&h, sizeof h);
    step.upload(rows.data(), n * 4, sizeof h);
    vk::Buffer probs(ctx, n * gate.nExperts * sizeof(float), vk::MemoryUse::Readback);
    vk::Recorder rec(ctx);
    rec.begin();
    const vk::Buffer& none = ctx.placeholderBuffer(); // labels, loss, dlogits: training only
    detail::recordGateForward(ctx, rec, features32, gate.nExperts, params, step, uint32_t(n), false, none, probs, none,
                              none);
    rec.end();
    rec.submitAndWait();
    std::vector<float> out(n * gate.nExperts);
    probs.download(out.data(), out.size() * sizeof(float));
    return out;
}

RoutingAccuracy routingAccuracy(const std::vector<float>& probs, uint32_t nExperts, const std::vector<int32_t>& labels,
                                const std::vector<uint32_t>& promptOf) {
    if (nExperts == 0) throw Error("routing accuracy: no experts");
    if (probs.size() != labels.size() * nExperts)
        throw Error("routing accuracy: " + std::to_string(probs.size()) + " probabilities for " +
                    std::to_string(labels.size()) + " tokens x " + std::to_string(nExperts) + " experts");
    if (promptOf.size() != labels.size())
        throw Error("routing accuracy: " + std::to_string(promptOf.size()) + " prompt indices for " +
                    std::to_string(labels.size()) + " tokens");
    RoutingAccuracy r;
    r.confusion.assign(nExperts, std::vector<int>(nExperts, 0));
    if (labels.empty()) return r;
    auto argmax = [&](const float* p) { return int(std::max_element(p, p + nExperts) - p); };
    size_t tokensRight = 0, prompts = 0, promptsRight = 0;
    std::vector<double> sum(nExperts);
    std::vector<int> labelCount(nExperts);
    for (size_t first = 0; first < labels.size();) {
        size_t end = first;
        std::fill(sum.begin(), sum.end(), 0.0);
        std::fill(labelCount.begin(), labelCount.end(), 0);
        for (; end < labels.size() && promptOf[end] == promptOf[first]; ++end) {
            if (labels[end] < 0 || uint32_t(labels[end]) >= nExperts)
                throw Error("routing accuracy, token " + std::to_string(end) + ": label " +
                            std::to_string(labels[end]) + " is not an expert index");
            const float* p = probs.data() + end * nExperts;
            if (argmax(p) == labels[end]) ++tokensRight;
            for (uint32_t e = 0; e < nExperts; ++e) sum[e] += p[e];
            ++labelCount[labels[end]];
        }
        // Routing per sequence: probabilities averaged over the prompt, top-1.
        const int predicted = int(std::max_element(sum.begin(), sum.end()) - sum.begin());
        const int label = int(std::max_element(labelCount.begin(), labelCount.end()) - labelCount.begin());
        ++r.confusion[label][predicted];
        ++prompts;
        if (predicted == label) ++promptsRight;
        first = end;
    }
    r.token = float(double(tokensRight) / double(labels.size()));
    r.prompt = float(double(promptsRight) / double(prompts));
    return r;
}

// ---------------------------------------------------------------- training-free gates

GateWeights gateFromMeans(const std::vector<std::vector<float>>& positiveMeans,
                          const std::vector<std::vector<float>>& negativeMeans, bool bias) {
    if (positiveMeans.empty()) throw Error("gate from means: no experts");
    if (!negativeMeans.empty() && negativeMeans.size() != positiveMeans.size())
        throw Error("gate from means: " + std::to_string(negativeMeans.size()) + " negative means for " +
                    std::to_string(positiveMeans.size()) + " experts");
    GateWeights g;
    g.nExperts = uint32_t(positiveMeans.size());
    g.hidden = uint32_t(positiveMeans[0].size());
    if (g.hidden == 0) throw Error("gate from means: expert 0: empty positive mean");
    for (uint32_t e = 0; e < g.nExperts; ++e) {
        if (positiveMeans[e].size() != g.hidden)
            throw Error("gate from means: expert " + std::to_string(e) + ": positive mean has " +
                        std::to_string(positiveMeans[e].size()) + " values, expected " + std::to_string(g.hidden));
        const std::vector<float>* negative = negativeMeans.empty() || negativeMeans[e].empty() ? nullptr : &negativeMeans[e];
        if (negative && negative->size() != g.hidden)
            throw Error("gate from means: expert " + std::to_string(e) + ": negative mean has " +
                        std::to_string(negative->size()) + " values, expected " + std::to_string(g.hidden));
        std::vector<double> row(g.hidden);
        double norm = 0;
        for (uint32_t h = 0; h < g.hidden; ++h) {
            row[h] = double(positiveMeans[e][h]) - (negative ? double((*negative)[h]) : 0.0);
            norm += row[h] * row[h];
        }
        norm = std::sqrt(norm);
        if (!(norm > 0) || !std::isfinite(norm))
            throw Error("gate from means: expert " + std::to_string(e) +
                        (negative ? ": positive and negative means are identical" : ": positive mean is zero") +
                        " (or not finite), so it gives no routing direction");
        for (uint32_t h = 0; h < g.hidden; ++h) g.weight.push_back(float(row[h] / norm));
    }
    if (bias) g.bias.assign(g.nExperts, 0.0f);
    return g;
}

GateWeights randomGate(uint32_t nExperts, uint32_t hidden, uint64_t seed, bool bias) {
    if (nExperts == 0 || hidden == 0) throw Error("random gate: experts and hidden size must be positive");
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    GateWeights g;
    g.nExperts = nExperts;
    g.hidden = hidden;
    g.weight.resize(size_t(nExperts) * hidden);
    for (float& w : g.weight) w = d(rng);
    if (bias) g.bias.assign(nExperts, 0.0f);
    return g;
}

// ---------------------------------------------------------------- gate files

namespace {
std::string weightKey(int layer) { return "moe_gate." + std::to_string(layer) + ".weight"; }
std::string biasKey(int layer) { return "moe_gate." + std::to_string(layer) + ".bias"; }
} // namespace

void saveGates(const std::filesystem::path& file, const std::vector<int>& layers, const std::vector<GateWeights>& gates,
               const std::map<std::string, std::string>& metadata) {
    if (layers.size() != gates.size())
        throw Error(file.string() + ": " + std::to_string(gates.size()) + " gates for " +
                    std::to_string(layers.size()) + " layers");
    if (gates.empty()) throw Error(file.string() + ": no gates to save");
    if (std::set<int>(layers.begin(), layers.end()).size() != layers.size())
        throw Error(file.string() + ": layer list " + joinLayers(layers) + " names a layer twice");
    std::vector<TensorToWrite> tensors;
    for (size_t i = 0; i < gates.size(); ++i) {
        const GateWeights& g = gates[i];
        checkGate(g, file.string() + ": gate of layer " + std::to_string(layers[i]));
        if (g.nExperts != gates[0].nExperts || g.hidden != gates[0].hidden)
            throw Error(file.string() + ": gate of layer " + std::to_string(layers[i]) + " has shape [" +
                        std::to_string(g.nExperts) + ", " + std::to_string(g.hidden) + "], the first has [" +
                        std::to_string(gates[0].nExperts) + ", " + std::to_string(gates[0].hidden) + "]");
        tensors.push_back({weightKey(layers[i]), DType::F32, {int64_t(g.nExperts), int64_t(g.hidden)},
                           std::as_bytes(std::span<const float>(g.weight))});
        if (!g.bias.empty())
            tensors.push_back({biasKey(layers[i]), DType::F32, {int64_t(g.nExperts)},
                               std::as_bytes(std::span<const float>(g.bias))});
    }
    std::map<std::string, std::string> meta = metadata;
    meta["experts"] = std::to_string(gates[0].nExperts);
    meta["hidden_size"] = std::to_string(gates[0].hidden);
    meta["layers"] = joinLayers(layers);
    writeSafetensors(file, tensors, meta);
}

std::vector<GateWeights> loadGates(const std::filesystem::path& file, const std::vector<int>& layers, uint32_t nExperts,
                                   uint32_t hidden, std::map<std::string, std::string>* metadata) {
    SafetensorsFile st(file);
    const std::string f = file.string();
    // The file's gated layers must be exactly the requested ones.
    std::set<int> inFile;
    for (const auto& [name, view] : st.tensors()) {
        int layer = 0;
        char tail[16] = {0};
        if (std::sscanf(name.c_str(), "moe_gate.%d.%15s", &layer, tail) == 2 && std::string(tail) == "weight" &&
            name == weightKey(layer))
            inFile.insert(layer);
    }
    const std::set<int> wanted(layers.begin(), layers.end());
    if (inFile != wanted) {
        std::vector<int> fileList(inFile.begin(), inFile.end());
        std::string detail;
        for (int l : layers)
            if (!inFile.count(l)) {
                detail = ": tensor " + weightKey(l) + " is missing";
                break;
            }
        if (detail.empty())
            for (int l : inFile)
                if (!wanted.count(l)) {
                    detail = ": tensor " + weightKey(l) + " gates a layer that is not an MoE layer";
                    break;
                }
        throw Error(f + detail + " (the file gates layers [" + joinLayers(fileList) + "], the MoE layers are [" +
                    joinLayers(layers) + "])");
    }
    std::vector<GateWeights> gates;
    for (int l : layers) {
        const TensorView& w = st.tensors().at(weightKey(l));
        const std::vector<int64_t> expected{int64_t(nExperts), int64_t(hidden)};
        if (w.shape != expected)
            throw Error(f + ": tensor " + weightKey(l) + ": has shape " + w.shapeString() + ", expected [" +
                        std::to_string(nExperts) + ", " + std::to_string(hidden) + "] (experts, hidden size)");
        GateWeights g;
        g.nExperts = nExperts;
        g.hidden = hidden;
        try {
            g.weight = toFloat32(w);
            if (auto it = st.tensors().find(biasKey(l)); it != st.tensors().end()) {
                if (it->second.shape != std::vector<int64_t>{int64_t(nExperts)})
                    throw Error(f + ": tensor " + biasKey(l) + ": has shape " + it->second.shapeString() +
                                ", expected [" + std::to_string(nExperts) + "]");
                g.bias = toFloat32(it->second);
            }
        } catch (const Error& e) {
            const std::string msg = e.what();
            if (msg.rfind(f, 0) == 0) throw;
            throw Error(f + ": tensor " + weightKey(l) + ": " + msg);
        }
        for (float v : g.weight)
            if (!std::isfinite(v)) throw Error(f + ": tensor " + weightKey(l) + ": holds a NaN or infinity");
        for (float v : g.bias)
            if (!std::isfinite(v)) throw Error(f + ": tensor " + biasKey(l) + ": holds a NaN or infinity");
        gates.push_back(std::move(g));
    }
    if (metadata) *metadata = st.metadata();
    return gates;
}

// ---------------------------------------------------------------- loss CSV

void writeLossCsv(const std::filesystem::path& file, const std::vector<int>& layers, const std::vector<LossRow>& history,
                  bool anymoeHeader, bool withValAccuracy) {
    std::string out;
    if (anymoeHeader) {
        // mistral.rs AnyMoE's columns: gating layers numbered from 0 in list order.
        out = "Step";
        for (size_t i = 0; i < layers.size(); ++i) out += ",Gating layer " + std::to_string(i);
        if (withValAccuracy) out += ",Validation accuracy";
    } else {
        out = "step,epoch";
        for (int l : layers) out += ",loss_layer_" + std::to_string(l);
        out += ",mean";
        if (withValAccuracy) out += ",val_accuracy";
    }
    out += "\n";
    for (size_t i = 0; i < history.size(); ++i) {
        const LossRow& r = history[i];
        if (r.loss.size() != layers.size())
            throw Error(file.string() + ": loss row " + std::to_string(i) + " has " + std::to_string(r.loss.size()) +
                        " layer losses, expected " + std::to_string(layers.size()));
        if (anymoeHeader) {
            out += "Step " + std::to_string(i);
            for (float v : r.loss) out += "," + formatFloat("%.4f", v);
            if (withValAccuracy) out += "," + (r.valAccuracy ? formatFloat("%.4f", *r.valAccuracy) : std::string());
        } else {
            out += std::to_string(r.step) + "," + std::to_string(r.epoch);
            for (float v : r.loss) out += "," + formatFloat("%.7g", v);
            out += "," + formatFloat("%.7g", r.mean);
            if (withValAccuracy) out += "," + (r.valAccuracy ? formatFloat("%.7g", *r.valAccuracy) : std::string());
        }
        out += "\n";
    }
    writeFileAtomic(file, out);
}

} // namespace moe
