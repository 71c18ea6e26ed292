#include "model/weights.h"

#include <cstring>
#include <map>

#include "core/error.h"

namespace attnsparse {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? " x " : "") + std::to_string(shape[i]);
  return s + "]";
}

namespace {

// llama.cpp base name -> Hugging Face name (per layer: after "model.layers.N." / "h.N.").
const std::map<std::string, std::string>& hf_llama_names() {
  static const std::map<std::string, std::string> m = {
      {"token_embd", "model.embed_tokens"},  {"output_norm", "model.norm"},
      {"output", "lm_head"},                 {"attn_norm", "input_layernorm"},
      {"attn_q", "self_attn.q_proj"},        {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},        {"attn_output", "self_attn.o_proj"},
      {"ffn_norm", "post_attention_layernorm"}, {"ffn_gate", "mlp.gate_proj"},
      {"ffn_up", "mlp.up_proj"},             {"ffn_down", "mlp.down_proj"},
  };
  return m;
}

const std::map<std::string, std::string>& hf_gpt2_names() {
  static const std::map<std::string, std::string> m = {
      {"token_embd", "transformer.wte"}, {"position_embd", "transformer.wpe"},
      {"output_norm", "transformer.ln_f"}, {"attn_norm", "ln_1"},
      {"attn_qkv", "attn.c_attn"},       {"attn_output", "attn.c_proj"},
      {"ffn_norm", "ln_2"},              {"ffn_up", "mlp.c_fc"},
      {"ffn_down", "mlp.c_proj"},        {"output", "lm_head"},  // only when untied
  };
  return m;
}

}  // namespace

std::string tensor_file_name(NameStyle style, const std::string& arch, const std::string& logical,
                             int layer, const std::string& suffix) {
  if (style == NameStyle::Gguf) {
    if (layer < 0) return logical + "." + suffix;
    return "blk." + std::to_string(layer) + "." + logical + "." + suffix;
  }
  const bool gpt2 = arch == "gpt2";
  const auto& table = gpt2 ? hf_gpt2_names() : hf_llama_names();
  auto it = table.find(logical);
  if (it == table.end()) return "";
  if (layer < 0) return it->second + "." + suffix;
  return (gpt2 ? "transformer.h." : "model.layers.") + std::to_string(layer) + "." + it->second +
         "." + suffix;
}

WeightBinder::WeightBinder(const ModelConfig& config, const TensorSource& source, NameStyle style,
                           ModelWeights& out)
    : cfg_(config), src_(source), style_(style), out_(out) {}

std::string WeightBinder::name(const std::string& logical, int layer,
                               const std::string& suffix) const {
  return tensor_file_name(style_, cfg_.arch, logical, layer, suffix);
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
    t = find("output", -1, suffix);
  return t;
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

Norm WeightBinder::norm(const std::string& logical, int layer, bool with_bias) {
  Norm nrm;
  nrm.weight = vector(logical, layer, "weight", cfg_.n_embd);
  if (with_bias) nrm.bias = vector(logical, layer, "bias", cfg_.n_embd);
  return nrm;
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
  if (config.arch == "gpt2") {
    bind_gpt2_weights(config, binder, w);
  } else if (config.arch == "llama" || config.arch == "qwen2") {
    bind_llama_weights(config, binder, w);
  } else {
    fail_file(source.path(), "architecture '{}' is not supported", config.arch);
  }
  return w;
}

}  // namespace attnsparse
