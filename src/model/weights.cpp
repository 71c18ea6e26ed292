#include "model/weights.h"

#include <cstring>

#include "core/error.h"
#include "model/arch.h"

namespace attnsparse {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? " x " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string tensor_file_name(NameStyle style, const std::string& arch, const std::string& logical,
                             int layer, const std::string& suffix, int expert) {
  if (style == NameStyle::Gguf) {
    if (layer < 0) return logical + "." + suffix;
    return "blk." + std::to_string(layer) + "." + logical + "." + suffix;
  }
  const ArchInfo* info = find_arch(arch);
  if (info == nullptr) return "";
  auto it = info->hf_tensors.find(logical);
  if (it == info->hf_tensors.end()) return "";
  std::string base = it->second;
  if (const size_t e = base.find("{e}"); e != std::string::npos) {
    if (expert < 0) return "";
    base.replace(e, 3, std::to_string(expert));
  }
  if (layer < 0) return base + "." + suffix;
  return info->hf_layer_prefix + std::to_string(layer) + "." + base + "." + suffix;
}

WeightBinder::WeightBinder(const ModelConfig& config, const TensorSource& source, NameStyle style,
                           ModelWeights& out)
    : cfg_(config), src_(source), style_(style), out_(out) {}

std::string WeightBinder::name(const std::string& logical, int layer, const std::string& suffix,
                               int expert) const {
  return tensor_file_name(style_, cfg_.arch, logical, layer, suffix, expert);
}

namespace {
// The alignment typed loads of a dtype's data need: the largest of 4, 2, 1 that divides its
// block size in bytes (f32: 4; f16, bf16 and the quantised blocks with f16 scales: 2 or
// more; blocks of single bytes: 1). Rows are whole blocks, so every row then is aligned.
uintptr_t required_alignment(DType t) {
  const int64_t b = dtype_traits(t).block_bytes;
  return b % 4 == 0 ? 4 : b % 2 == 0 ? 2 : 1;
}
}  // namespace

const TensorInfo* WeightBinder::aligned(const TensorInfo* t) const {
  if (t == nullptr || reinterpret_cast<uintptr_t>(t->data) % required_alignment(t->dtype) == 0) return t;
  // The formats do not promise aligned tensor data (safetensors offsets are counted from
  // the end of a header of any length): the kernels read f32 / f16 / block fields through
  // typed pointers, so such a tensor is copied once (memory: at most the file's size).
  std::unique_ptr<TensorInfo>& copy = out_.realigned[t];
  if (!copy) {
    std::vector<uint8_t> buf(static_cast<size_t>(t->nbytes));
    if (t->nbytes > 0) std::memcpy(buf.data(), t->data, static_cast<size_t>(t->nbytes));
    out_.owned.push_back(std::move(buf));
    copy = std::make_unique<TensorInfo>(*t);
    copy->data = out_.owned.back().data();
  }
  return copy.get();
}

const TensorInfo* WeightBinder::find(const std::string& logical, int layer,
                                     const std::string& suffix) const {
  const std::string n = name(logical, layer, suffix);
  if (n.empty()) return nullptr;
  const TensorInfo* t = src_.find(n);
  // Some GPT-2 checkpoints drop the "transformer." prefix.
  if (t == nullptr && style_ == NameStyle::HuggingFace && n.rfind("transformer.", 0) == 0)
    t = src_.find(n.substr(12));
  // A tied embedding may be stored only under the output head's name (lm_head.weight)
  // when the checkpoint was de-duplicated; the input embedding is then that tensor.
  if (t == nullptr && style_ == NameStyle::HuggingFace && cfg_.tied_output &&
      logical == "token_embd" && layer < 0)
    return find("output", -1, suffix);
  return aligned(t);
}

const TensorInfo& WeightBinder::require(const std::string& logical, int layer,
                                        const std::string& suffix,
                                        const std::vector<int64_t>& shape) const {
  const TensorInfo* t = find(logical, layer, suffix);
  if (t == nullptr && style_ == NameStyle::HuggingFace && logical == "token_embd" && layer < 0)
    fail_file(src_.path(), "missing tensor '{}'{}", name(logical, layer, suffix),
              cfg_.tied_output ? fmt::format(" (nor '{}', which a tied embedding may be stored as)",
                                             name("output", -1, suffix))
                               : std::string());
  if (t == nullptr && style_ == NameStyle::HuggingFace && logical == "output" && layer < 0)
    fail_file(src_.path(), "missing tensor '{}' (config.json says tie_word_embeddings false)",
              name(logical, layer, suffix));
  if (t == nullptr) fail_file(src_.path(), "missing tensor '{}'", name(logical, layer, suffix));
  if (t->shape != shape)
    fail_file(src_.path(), "tensor '{}' has shape {}, expected {}", t->name,
              shape_string(t->shape), shape_string(shape));
  if (t->nbytes < t->rows() * dtype_row_bytes(t->dtype, t->cols()))
    fail_file(src_.path(), "tensor '{}' is truncated", t->name);
  if (t->cols() % dtype_traits(t->dtype).block_size != 0)
    fail_file(src_.path(), "tensor '{}': row length {} is not a multiple of the {} block size",
              t->name, t->cols(), dtype_name(t->dtype));
  return *t;
}

const float* WeightBinder::vector(const std::string& logical, int layer, const std::string& suffix,
                                  int64_t n) {
  const TensorInfo& t = require(logical, layer, suffix, {n});
  if (t.dtype == DType::F32 && reinterpret_cast<uintptr_t>(t.data) % alignof(float) == 0)
    return reinterpret_cast<const float*>(t.data);
  std::vector<uint8_t> buf(n * sizeof(float));
  ops::dequantize_row(t.dtype, t.data, reinterpret_cast<float*>(buf.data()), n);
  out_.owned.push_back(std::move(buf));
  return reinterpret_cast<const float*>(out_.owned.back().data());
}

Norm WeightBinder::norm(const std::string& logical, int layer, bool with_bias, int64_t dim) {
  if (dim == 0) dim = cfg_.n_embd;
  Norm nrm;
  nrm.weight = vector(logical, layer, "weight", dim);
  if (style_ == NameStyle::HuggingFace && arch_info(cfg_.arch).hf_norm_plus_one) {
    // Hugging Face applies (1 + w); llama.cpp's converter stores 1 + w in the GGUF.
    std::vector<uint8_t> buf(dim * sizeof(float));
    float* f = reinterpret_cast<float*>(buf.data());
    for (int64_t i = 0; i < dim; ++i) f[i] = nrm.weight[i] + 1.0f;
    out_.owned.push_back(std::move(buf));
    nrm.weight = reinterpret_cast<const float*>(out_.owned.back().data());
  }
  if (with_bias) nrm.bias = vector(logical, layer, "bias", dim);
  return nrm;
}

std::vector<Linear> WeightBinder::experts(const std::string& logical, int layer, int64_t n_expert,
                                          int64_t n_out, int64_t n_in) {
  std::vector<Linear> out(n_expert);
  if (style_ == NameStyle::HuggingFace) {
    for (int64_t e = 0; e < n_expert; ++e) {
      const std::string n = name(logical, layer, "weight", static_cast<int>(e));
      const TensorInfo* t = n.empty() ? nullptr : aligned(src_.find(n));
      if (t == nullptr) fail_file(src_.path(), "missing tensor '{}'", n.empty() ? logical : n);
      if (t->shape != std::vector<int64_t>{n_out, n_in})
        fail_file(src_.path(), "tensor '{}' has shape {}, expected {}", t->name,
                  shape_string(t->shape), shape_string({n_out, n_in}));
      if (t->nbytes < n_out * dtype_row_bytes(t->dtype, n_in))
        fail_file(src_.path(), "tensor '{}' is truncated", t->name);
      out[e].w = {t->dtype, t->data, n_out, n_in};
    }
    return out;
  }
  const TensorInfo& t = require(logical, layer, "weight", {n_expert, n_out, n_in});
  const int64_t matrix_bytes = n_out * dtype_row_bytes(t.dtype, n_in);
  for (int64_t e = 0; e < n_expert; ++e) out[e].w = {t.dtype, t.data + e * matrix_bytes, n_out, n_in};
  return out;
}

Linear WeightBinder::linear(const std::string& logical, int layer, int64_t n_out, int64_t n_in,
                            bool with_bias, bool conv1d) {
  Linear lin;
  const bool transpose = conv1d && style_ == NameStyle::HuggingFace;
  const TensorInfo& t =
      require(logical, layer, "weight", transpose ? std::vector<int64_t>{n_in, n_out}
                                                  : std::vector<int64_t>{n_out, n_in});
  lin.w.dtype = t.dtype;
  lin.w.n_out = n_out;
  lin.w.n_in = n_in;
  if (transpose) {
    // Conv1D stores [in, out]; plain floats only (safetensors holds no quantised types).
    const int64_t es = dtype_traits(t.dtype).block_bytes;
    if (dtype_traits(t.dtype).block_size != 1)
      fail_file(src_.path(), "tensor '{}': cannot transpose {} data", t.name, dtype_name(t.dtype));
    std::vector<uint8_t> buf(n_in * n_out * es);
    for (int64_t i = 0; i < n_in; ++i)
      for (int64_t o = 0; o < n_out; ++o)
        std::memcpy(&buf[(o * n_in + i) * es], t.data + (i * n_out + o) * es, es);
    out_.owned.push_back(std::move(buf));
    lin.w.data = out_.owned.back().data();
  } else {
    lin.w.data = t.data;
  }
  if (with_bias) lin.bias = vector(logical, layer, "bias", n_out);
  return lin;
}

ModelWeights bind_weights(const ModelConfig& config, const TensorSource& source, NameStyle style) {
  ModelWeights w;
  WeightBinder binder(config, source, style, w);
  const ArchInfo* info = find_arch(config.arch);
  if (info == nullptr) fail_file(source.path(), "architecture '{}' is not supported", config.arch);
  info->bind(config, binder, w);
  pack_for_cpu(w, &source);
  return w;
}

void pack_for_cpu(ModelWeights& w, const TensorSource* source) {
  std::vector<Linear*> all = {&w.output};
  for (LayerWeights& l : w.layers) {
    for (Linear* lin : {&l.q, &l.k, &l.v, &l.qkv, &l.o, &l.gate, &l.up, &l.down, &l.router}) all.push_back(lin);
    for (auto* experts : {&l.gate_exps, &l.up_exps, &l.down_exps})
      for (Linear& e : *experts) all.push_back(&e);
  }
  for (Linear* lin : all) {
    if (lin->w.data == nullptr || lin->w.packed != nullptr) continue;
    if (auto p = ops::pack_weights(lin->w)) {
      lin->w.packed = p.get();
      w.packed.push_back(std::move(p));
      // The kernels read the packed copy only; the mapped bytes need not stay resident
      // (memory stays at one copy of the weights). The token embedding, read by row
      // lookups, is not released when the output matrix is tied to it.
      if (source != nullptr && !(w.token_embd != nullptr && lin->w.data == w.token_embd->data))
        source->release(lin->w.data, static_cast<size_t>(lin->w.n_out * lin->w.row_bytes()));
    }
  }
}

}  // namespace attnsparse
