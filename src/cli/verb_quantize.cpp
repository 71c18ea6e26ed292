// attnsparse quantize IN.gguf OUT.gguf TYPE: rewrite a GGUF model's matrices in another
// weight type, with llama-quantize's per-tensor choices and file naming (model/quantize_file.h).
#include <fmt/format.h>

#include <filesystem>
#include <memory>

#include "cli/verb.h"
#include "core/error.h"
#include "model/quantize_file.h"
#include "ops/quant/mix.h"

namespace attnsparse::cli {
namespace {

struct QuantizeOptions {
  std::string in_path, out_path, type_name;
  int threads = 0;
};

void run_quantize(const QuantizeOptions& o) {
  apply_threads(o.threads);
  const auto ft = ops::quant::find_file_type(o.type_name);
  if (!ft) fail_usage("TYPE '{}' cannot be written; one of: {}", o.type_name, ops::quant::file_type_names());
  const QuantizeSummary s = quantize_model_file(o.in_path, o.out_path, *ft);
  std::string counts;
  for (const auto& [name, n] : s.by_dtype) counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", name, n);
  fmt::print("{} -> {} ({}, general.file_type {}): {} tensors: {}; {:.1f} MB\n", o.in_path, o.out_path, ft->name,
             ft->llama_ftype, s.tensors, counts, static_cast<double>(std::filesystem::file_size(o.out_path)) / 1e6);
}

void register_quantize(CLI::App& app) {
  auto* sub = app.add_subcommand("quantize", "Rewrite a GGUF model's matrices in another weight type");
  sub->footer(
      "TYPE: " + ops::quant::file_type_names() + ".\n"
      "Per tensor as llama-quantize without importance matrix: norms, biases and other 1-D\n"
      "tensors stay as they are; output.weight becomes Q6_K (except for Q8_0 and float\n"
      "types); the K mixes raise attn_v / ffn_down / attn_output as llama.cpp does\n"
      "(Q2_K: Q3_K there; Q3_K_M: Q5_K / Q4_K; Q4_K_M, Q5_K_M: Q6_K in some layers).\n"
      "Quantised inputs are decoded to f32 first. The file keeps every metadata key and\n"
      "gets general.file_type; it is written to OUT.tmp and renamed when complete.\n"
      "Example: attnsparse quantize model-f16.gguf model-Q4_K_M.gguf Q4_K_M");
  auto o = std::make_shared<QuantizeOptions>();
  sub->add_option("IN", o->in_path, "input .gguf file")->required();
  sub->add_option("OUT", o->out_path, "output .gguf file")->required();
  sub->add_option("TYPE", o->type_name, "file type, e.g. Q4_K_M, Q8_0, Q5_0")->required();
  add_threads_option(sub, &o->threads);
  sub->callback([o] { run_quantize(*o); });
}
ATTNSPARSE_VERB(register_quantize);

}  // namespace
}  // namespace attnsparse::cli
