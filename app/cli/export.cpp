// moe-cli export: a built MoE as a native sparse-MoE checkpoint.
#include "cli_common.h"

#include "moe/byte_size.h"
#include "moe/error.h"
#include "moe/export.h"
#include "moe/gguf_export.h"
#include "moe/selector.h"

#include <cstdio>
#include <iostream>

namespace moe::cli {
namespace {

struct ExportArgs {
    std::filesystem::path selector, model, out;
    std::string format, dtype, shardSize = "5GB", name;
    bool asJson = false, noModelfile = false;
};

// The commands that run the file in Ollama, LM Studio and llama.cpp.
void printRunCommands(const GgufExportReport& rep) {
    const std::string file = rep.out.string(), stem = rep.out.stem().string();
    std::printf("\nrun it:\n");
    if (!rep.modelfile.empty())
        std::printf("  ollama create %s -f %s && ollama run %s\n", stem.c_str(), rep.modelfile.c_str(), stem.c_str());
    std::printf("  LM Studio: copy it to ~/.lmstudio/models/moe-studio/%s/%s\n", stem.c_str(), rep.out.filename().c_str());
    std::printf("  llama.cpp: llama-server -m %s\n", file.c_str());
}

int runGgufExport(const ExportArgs& a) {
    GgufExportOptions o;
    o.out = a.out;
    o.name = a.name;
    o.modelfile = !a.noModelfile;
    if (!a.dtype.empty() && !parseGgufFileType(a.dtype, o.type))
        throw Error("--dtype \"" + a.dtype + "\": expected one of " + ggufFileTypeNames());
    size_t lastPercent = 101;
    auto progress = [&](const GgufExportProgress& p) {
        if (a.asJson || p.total == 0) return;
        const size_t pct = p.done * 100 / p.total;
        if (pct != lastPercent) std::fprintf(stderr, "\rexport gguf %3zu%%", pct);
        lastPercent = pct;
    };
    const GgufExportReport rep = a.model.empty() ? exportMoeGguf(loadSelectorAny(a.selector), o, progress)
                                                 : exportModelGguf(a.model, o, progress);
    if (!a.asJson) std::fprintf(stderr, "\n");
    json types = json::object();
    for (const auto& [type, count] : rep.tensorTypes) types[type] = count;
    if (a.asJson) {
        std::cout << json{{"out", rep.out.string()}, {"modelfile", rep.modelfile.string()},
                          {"architecture", rep.architecture}, {"warnings", rep.warnings}, {"tensors", rep.tensors},
                          {"bytes", rep.bytes}, {"parameters", rep.parameters}, {"experts", rep.experts},
                          {"experts_per_token", rep.expertsPerToken}, {"tensor_types", types}}
                         .dump()
                  << "\n";
        return 0;
    }
    for (const auto& w : rep.warnings) std::printf("warning: %s\n", w.c_str());
    std::string mix;
    for (const auto& [type, count] : rep.tensorTypes) mix += (mix.empty() ? "" : ", ") + type + " " + std::to_string(count);
    std::printf("%s: GGUF %s, %s", rep.out.c_str(), rep.architecture.c_str(), toString(o.type));
    if (rep.experts > 0) std::printf(", %d experts, top-%d", rep.experts, rep.expertsPerToken);
    std::printf(", %zu tensors (%s), %llu parameters, %s\n", rep.tensors, mix.c_str(),
                static_cast<unsigned long long>(rep.parameters), mib(rep.bytes).c_str());
    if (!rep.modelfile.empty()) std::printf("%s: Ollama Modelfile\n", rep.modelfile.c_str());
    printRunCommands(rep);
    return 0;
}

int runExport(const ExportArgs& a) {
    if (a.selector.empty() == a.model.empty())
        throw Error("export: give a selector (a built MoE) or --model (a model folder or .gguf file), not both");
    if (a.format == "gguf") return runGgufExport(a);
    if (!a.model.empty()) throw Error("export --model: only --format gguf converts a model");
    const Selector s = loadSelectorAny(a.selector);
    ExportOptions o;
    o.out = a.out;
    if (a.format.empty())
        o.format = defaultExportFormat(s);
    else if (!parseExportFormat(a.format, o.format))
        throw Error("--format \"" + a.format + "\": expected mixtral, qwen2_moe, qwen3_moe or gguf");
    o.dtype = a.dtype;
    o.shardBytes = parseByteSize(a.shardSize);
    size_t lastPercent = 101;
    const auto rep = exportMoe(s, o, [&](const ExportProgress& p) {
        if (a.asJson || p.total == 0) return;
        const size_t pct = p.done * 100 / p.total;
        if (pct != lastPercent) std::fprintf(stderr, "\rexport %s %3zu%%", p.stage.c_str(), pct);
        lastPercent = pct;
    });
    if (!a.asJson) std::fprintf(stderr, "\n");
    if (a.asJson) {
        std::cout << json{{"out", rep.out.string()}, {"files", rep.files}, {"warnings", rep.warnings},
                          {"tensors", rep.tensors}, {"bytes", rep.bytes}, {"parameters", rep.parameters},
                          {"experts", rep.experts}, {"experts_per_token", rep.expertsPerToken}}
                         .dump()
                  << "\n";
        return 0;
    }
    for (const auto& w : rep.warnings) std::printf("warning: %s\n", w.c_str());
    std::printf("%s: %s, %d experts, top-%d, %zu tensors, %llu parameters, %s in %zu files\n", rep.out.c_str(),
                toString(o.format), rep.experts, rep.expertsPerToken, rep.tensors,
                static_cast<unsigned long long>(rep.parameters), mib(rep.bytes).c_str(), rep.files.size());
    return 0;
}

} // namespace

Command addExportCommand(CLI::App& app) {
    auto a = std::make_shared<ExportArgs>();
    auto* cmd = app.add_subcommand(
        "export", "Write a built MoE as a native sparse-MoE checkpoint (Mixtral, Qwen2-MoE, Qwen3-MoE) or a GGUF file; "
                  "convert a model to GGUF");
    cmd->add_option("selector", a->selector, "Selector of the built MoE")->check(CLI::ExistingFile);
    cmd->add_option("--model,-m", a->model, "A model folder or .gguf file to convert (with --format gguf)")
        ->check(CLI::ExistingPath);
    cmd->add_option("--out,-o", a->out, "New output folder, or FILE.gguf")->required();
    cmd->add_option("--format", a->format,
                    "mixtral, qwen2_moe, qwen3_moe or gguf (default: qwen3_moe for a Qwen3 base, else mixtral)");
    cmd->add_option("--dtype", a->dtype,
                    "bf16, f16 or f32 (default: export_dtype, else the base's); for gguf also q8_0, q4_k_m, q5_k_m, "
                    "q6_k (default f16)");
    cmd->add_option("--name", a->name, "general.name of a GGUF file (default: the file's name)");
    cmd->add_flag("--no-modelfile", a->noModelfile, "No Ollama Modelfile beside a GGUF file");
    cmd->add_option("--shard-size", a->shardSize, "Largest safetensors shard (default 5GB)");
    cmd->add_flag("--json", a->asJson, "End with one JSON object");
    return {cmd, [a] { return runExport(*a); }};
}

} // namespace moe::cli
