// The training loop: an interrupted run resumed from its checkpoint ends exactly where an
// uninterrupted run ends; training lowers the loss; the regulariser concentrates attention
// (higher mean top-k mass than the same run without it); bad arguments give one clear
// error line, exit status 1 and no output file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "io/gguf.h"
#include "model/model.h"
#include "train/torch/train_log.h"
#include "train/trainer.h"
#include "train_test_util.h"

namespace attnsparse::train {
namespace {

using train_test::ScratchDir;
namespace fs = std::filesystem;

TrainOptions tiny_options(const ScratchDir& dir, const std::string& name) {
  TrainOptions o;
  o.arch = "llama";
  o.preset = "tiny";
  o.data = {train_test::kjv_sample()};
  o.tokenizer = "byte";
  o.steps = 12;
  o.batch = 4;
  o.ctx = 32;
  o.lr = 3e-3;
  o.seed = 5;
  o.eval_batches = 2;
  o.out = dir / (name + ".gguf");
  o.quiet = true;
  o.threads = 1;
  return o;
}

// All tensors of two GGUF files, as raw bytes.
void expect_same_tensors(const std::string& a, const std::string& b) {
  GgufFile fa(a), fb(b);
  ASSERT_EQ(fa.tensors().size(), fb.tensors().size());
  for (const auto& ta : fa.tensors()) {
    const TensorInfo* tb = fb.find(ta.name);
    ASSERT_NE(tb, nullptr) << ta.name;
    ASSERT_EQ(ta.nbytes, tb->nbytes) << ta.name;
    EXPECT_EQ(std::memcmp(ta.data, tb->data, ta.nbytes), 0) << ta.name << " differs";
  }
}

TEST(Trainer, ResumedRunEqualsUninterruptedRun) {
  for (const std::string arch : {"llama", "gpt2"}) {
    SCOPED_TRACE(arch);
    ScratchDir dir;
    TrainOptions full = tiny_options(dir, "full");
    full.arch = arch;
    full.reg = "topk:k=4,lambda=0.1";  // the regulariser's path too
    TrainSummary a = run_training(full);

    TrainOptions first = tiny_options(dir, "parts");
    first.arch = arch;
    first.reg = full.reg;
    first.stop_at = 5;
    TrainSummary stopped = run_training(first);
    EXPECT_TRUE(stopped.stopped);
    EXPECT_FALSE(fs::exists(first.out)) << "a stopped run exports nothing";
    ASSERT_TRUE(fs::exists(first.out + ".ckpt"));

    TrainOptions second = tiny_options(dir, "parts");
    second.arch = arch;
    second.reg = full.reg;
    second.resume = first.out + ".ckpt";
    TrainSummary b = run_training(second);
    EXPECT_FALSE(b.stopped);
    EXPECT_EQ(a.val_loss, b.val_loss);
    EXPECT_EQ(a.train_loss, b.train_loss);
    expect_same_tensors(full.out, second.out);
    // The loss curve of the resumed run holds every step once, as the full run's does.
    auto rows_a = read_log_csv(full.out + ".csv", 1000), rows_b = read_log_csv(second.out + ".csv", 1000);
    ASSERT_EQ(rows_a.size(), 12u);
    ASSERT_EQ(rows_b.size(), 12u);
    for (size_t i = 0; i < rows_a.size(); ++i) {
      EXPECT_EQ(rows_b[i].step, static_cast<int64_t>(i + 1));
      EXPECT_EQ(rows_a[i].train_loss, rows_b[i].train_loss) << "step " << i + 1;
    }
  }
}

TEST(Trainer, TrainingLowersTheLossAndExportsAWorkingModel) {
  ScratchDir dir;
  TrainOptions o = tiny_options(dir, "m");
  o.steps = 40;
  o.sample_tokens = 8;
  TrainSummary s = run_training(o);
  // An untrained byte model predicts uniformly: ln 260 = 5.56 nats per token.
  EXPECT_LT(s.val_loss, 0.8 * std::log(260.0));
  EXPECT_NEAR(s.val_ppl, std::exp(s.val_loss), 1e-9 * s.val_ppl);
  EXPECT_NEAR(s.val_bits_per_byte, s.val_loss / std::log(2.0), 1e-9);  // byte tokens: 1 byte each
  EXPECT_EQ(s.sample.rfind(o.prompt, 0), 0u);
  EXPECT_TRUE(fs::exists(o.out + ".csv"));
  EXPECT_TRUE(fs::exists(o.out + ".svg"));
  auto m = Model::load(o.out);
  EXPECT_EQ(m->config().n_vocab, 260);
  EXPECT_EQ(m->tokenizer().bos_id(), 1);
}

// The source's claim in miniature: the same run with λ > 0 ends with attention rows that
// carry more of their mass in their top k.
TEST(Trainer, RegulariserConcentratesAttention) {
  ScratchDir dir;
  TrainOptions base = tiny_options(dir, "base");
  base.steps = 30;
  base.metric_k = 2;
  TrainOptions reg = base;
  reg.out = dir / "reg.gguf";
  reg.reg = "topk:k=2,lambda=1";
  TrainSummary a = run_training(base), b = run_training(reg);
  EXPECT_GT(b.mean_topk_mass, a.mean_topk_mass + 0.1)
      << "baseline M_2 " << a.mean_topk_mass << ", regularised " << b.mean_topk_mass;
}

struct CliCase {
  std::string args;
  std::string message;  // expected in the one error line
};

TEST(TrainCli, BadArgumentsGiveOneClearErrorAndNoOutput) {
  ScratchDir dir;
  const std::string data = train_test::kjv_sample();
  train_test::write_file(dir / "not_a_ckpt", "hello");
  train_test::write_file(dir / "tiny.txt", "In the beginning\n");
  const std::string out = dir / "o.gguf";
  // Valid arguments but for the ones a case names.
  auto with = [&](const std::string& steps, const std::string& ctx, const std::string& preset) {
    return " --data " + data + " --steps " + steps + " --ctx " + ctx + " --preset " + preset +
           " --batch 2 -q --out " + out;
  };
  const std::string common = with("2", "16", "tiny");
  const std::vector<CliCase> cases = {
      {"--data " + dir / "missing.txt" + " --out " + out, "missing.txt: no such file"},
      {common + " --device cuda", "--device cuda: this libtorch has no CUDA support"},
      {common + " --device tpu", "--device 'tpu': expected cpu or cuda"},
      {with("0", "16", "tiny"), "--steps 0: must be >= 1"},
      {with("2", "1", "tiny"), "--ctx 1: expected 2..8192"},
      {common + " --lr -1", "--lr -1: must be a positive number"},
      {common + " --arch bert", "--arch 'bert': expected llama or gpt2"},
      {with("2", "16", "huge"), "--preset 'huge': expected tiny, mini, small or base"},
      {common + " --reg topk:k=8", "lambda= is required"},
      {common + " --tokenizer spm:abc", "abc: no such file"},
      {common + " --tokenizer wordpiece", "expected byte, spm:VOCAB_SIZE"},
      {common + " --resume " + dir / "not_a_ckpt", "not_a_ckpt: not a trainer checkpoint"},
      {common + " --resume " + dir / "nothing.ckpt", "nothing.ckpt: no such checkpoint"},
      {" --data " + dir / "tiny.txt" + " --steps 2 --ctx 64 --preset tiny -q --out " + out,
       "fewer than --ctx 64"},
      {" --data " + data + " --out " + dir / "no/such/dir/o.gguf", "does not exist"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args);
    auto r = train_test::run_command(std::string(ATTNSPARSE_BIN) + " train " + c.args, train_test::Output::merged);
    EXPECT_EQ(r.status, 1) << r.out;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("error"), std::string::npos) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    EXPECT_FALSE(fs::exists(out));
  }
}

TEST(TrainCli, HelpExplainsWithAnExample) {
  auto r = train_test::run_command(std::string(ATTNSPARSE_BIN) + " train --help", train_test::Output::merged);
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("Example"), std::string::npos);
  EXPECT_NE(r.out.find("--reg"), std::string::npos);
  EXPECT_NE(r.out.find("topk:k=8,lambda=0.1"), std::string::npos);
}

}  // namespace
}  // namespace attnsparse::train
