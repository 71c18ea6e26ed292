// Test helper: writes a Hugging Face model directory (config.json + safetensors, HF tensor
// names and layouts) holding the same weights as a GGUF file. The name table and the
// layout transforms are written here independently of src/model: llama Q/K rows are
// permuted back from llama.cpp's adjacent-pair order to HF's half split, GPT-2's Conv1D
// weights are stored [in, out].
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/gguf.h"
#include "io/io_test_util.h"
#include "io/safetensors.h"
#include "ops/matmul.h"

namespace attnsparse::testing {

struct HfConvertOptions {
  bool gpt2_prefix = true;       // "transformer.h.0..." or "h.0..." (openai-community/gpt2)
  int shards = 1;                // > 1: model-0000i-of-0000n.safetensors + index.json
  DType float_type = DType::F32; // F32: keep the GGUF types; BF16 / F16: f32 matrices become so
  nlohmann::json config_extra = nlohmann::json::object();  // merged into config.json
  // How a tied embedding is stored. AsGguf: the GGUF's tensors (output.weight only when it
  // has one). EmbedOnly / LmHeadOnly: one matrix (the GGUF's token_embd.weight) under
  // model.embed_tokens.weight / lm_head.weight, as transformers and safetensors'
  // de-duplication leave tied checkpoints, with tie_word_embeddings true.
  enum class Tied { AsGguf, EmbedOnly, LmHeadOnly } tied = Tied::AsGguf;
  // With LmHeadOnly: __metadata__ maps "model.embed_tokens.weight" to "lm_head.weight"
  // (safetensors.torch.save_model records a dropped duplicate so).
  bool dedup_metadata = false;
};

inline std::string hf_name(const std::string& arch, const std::string& gguf_name, bool gpt2_prefix) {
  static const std::map<std::string, std::string> llama = {
      {"token_embd.weight", "model.embed_tokens.weight"}, {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},               {"attn_norm", "input_layernorm"},
      {"attn_q", "self_attn.q_proj"},  {"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"},
      {"attn_output", "self_attn.o_proj"}, {"ffn_norm", "post_attention_layernorm"},
      {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"}, {"ffn_down", "mlp.down_proj"}};
  static const std::map<std::string, std::string> gpt2 = {
      {"token_embd.weight", "wte.weight"}, {"position_embd.weight", "wpe.weight"},
      {"output_norm.weight", "ln_f.weight"}, {"output_norm.bias", "ln_f.bias"},
      {"output.weight", "lm_head.weight"}, {"attn_norm", "ln_1"}, {"attn_qkv", "attn.c_attn"},
      {"attn_output", "attn.c_proj"}, {"ffn_norm", "ln_2"}, {"ffn_up", "mlp.c_fc"},
      {"ffn_down", "mlp.c_proj"}};
  // Gemma: the norm around each block has its own name; q/k norms (qwen3, gemma3).
  static const std::map<std::string, std::string> extra = {
      {"attn_q_norm", "self_attn.q_norm"}, {"attn_k_norm", "self_attn.k_norm"},
      {"ffn_gate_inp", "mlp.gate"}};
  static const std::map<std::string, std::string> gemma = {
      {"post_attention_norm", "post_attention_layernorm"}, {"ffn_norm", "pre_feedforward_layernorm"},
      {"post_ffw_norm", "post_feedforward_layernorm"}};
  static const std::map<std::string, std::string> phi3 = {
      {"attn_qkv", "self_attn.qkv_proj"}, {"ffn_up", "mlp.gate_up_proj"}};
  const bool g = arch == "gpt2";
  std::map<std::string, std::string> table = g ? gpt2 : llama;
  if (!g) {
    for (const auto& [k, v] : extra) table[k] = v;
    if (arch == "gemma2" || arch == "gemma3")
      for (const auto& [k, v] : gemma) table[k] = v;
    if (arch == "phi3")
      for (const auto& [k, v] : phi3) table[k] = v;
    if (arch == "llama") table["ffn_gate_inp"] = "block_sparse_moe.gate";
  }
  const std::string pre = g && gpt2_prefix ? "transformer." : "";
  if (auto it = table.find(gguf_name); it != table.end())
    return it->second == "lm_head.weight" ? it->second : pre + it->second;
  std::smatch m;
  static const std::regex blk(R"(blk\.(\d+)\.(\w+)\.(weight|bias))");
  if (!std::regex_match(gguf_name, m, blk)) return "";
  const std::string layer = m[1], base = m[2], suffix = m[3];
  return (g ? pre + "h." : "model.layers.") + layer + "." + table.at(base) + "." + suffix;
}

// Writes `dir` from the GGUF file; returns the config.json it wrote.
inline nlohmann::json write_hf_dir_from_gguf(const std::string& gguf_path, const std::string& dir,
                                             const HfConvertOptions& opt = {}) {
  using nlohmann::json;
  GgufFile f(gguf_path);
  const std::string arch = f.architecture();
  const std::string a = arch + ".";
  const int64_t d = *f.get_int(a + "embedding_length"), n_head = *f.get_int(a + "attention.head_count");
  const int64_t n_kv = f.get_int(a + "attention.head_count_kv").value_or(n_head);
  const int64_t hd = d / n_head;
  const int64_t n_vocab = f.require("token_embd.weight").shape[0];
  json cfg;
  const auto gf = [&](const std::string& key) { return f.get_float(a + key); };
  const auto gi = [&](const std::string& key) { return f.get_int(a + key); };
  if (arch == "gpt2") {
    cfg = {{"architectures", {"GPT2LMHeadModel"}}, {"model_type", "gpt2"}, {"n_embd", d},
           {"n_layer", *f.get_int(a + "block_count")}, {"n_head", n_head},
           {"n_positions", *f.get_int(a + "context_length")}, {"n_inner", *f.get_int(a + "feed_forward_length")},
           {"layer_norm_epsilon", *f.get_float(a + "attention.layer_norm_epsilon")},
           {"vocab_size", n_vocab}, {"tie_word_embeddings", f.find("output.weight") == nullptr}};
  } else {
    const bool moe = gi("expert_count").has_value();
    const std::map<std::string, std::string> names = {
        {"qwen2", "Qwen2ForCausalLM"}, {"qwen3", "Qwen3ForCausalLM"},
        {"qwen3moe", "Qwen3MoeForCausalLM"}, {"gemma2", "Gemma2ForCausalLM"},
        {"gemma3", "Gemma3ForCausalLM"}, {"phi3", "Phi3ForCausalLM"},
        {"llama", moe ? "MixtralForCausalLM" : "LlamaForCausalLM"}};
    cfg = {{"architectures", {names.at(arch)}},
           {"hidden_size", d}, {"num_hidden_layers", *f.get_int(a + "block_count")},
           {"num_attention_heads", n_head}, {"num_key_value_heads", n_kv},
           {"intermediate_size", *f.get_int(a + "feed_forward_length")}, {"vocab_size", n_vocab},
           {"max_position_embeddings", *f.get_int(a + "context_length")},
           {"rms_norm_eps", *f.get_float(a + "attention.layer_norm_rms_epsilon")},
           {"rope_theta", f.get_float(a + "rope.freq_base").value_or(10000.0)},
           {"tie_word_embeddings", f.find("output.weight") == nullptr}, {"torch_dtype", "float32"}};
    if (auto kl = gi("attention.key_length")) cfg["head_dim"] = *kl;
    if (arch == "gemma2" || arch == "gemma3") {
      cfg["query_pre_attn_scalar"] = *gi("attention.key_length");
      cfg["hidden_activation"] = "gelu_pytorch_tanh";
      cfg["sliding_window"] = *gi("attention.sliding_window");
      cfg["attn_logit_softcapping"] = gf("attn_logit_softcapping") ? json(*gf("attn_logit_softcapping")) : json();
      cfg["final_logit_softcapping"] = gf("final_logit_softcapping") ? json(*gf("final_logit_softcapping")) : json();
    }
    if (arch == "gemma3") {
      // Transformers' layer_types list (layer l sliding iff (l + 1) % pattern != 0).
      const int64_t pattern = gi("attention.sliding_window_pattern").value_or(6);
      json types = json::array();
      for (int64_t l = 0; l < *gi("block_count"); ++l)
        types.push_back((l + 1) % pattern ? "sliding_attention" : "full_attention");
      cfg["layer_types"] = types;
      cfg["rope_local_base_freq"] = gf("rope.freq_base_swa").value_or(10000.0);
    }
    if (arch == "qwen3moe") {
      cfg["num_experts"] = *gi("expert_count");
      cfg["num_experts_per_tok"] = *gi("expert_used_count");
      cfg["moe_intermediate_size"] = *gi("expert_feed_forward_length");
      cfg["norm_topk_prob"] = true;
    } else if (moe) {
      cfg["num_local_experts"] = *gi("expert_count");
      cfg["num_experts_per_tok"] = *gi("expert_used_count");
    }
  }
  if (opt.tied != HfConvertOptions::Tied::AsGguf) cfg["tie_word_embeddings"] = true;
  cfg.update(opt.config_extra);
  write_text(dir + "/config.json", cfg.dump(2));

  std::vector<std::vector<uint8_t>> storage;
  std::vector<TensorInfo> out;
  for (const TensorInfo& t : f.tensors()) {
    if (opt.tied != HfConvertOptions::Tied::AsGguf && t.name == "output.weight") continue;
    if (t.name == "rope_freqs.weight") continue;
    // Experts: one 3-D GGUF tensor [n_expert, rows, cols] -> one HF tensor per expert.
    if (t.name.find("_exps.weight") != std::string::npos) {
      std::smatch m;
      static const std::regex exps(R"(blk\.(\d+)\.ffn_(gate|up|down)_exps\.weight)");
      if (!std::regex_match(t.name, m, exps)) throw std::runtime_error("hf_convert: " + t.name);
      const std::string which = m[2];
      const bool mixtral = arch == "llama";
      const std::string leaf = mixtral ? (which == "gate" ? "w1" : which == "up" ? "w3" : "w2")
                                       : which + "_proj";
      const int64_t E = t.shape[0], rows = t.shape[1], cols = t.shape[2];
      const int64_t es = t.dtype == DType::F32 ? 4 : 2;
      for (int64_t e = 0; e < E; ++e) {
        const uint8_t* src = t.data + e * rows * cols * es;
        storage.emplace_back(src, src + rows * cols * es);
        const std::string name = "model.layers." + std::string(m[1]) +
                                 (mixtral ? ".block_sparse_moe.experts." : ".mlp.experts.") +
                                 std::to_string(e) + "." + leaf + ".weight";
        out.push_back(TensorInfo{name, t.dtype, {rows, cols}, storage.back().data(),
                                 static_cast<int64_t>(storage.back().size())});
      }
      continue;
    }
    const std::string name = hf_name(arch, t.name, opt.gpt2_prefix);
    if (name.empty()) throw std::runtime_error("hf_convert: no HF name for " + t.name);
    DType dt = t.dtype;
    if (dt != DType::F32 && dt != DType::F16) throw std::runtime_error("hf_convert: " + t.name + " is quantised");
    const bool to_bf16 = opt.float_type == DType::BF16 && t.shape.size() == 2;
    const int64_t rows = t.rows(), cols = t.cols();
    const int64_t es = dt == DType::F32 ? 4 : 2;
    std::vector<uint8_t> bytes(t.data, t.data + rows * cols * es);
    std::vector<int64_t> shape = t.shape;
    // llama Q/K: GGUF row 2i+h of a head is HF row h*hd/2 + i.
    const bool is_q = t.name.find(".attn_q.weight") != std::string::npos;
    const bool is_k = t.name.find(".attn_k.weight") != std::string::npos;
    if (arch == "llama" && (is_q || is_k)) {
      const int64_t heads = is_q ? n_head : n_kv;
      std::vector<uint8_t> p(bytes.size());
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < hd / 2; ++i)
          for (int64_t half = 0; half < 2; ++half)
            std::memcpy(&p[(h * hd + half * hd / 2 + i) * cols * es],
                        &bytes[(h * hd + 2 * i + half) * cols * es], cols * es);
      bytes.swap(p);
    }
    // GPT-2 Conv1D: [out, in] -> [in, out].
    const bool conv1d = arch == "gpt2" && t.shape.size() == 2 &&
                        (t.name.find("attn_qkv") != std::string::npos ||
                         t.name.find("attn_output") != std::string::npos ||
                         t.name.find("ffn_") != std::string::npos);
    if (conv1d) {
      std::vector<uint8_t> tr(bytes.size());
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
          std::memcpy(&tr[(c * rows + r) * es], &bytes[(r * cols + c) * es], es);
      bytes.swap(tr);
      shape = {cols, rows};
    }
    // Gemma: HF stores RMSNorm weights as w - 1 (its forward adds the 1).
    if ((arch == "gemma2" || arch == "gemma3") && t.name.find("norm.weight") != std::string::npos) {
      if (dt != DType::F32) throw std::runtime_error("hf_convert: " + t.name + " is not f32");
      for (size_t i = 0; i < bytes.size() / 4; ++i) {
        float v;
        std::memcpy(&v, &bytes[i * 4], 4);
        v -= 1.0f;
        std::memcpy(&bytes[i * 4], &v, 4);
      }
    }
    if (to_bf16) {
      const size_t n = bytes.size() / es;
      std::vector<uint8_t> b(n * 2);
      for (size_t i = 0; i < n; ++i) {
        float v;
        if (es == 4) {
          std::memcpy(&v, &bytes[i * 4], 4);
        } else {
          uint16_t h;
          std::memcpy(&h, &bytes[i * 2], 2);
          v = fp16_to_fp32(h);
        }
        const uint16_t h = fp32_to_bf16(v);
        std::memcpy(&b[i * 2], &h, 2);
      }
      bytes.swap(b);
      dt = DType::BF16;
    }
    if (opt.float_type == DType::F16 && dt == DType::F32 && t.shape.size() == 2) {
      std::vector<uint8_t> b(bytes.size() / 2);
      for (size_t i = 0; i < b.size() / 2; ++i) {
        float v;
        std::memcpy(&v, &bytes[i * 4], 4);
        const uint16_t h = fp32_to_fp16(v);
        std::memcpy(&b[i * 2], &h, 2);
      }
      bytes.swap(b);
      dt = DType::F16;
    }
    storage.push_back(std::move(bytes));
    out.push_back(TensorInfo{name, dt, shape, storage.back().data(),
                             static_cast<int64_t>(storage.back().size())});
  }
  const std::string embed_name = hf_name(arch, "token_embd.weight", opt.gpt2_prefix);
  if (opt.tied == HfConvertOptions::Tied::LmHeadOnly)
    for (TensorInfo& t : out)
      if (t.name == embed_name) t.name = "lm_head.weight";
  std::map<std::string, std::string> meta = {{"format", "pt"}};
  if (opt.dedup_metadata) meta[embed_name] = "lm_head.weight";
  if (opt.shards <= 1) {
    write_safetensors(dir + "/model.safetensors", out, meta);
  } else {
    json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
    const size_t per = (out.size() + opt.shards - 1) / opt.shards;
    for (int s = 0; s < opt.shards; ++s) {
      const std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, opt.shards);
      std::vector<TensorInfo> part;
      for (size_t i = s * per; i < std::min(out.size(), (s + 1) * per); ++i) {
        part.push_back(out[i]);
        index["weight_map"][out[i].name] = file;
      }
      write_safetensors(dir + "/" + file, part, meta);
    }
    write_text(dir + "/model.safetensors.index.json", index.dump(2));
  }
  return cfg;
}

}  // namespace attnsparse::testing
