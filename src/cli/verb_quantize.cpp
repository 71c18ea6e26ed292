// attnsparse quantize IN.gguf OUT.gguf TYPE: rewrite a GGUF model's matrices in another
// weight type, with llama-quantize's per-tensor choices and file naming.
#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <vector>

#include "cli/verb.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "model/gguf_encode.h"
#include "ops/matmul.h"
#include "ops/quant/mix.h"

namespace attnsparse::cli {
namespace {

void quantize_file(const std::string& in_path, const std::string& out_path, const std::string& type_name) {
  const auto ft = ops::quant::find_file_type(type_name);
  if (!ft) fail_usage("TYPE '{}' cannot be written; one of: {}", type_name, ops::quant::file_type_names());
  if (std::filesystem::exists(out_path) && std::filesystem::exists(in_path) &&
      std::filesystem::equivalent(in_path, out_path))
    fail_usage("OUT is the input file {}", in_path);
  GgufFile in(in_path);
  const std::string arch = in.architecture();
  const int n_layer = static_cast<int>(in.get_int(arch + ".block_count").value_or(0));
  const int64_t n_head = in.get_int(arch + ".attention.head_count").value_or(1);
  const int64_t n_head_kv = in.get_int(arch + ".attention.head_count_kv").value_or(n_head);
  const int n_gqa = n_head_kv > 0 ? static_cast<int>(n_head / n_head_kv) : 1;

  GgufWriter w;
  for (const auto& [key, value] : in.metadata())
    if (key != "general.file_type" && key != "general.quantization_version") w.set(key, value);
  w.set_u32("general.file_type", ft->llama_ftype);
  w.set_u32("general.quantization_version", 2);

  std::map<std::string, int> counts;
  for (const TensorInfo& t : in.tensors()) {
    ops::quant::TensorPlace place{t.name, static_cast<int64_t>(t.shape.size()), t.cols(), n_layer, n_gqa};
    const std::optional<DType> type = ops::quant::tensor_type(*ft, place);
    if (!type || *type == t.dtype) {
      w.add_tensor_raw(t.name, t.dtype, t.shape, t.data, t.nbytes);
      ++counts[dtype_name(t.dtype)];
      continue;
    }
    const TensorInfo* src = &t;
    const int64_t cols = t.cols();
    add_generated_tensor(w, t.name, *type, t.shape, [src, cols](int64_t row0, int64_t nrows, float* dst) {
      const int64_t rb = dtype_row_bytes(src->dtype, cols);
      for (int64_t r = 0; r < nrows; ++r) ops::dequantize_row(src->dtype, src->data + (row0 + r) * rb, dst + r * cols, cols);
    });
    ++counts[dtype_name(*type)];
  }
  w.write(out_path);
  std::string summary;
  for (const auto& [name, c] : counts) summary += fmt::format("{}{} {}", summary.empty() ? "" : ", ", name, c);
  fmt::print("{} -> {} ({}, general.file_type {}): {} tensors: {}; {:.1f} MB\n", in_path, out_path, ft->name,
             ft->llama_ftype, in.tensors().size(), summary,
             static_cast<double>(std::filesystem::file_size(out_path)) / 1e6);
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
  static std::string in_path, out_path, type_name;
  static int threads = 0;
  sub->add_option("IN", in_path, "input .gguf file")->required();
  sub->add_option("OUT", out_path, "output .gguf file")->required();
  sub->add_option("TYPE", type_name, "file type, e.g. Q4_K_M, Q8_0, Q5_0")->required();
  add_threads_option(sub, &threads);
  sub->callback([] {
    apply_threads(threads);
    quantize_file(in_path, out_path, type_name);
  });
}
ATTNSPARSE_VERB(register_quantize);

}  // namespace
}  // namespace attnsparse::cli
