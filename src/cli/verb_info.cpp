// attnsparse info MODEL: architecture, dimensions, tensor dtypes, vocabulary, tokenizer.
#include <fmt/format.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/verb.h"
#include "core/text.h"
#include "core/error.h"
#include "model/arch.h"
#include "model/model.h"
#include "model/summary.h"

namespace attnsparse::cli {
namespace {

int64_t path_bytes(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return static_cast<int64_t>(fs::file_size(path, ec));
  int64_t total = 0;
  for (const auto& e : fs::directory_iterator(path, ec))
    if (e.is_regular_file(ec)) total += static_cast<int64_t>(e.file_size(ec));
  return total;
}

struct InfoOptions {
  std::string model_path;
  bool json_out = false;
};

void run_info(const InfoOptions& o) {
  auto model = load_model(o.model_path);
  const ModelConfig& c = model->config();
  const WeightSummary weights = summarize_weights(*model);
  const auto& by_dtype = weights.by_dtype;
  const int64_t params = weights.parameters;
  // A model without a usable tokenizer is still a model: report why instead of failing.
  const TokenizerSummary tok = summarize_tokenizer(*model);
  const std::string rope_scaling = c.rope_scaling.type.empty() ? "none" : c.rope_scaling.type;
  if (o.json_out) {
    nlohmann::json j;
    j["path"] = o.model_path;
    j["format"] = c.source_format;
    j["arch"] = c.arch;
    j["name"] = c.name;
    j["n_vocab"] = c.n_vocab;
    j["n_ctx"] = c.n_ctx;
    j["n_embd"] = c.n_embd;
    j["n_layer"] = c.n_layer;
    j["n_head"] = c.n_head;
    j["n_kv_head"] = c.n_kv_head;
    j["head_dim"] = c.head_dim;
    j["n_ff"] = c.n_ff;
    j["norm_eps"] = std::stod(fmt::format("{}", c.norm_eps));  // 1e-05, not 9.99e-06
    j["tied_output"] = c.tied_output;
    j["qkv_bias"] = c.qkv_bias;
    j["rope"] = {{"layout", rope_layout_name(c.rope_layout)}, {"dim", c.rope_dim},
                 {"base", c.rope_base}, {"scaling", rope_scaling},
                 {"factor", c.rope_scaling.factor}};
    const ArchInfo& family = arch_info(c.arch);
    j["family"] = {{"summary", family.summary}, {"attn_scale", c.attn_scale},
                   {"attn_softcap", c.attn_softcap}, {"final_softcap", c.final_softcap},
                   {"sliding_window", c.sliding_window},
                   {"sliding_window_applied", c.sliding_window_applied},
                   {"qk_norm", family.qk_norm}, {"post_norms", family.post_norms},
                   {"embd_scale", family.embd_scale},
                   {"n_expert", c.n_expert}, {"n_expert_used", c.n_expert_used},
                   {"n_ff_expert", c.n_ff_expert}};
    nlohmann::json layers = nlohmann::json::array();
    for (const LayerAttention& la : c.layers)
      layers.push_back({{"kind", la.sliding ? "windowed" : "global"}, {"window", la.window},
                        {"rope_base", la.rope_base}});
    j["layers"] = layers;
    j["parameters"] = params;
    j["bytes"] = path_bytes(o.model_path);
    nlohmann::json d = nlohmann::json::object();
    for (const auto& [name, t] : by_dtype)
      d[name] = {{"tensors", t.tensors}, {"elements", t.elements}, {"bytes", t.bytes}};
    j["tensor_dtypes"] = d;
    if (tok.error.empty())
      j["tokenizer"] = {{"type", tok.type}, {"n_vocab", tok.n_vocab}, {"bos", tok.bos}, {"eos", tok.eos},
                        {"add_bos", tok.add_bos}};
    else
      j["tokenizer"] = {{"error", tok.error}};
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("{:<16} {}\n", "model", o.model_path);
  fmt::print("{:<16} {} ({})\n", "format", c.source_format, c.name.empty() ? "unnamed" : printable(c.name));
  fmt::print("{:<16} {}\n", "architecture", c.arch);
  const double disk = static_cast<double>(path_bytes(o.model_path));
  fmt::print("{:<16} {:.3f} M ({} on disk)\n", "parameters", params / 1e6,
             disk >= 1e9 ? fmt::format("{:.2f} GB", disk / 1e9) : fmt::format("{:.1f} MB", disk / 1e6));
  fmt::print("{:<16} {}\n", "layers", c.n_layer);
  fmt::print("{:<16} {}\n", "n_embd", c.n_embd);
  fmt::print("{:<16} {} query, {} key/value{} (head size {})\n", "heads", c.n_head, c.n_kv_head,
             c.n_kv_head == 1 ? " (MQA)" : c.n_kv_head < c.n_head ? " (GQA)" : "", c.head_dim);
  fmt::print("{:<16} {}\n", "n_ff", c.n_ff);
  fmt::print("{:<16} {}\n", "context", c.n_ctx);
  fmt::print("{:<16} {}\n", "vocabulary", c.n_vocab);
  const ArchInfo& family = arch_info(c.arch);
  fmt::print("{:<16} {}\n", "norm", fmt::format("{} eps {:g}{}", family.norm == NormKind::LayerNorm ? "LayerNorm" : "RMSNorm", c.norm_eps,
                                               family.post_norms ? ", also after attention and FFN" : ""));
  if (c.rope_layout == RopeLayout::None)
    fmt::print("{:<16} learned absolute positions\n", "positions");
  else
    fmt::print("{:<16} RoPE {} pairs, {} dims, base {:g}, scaling {}{}\n", "positions",
               rope_layout_name(c.rope_layout), c.rope_dim, c.rope_base, rope_scaling,
               rope_scaling == "none" ? "" : fmt::format(" x{:g}", c.rope_scaling.factor));
  fmt::print("{:<16} {}\n", "output", c.tied_output ? "tied to token_embd" : "separate");
  fmt::print("{:<16} {}\n", "q/k/v bias", c.qkv_bias ? "yes" : "no");
  if (family.qk_norm) fmt::print("{:<16} per-head RMSNorm of q and k\n", "q/k norm");
  if (family.embd_scale) fmt::print("{:<16} x sqrt(n_embd)\n", "embedding");
  if (c.attn_softcap > 0 || c.final_softcap > 0)
    fmt::print("{:<16} attention {:g}, final {:g}\n", "softcap", c.attn_softcap, c.final_softcap);
  if (c.n_expert > 0)
    fmt::print("{:<16} {} experts, {} used per token, n_ff {}\n", "experts", c.n_expert,
               c.n_expert_used, c.n_ff_expert);
  // Per-layer attention kind (global or windowed, RoPE base): runs of equal layers; long
  // alternating patterns (gemma) show their first runs and a count.
  int runs = 0;
  for (int64_t l = 0; l < c.n_layer;) {
    int64_t e = l + 1;
    while (e < c.n_layer && layer_kind_string(c, int(e)) == layer_kind_string(c, int(l))) ++e;
    if (++runs > 6) {
      int64_t windowed = 0;
      for (const LayerAttention& la : c.layers) windowed += la.sliding;
      fmt::print("{:<16} ... {} of {} layers windowed\n", "", windowed, c.n_layer);
      break;
    }
    const std::string which = e - l == 1 ? fmt::format("layer {}", l) : fmt::format("layers {}-{}", l, e - 1);
    fmt::print("{:<16} {}: {}\n", l == 0 ? "attention" : "", which, layer_kind_string(c, int(l)));
    l = e;
  }
  for (const auto& [name, t] : by_dtype)
    fmt::print("{:<16} {:<5} {:4} tensors {:10.3f} M elements {:9.1f} MB\n", "tensors", name,
               t.tensors, t.elements / 1e6, t.bytes / 1e6);
  if (tok.error.empty())
    fmt::print("{:<16} {} ({} tokens, bos {}, eos {}, adds bos: {})\n", "tokenizer", tok.type, tok.n_vocab,
               tok.bos, tok.eos, tok.add_bos ? "yes" : "no");
  else
    fmt::print("{:<16} unavailable: {}\n", "tokenizer", tok.error);
}

void register_info(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "info", "Show a model's architecture, dimensions, tensor dtypes, vocabulary and tokenizer");
  sub->footer(
      "MODEL is a .gguf file, a Hugging Face directory (config.json + *.safetensors) or a llama2.c .bin.\n"
      "Example: attnsparse info tinyllama.gguf\n"
      "         attnsparse info ./Qwen2-0.5B --json");
  auto o = std::make_shared<InfoOptions>();
  add_model_options(sub, o->model_path);
  sub->add_flag("--json", o->json_out, "print one JSON object instead of the table");
  sub->callback([o] { run_info(*o); });
}
ATTNSPARSE_VERB(register_info);

}  // namespace
}  // namespace attnsparse::cli
