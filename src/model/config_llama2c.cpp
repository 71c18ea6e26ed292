// ModelConfig of a llama2.c checkpoint: its seven header values plus what run.c fixes in
// code (RMSNorm eps 1e-5, RoPE base 10000 over the whole head, adjacent pairs).
#include <filesystem>

#include "io/llama2c.h"
#include "model/arch.h"
#include "model/config.h"

namespace attnsparse {

ModelConfig config_from_llama2c(const Llama2cFile& file) {
  const Llama2cHeader& h = file.header();
  ModelConfig c;
  c.source_format = "llama2c";
  c.arch = "llama";
  c.name = std::filesystem::path(file.path()).stem().string();
  c.n_vocab = h.vocab_size;
  c.n_ctx = h.seq_len;
  c.n_embd = h.dim;
  c.n_layer = h.n_layers;
  c.n_head = h.n_heads;
  c.n_kv_head = h.n_kv_heads;
  c.head_dim = h.head_size();
  c.n_ff = h.hidden_dim;
  c.norm_eps = 1e-5f;
  c.tied_output = h.shared_classifier;
  // run.c rotates (q[2i], q[2i+1]) by pos * 10000^(-2i / head_size): the adjacent-pair
  // layout, the one llama.cpp uses for GGUF llama files (its converter copies Q/K as they are).
  c.rope_layout = RopeLayout::Adjacent;
  c.rope_dim = h.head_size();
  c.rope_base = 10000.f;
  finalize_config(c, {});  // per-layer kinds (all global) and the attention scale
  return c;
}

}  // namespace attnsparse
