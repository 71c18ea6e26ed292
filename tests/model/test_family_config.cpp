// Hostile and unusual config.json / GGUF fields of the families: one clear error naming
// the field, never a crash or a silently different model.
#include <gtest/gtest.h>

#include "core/error.h"
#include "model/hf_convert.h"
#include "model/model.h"
#include "model/model_test_util.h"

namespace attnsparse {
namespace {

using namespace testing;

// Loading the HF conversion of `model` with config.json fields replaced must fail with a
// FormatError whose message contains `needle`.
void expect_hf_error(const std::string& model, const nlohmann::json& extra, const std::string& needle) {
  REQUIRE_SHARED(gguf, "arch/models/" + model);
  TempDir dir;
  HfConvertOptions o;
  o.config_extra = extra;
  write_hf_dir_from_gguf(gguf, dir.path().string(), o);
  try {
    Model::load(dir.path().string());
    ADD_FAILURE() << "no error for " << extra.dump();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}

TEST(FamilyConfig, HostileHfFieldsGiveOneClearError) {
  expect_hf_error("qwen3moe-f16.gguf", {{"num_experts_per_tok", 9}}, "num_experts_per_tok");
  expect_hf_error("qwen3moe-f16.gguf", {{"decoder_sparse_step", 2}}, "decoder_sparse_step");
  expect_hf_error("qwen3moe-f16.gguf", {{"mlp_only_layers", {1}}}, "mlp_only_layers");
  expect_hf_error("qwen3moe-f16.gguf", {{"num_experts", nullptr}}, "num_experts");
  expect_hf_error("gemma3-f16.gguf", {{"layer_types", {"sliding_attention"}}}, "layer_types");
  expect_hf_error("gemma3-f16.gguf", {{"layer_types", {"sliding_attention", "chunked_attention"}}},
                  "chunked_attention");
  expect_hf_error("gemma2-f16.gguf", {{"hidden_activation", "relu"}}, "hidden_activation");
  expect_hf_error("gemma2-f16.gguf", {{"attn_logit_softcapping", -1.0}}, "attn_logit_softcapping");
  expect_hf_error("gemma2-f16.gguf", {{"query_pre_attn_scalar", 0}}, "query_pre_attn_scalar");
  expect_hf_error("qwen3-f16.gguf", {{"use_sliding_window", true}}, "use_sliding_window");
  expect_hf_error("phi3-f16.gguf", {{"rope_scaling", {{"type", "longrope"}}}}, "longrope");
  expect_hf_error("qwen3-f16.gguf", {{"architectures", {"Gemma3ForConditionalGeneration"}}},
                  "Gemma3ForConditionalGeneration");
}

TEST(FamilyConfig, Qwen3MoeWithoutNormTopkProbKeepsRawWeights) {
  // transformers' Qwen3-MoE default (norm_topk_prob false): the top-k router
  // probabilities are used as they are, which changes the output (vs renormalised).
  REQUIRE_SHARED(gguf, "arch/models/qwen3moe-f16.gguf");
  TempDir a, b;
  HfConvertOptions o;
  write_hf_dir_from_gguf(gguf, a.path().string(), o);
  o.config_extra = {{"norm_topk_prob", false}};
  write_hf_dir_from_gguf(gguf, b.path().string(), o);
  auto norm = Model::load(a.path().string());
  auto raw = Model::load(b.path().string());
  EXPECT_TRUE(norm->config().moe_norm_topk);
  EXPECT_FALSE(raw->config().moe_norm_topk);
  const std::vector<int32_t> toks = {1, 500, 901, 77, 3000, 12, 8};
  auto run = [&](const Model& m) {
    KVCache c = m.make_cache(7);
    std::vector<float> l;
    m.forward(toks, c, {}, l);
    return l;
  };
  EXPECT_GT(logit_error(run(*raw), run(*norm), 32000).max_rel, 1e-2);
}

}  // namespace
}  // namespace attnsparse
