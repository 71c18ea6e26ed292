// Mistral-style sliding windows (every layer, from llama.attention.sliding_window or
// config.json's sliding_window) and the switch that turns them off. The truth is the
// same model without the key run with the policy key set window(w) through the hooks (the
// key-set code path of src/policies, independent of the native-window code), and the
// model without the key itself for the switched-off run. Also: the layer patterns of the
// table's rule against llama.cpp's set_swa_pattern written out here.
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "model/arch.h"
#include "model/hf_convert.h"
#include "model/model.h"
#include "model/model_test_util.h"
#include "ops/keyset.h"

namespace attnsparse {
namespace {

using namespace testing;

// Copies a GGUF file, adding/overriding metadata.
void copy_gguf_with(const std::string& src_path, const std::string& out,
                    const std::vector<std::pair<std::string, GgufValue>>& extra) {
  GgufFile src(src_path);
  GgufWriter w;
  for (const auto& [k, v] : src.metadata()) w.set(k, v);
  for (const auto& [k, v] : extra) w.set(k, v);
  for (const TensorInfo& t : src.tensors())
    w.add_tensor_raw(t.name, t.dtype, t.shape, t.data, t.nbytes);
  w.write(out);
}

struct WindowKeys : AttentionHooks {
  ops::KeySet ks;
  explicit WindowKeys(int64_t w) : ks(ops::KeySet::window(w)) {}
  const ops::KeySet* keys(int) override { return &ks; }
};

std::vector<float> run(const Model& m, const std::vector<int32_t>& toks, AttentionHooks* hooks) {
  KVCache cache = m.make_cache(static_cast<int64_t>(toks.size()));
  ForwardOptions opts;
  opts.hooks = hooks;
  opts.logit_rows = {0, 20, 40, 90, static_cast<int64_t>(toks.size()) - 1};
  std::vector<float> logits;
  m.forward(toks, cache, opts, logits);
  return logits;
}

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
  ~ScopedEnv() { ::unsetenv(name_); }

 private:
  const char* name_;
};

TEST(SlidingWindow, MistralWindowFromGgufEqualsWindowKeySet) {
  REQUIRE_SHARED(gguf, "models/llama-spm-f32.gguf");
  TempDir dir;
  copy_gguf_with(gguf, dir.file("w16.gguf"), {{"llama.attention.sliding_window", GgufValue::make_u32(16)}});
  const auto toks = read_ids(std::string(ATTNSPARSE_SHARED_DIR) + "/reference/expected/llama-spm-f32.random.tokens.txt");
  auto plain = Model::load(gguf);
  auto windowed = Model::load(dir.file("w16.gguf"));
  for (const LayerAttention& la : windowed->config().layers) EXPECT_EQ(la.window, 16);
  WindowKeys hooks(16);
  const auto want = run(*plain, toks, &hooks);
  const auto got = run(*windowed, toks, nullptr);
  const auto full = run(*plain, toks, nullptr);
  const double d = logit_error(got, want, plain->config().n_vocab).max_rel;
  const double vs_full = logit_error(got, full, plain->config().n_vocab).max_rel;
  std::printf("[ measured ] native window 16 vs window key set: %.3g; vs no window: %.3g\n", d, vs_full);
  EXPECT_LE(d, 1e-6);       // same visible keys, same kernel: measured 0
  EXPECT_GT(vs_full, 0.1);  // and the window really changes the result
  {
    ScopedEnv off("ATTNSPARSE_SLIDING_WINDOW", "off");
    auto unwindowed = Model::load(dir.file("w16.gguf"));
    EXPECT_FALSE(unwindowed->config().sliding_window_applied);
    EXPECT_EQ(unwindowed->config().sliding_window, 16);
    for (const LayerAttention& la : unwindowed->config().layers) EXPECT_EQ(la.window, 0);
    EXPECT_EQ(run(*unwindowed, toks, nullptr), full);
  }
  {
    ScopedEnv bad("ATTNSPARSE_SLIDING_WINDOW", "sometimes");
    EXPECT_THROW(Model::load(dir.file("w16.gguf")), Error);
  }
}

TEST(SlidingWindow, MistralWindowFromConfigJsonEqualsWindowKeySet) {
  REQUIRE_SHARED(gguf, "models/llama-spm-f32.gguf");
  TempDir dir;
  HfConvertOptions o;
  o.config_extra = {{"architectures", {"MistralForCausalLM"}}, {"sliding_window", 24}};
  write_hf_dir_from_gguf(gguf, dir.path().string(), o);
  auto hf = Model::load(dir.path().string());
  ASSERT_EQ(hf->config().arch, "llama");
  for (const LayerAttention& la : hf->config().layers) EXPECT_EQ(la.window, 24);
  auto plain = Model::load(gguf);
  const auto toks = read_ids(std::string(ATTNSPARSE_SHARED_DIR) + "/reference/expected/llama-spm-f32.random.tokens.txt");
  WindowKeys hooks(24);
  const double d = logit_error(run(*hf, toks, nullptr), run(*plain, toks, &hooks), plain->config().n_vocab).max_rel;
  std::printf("[ measured ] HF Mistral window 24 vs GGUF + window key set: %.3g\n", d);
  EXPECT_LE(d, 1e-4);  // HF half-split vs GGUF adjacent RoPE pairs: rounding only (test_hf_model)
}

TEST(SlidingWindow, CliSwitchTurnsTheWindowOff) {
  REQUIRE_SHARED(gguf, "models/llama-spm-f32.gguf");
  TempDir dir;
  copy_gguf_with(gguf, dir.file("w16.gguf"), {{"llama.attention.sliding_window", GgufValue::make_u32(16)}});
  const ProcessResult on = run_cli("info '" + dir.file("w16.gguf") + "' --json");
  ASSERT_EQ(on.status, 0) << on.err;
  const auto j_on = nlohmann::json::parse(on.out);
  EXPECT_EQ(j_on["layers"][0]["window"], 16);
  const ProcessResult off = run_cli("--no-sliding-window info '" + dir.file("w16.gguf") + "' --json");
  ASSERT_EQ(off.status, 0) << off.err;
  const auto j_off = nlohmann::json::parse(off.out);
  EXPECT_EQ(j_off["layers"][0]["window"], 0);
  EXPECT_EQ(j_off["layers"][0]["kind"], "windowed");
  EXPECT_EQ(j_off["family"]["sliding_window_applied"], false);
}

TEST(SlidingWindow, LayerPatternsFollowLlamaCppsRule) {
  // llama.cpp's set_swa_pattern(n, dense_first = false): layer il is windowed iff
  // n == 0 || il % n < n - 1. Gemma-2 (n = 2): even layers; Gemma-3 (n = 6): all but
  // every sixth (5, 11, ...).
  const auto g2 = swa_pattern_from_period(6, 2);
  EXPECT_EQ(g2, (std::vector<bool>{true, false, true, false, true, false}));
  const auto g3 = swa_pattern_from_period(13, 6);
  for (int l = 0; l < 13; ++l) EXPECT_EQ(g3[l], l != 5 && l != 11) << l;
  const auto all = swa_pattern_from_period(3, 0);
  EXPECT_EQ(all, (std::vector<bool>{true, true, true}));
}

TEST(SlidingWindow, HostileWindowKeysGiveOneClearError) {
  REQUIRE_SHARED(gguf, "arch/models/gemma3-f16.gguf");
  TempDir dir;
  // A per-layer pattern array of the wrong length.
  copy_gguf_with(gguf, dir.file("bad.gguf"),
                 {{"gemma3.attention.sliding_window_pattern",
                   GgufValue::make_array(GgufType::UINT32, {GgufValue::make_u32(1)})}});
  try {
    Model::load(dir.file("bad.gguf"));
    FAIL() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("sliding_window_pattern"), std::string::npos) << e.what();
  }
  // An array pattern of the right length is used as given (layer 1 windowed instead of 0).
  copy_gguf_with(gguf, dir.file("arr.gguf"),
                 {{"gemma3.attention.sliding_window_pattern",
                   GgufValue::make_array(GgufType::BOOL, {GgufValue::make_bool(false), GgufValue::make_bool(true)})}});
  auto m = Model::load(dir.file("arr.gguf"));
  EXPECT_EQ(m->config().layers[0].window, 0);
  EXPECT_EQ(m->config().layers[1].window, 32);
  EXPECT_FLOAT_EQ(m->config().layers[1].rope_base, 10000.f);
  EXPECT_FLOAT_EQ(m->config().layers[0].rope_base, 1e6f);
  // Experts: more used than exist.
  REQUIRE_SHARED(moe, "arch/models/mixtral-f16.gguf");
  copy_gguf_with(moe, dir.file("moe.gguf"), {{"llama.expert_used_count", GgufValue::make_u32(5)}});
  EXPECT_THROW(Model::load(dir.file("moe.gguf")), FormatError);
}

}  // namespace
}  // namespace attnsparse
