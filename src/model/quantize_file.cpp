#include "model/quantize_file.h"

#include <filesystem>
#include <optional>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "model/gguf_encode.h"
#include "ops/matmul.h"

namespace attnsparse {

QuantizeSummary quantize_model_file(const std::string& in_path, const std::string& out_path,
                                    const ops::quant::FileType& ft) {
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
  w.set_u32("general.file_type", ft.llama_ftype);
  w.set_u32("general.quantization_version", 2);

  QuantizeSummary summary;
  for (const TensorInfo& t : in.tensors()) {
    ops::quant::TensorPlace place{t.name, static_cast<int64_t>(t.shape.size()), t.cols(), n_layer, n_gqa};
    const std::optional<DType> type = ops::quant::tensor_type(ft, place);
    ++summary.tensors;
    if (!type || *type == t.dtype) {
      w.add_tensor_raw(t.name, t.dtype, t.shape, t.data, t.nbytes);
      ++summary.by_dtype[dtype_name(t.dtype)];
      continue;
    }
    const TensorInfo* src = &t;
    const int64_t cols = t.cols();
    add_generated_tensor(w, t.name, *type, t.shape, [src, cols](int64_t row0, int64_t nrows, float* dst) {
      const int64_t rb = dtype_row_bytes(src->dtype, cols);
      for (int64_t r = 0; r < nrows; ++r)
        ops::dequantize_row(src->dtype, src->data + (row0 + r) * rb, dst + r * cols, cols);
    });
    ++summary.by_dtype[dtype_name(*type)];
  }
  w.write(out_path);
  return summary;
}

}  // namespace attnsparse
