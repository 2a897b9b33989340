// moe-cli export: a built MoE as a native sparse-MoE checkpoint.
#include "cli_common.h"

#include "moe/byte_size.h"
#include "moe/error.h"
#include "moe/export.h"
#include "moe/selector.h"

#include <cstdio>
#include <iostream>

namespace moe::cli {
namespace {

struct ExportArgs {
    std::filesystem::path selector, out;
    std::string format = "mixtral", dtype, shardSize = "5GB";
    bool asJson = false;
};

int runExport(const ExportArgs& a) {
    const Selector s = loadSelectorAny(a.selector);
    ExportOptions o;
    o.out = a.out;
    if (!parseExportFormat(a.format, o.format))
        throw Error("--format \"" + a.format + "\": expected mixtral or qwen2_moe");
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
    auto* cmd = app.add_subcommand("export", "Write a built MoE as a native sparse-MoE checkpoint (Mixtral)");
    cmd->add_option("selector", a->selector, "Selector of the built MoE")->required()->check(CLI::ExistingFile);
    cmd->add_option("--out,-o", a->out, "New output folder")->required();
    cmd->add_option("--format", a->format, "mixtral (default) or qwen2_moe");
    cmd->add_option("--dtype", a->dtype, "bf16, f16 or f32 (default: export_dtype, else the base's)");
    cmd->add_option("--shard-size", a->shardSize, "Largest safetensors shard (default 5GB)");
    cmd->add_flag("--json", a->asJson, "End with one JSON object");
    return {cmd, [a] { return runExport(*a); }};
}

} // namespace moe::cli
