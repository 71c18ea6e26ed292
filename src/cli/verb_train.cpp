// attnsparse train: train a GPT-2- or Llama-style model with libtorch (optionally with the
// attention-condensation regulariser) and export it as GGUF.
#include <fmt/format.h>

#include <memory>

#include "cli/verb.h"
#include "core/error.h"
#include "train/trainer.h"

namespace attnsparse::cli {
namespace {

struct TrainCliOptions {
  train::TrainOptions train;
  int threads = 0;
};

void run_train(TrainCliOptions& o) {
#ifdef ATTNSPARSE_HAVE_TORCH
  apply_threads(o.threads);
  o.train.threads = o.threads;
  train::run_training(o.train);
#else
  (void)o;
  fail("this build has no trainer (attnsparse-train is built only when libtorch is found): install libtorch-dev (scripts/setup.sh does) and rebuild");
#endif
}

void register_train(CLI::App& app) {
  auto* sub = app.add_subcommand("train", "Train a small llama/gpt2 model (libtorch), optionally with the condensation regulariser, and export GGUF");
  sub->footer(
      "Example (the bundled default model, see scripts/train_default.sh):\n"
      "  scripts/kjv_corpus.sh out/corpus\n"
      "  attnsparse train --arch llama --preset small --data out/corpus/kjv.train.txt \\\n"
      "      --val out/corpus/kjv.val.txt --tokenizer spm:4000 --steps 2000 --batch 16 --ctx 256 \\\n"
      "      --lr 2e-3 --seed 1 --threads 2 --out model.gguf\n"
      "With the condensation regulariser (docs/methods.md §9):\n"
      "  attnsparse train ... --reg topk:k=8,lambda=0.1 --out sparse.gguf\n"
      "Regulariser specs: topk:k=8,lambda=0.1 (tail mass) | topk:k=8,lambda=0.1,hinge=0.05 |\n"
      "  dyn:alpha=1,C=0.5,lambda=0.1 (k_t = ceil(alpha*(t+1)^C)); add layers=0,1 / heads=2,3 to restrict.\n"
      "Tokenizers: byte (260 tokens) | spm:N (SentencePiece BPE trained by spm_train on --data) |\n"
      "  spm:FILE.model | gguf:FILE (the vocabulary of an existing model).\n"
      "Writes OUT (GGUF), OUT.ckpt (checkpoint for --resume), OUT.csv (loss per step), OUT.svg (plot);\n"
      "progress goes to stderr, the summary table to stdout, --json FILE for programs.");
  auto opts = std::make_shared<TrainCliOptions>();
  train::TrainOptions& o = opts->train;
  sub->add_option("--arch", o.arch, "llama or gpt2")->capture_default_str();
  sub->add_option("--preset", o.preset, "tiny | mini | small | base: 0.1M, 0.8M, 3.2M, 10.6M parameters besides the 2 x vocab x n_embd embeddings (llama)")->capture_default_str();
  sub->add_option("--data", o.data, "training text file(s)")->required()->expected(1, -1);
  sub->add_option("--val", o.val, "validation text file(s) (default: the last 5% of the data)")->expected(1, -1);
  sub->add_option("--tokenizer", o.tokenizer, "byte | spm:VOCAB_SIZE | gguf:FILE")->capture_default_str();
  sub->add_option("--steps", o.steps, "optimizer steps")->capture_default_str();
  sub->add_option("--batch", o.batch, "sequences per step")->capture_default_str();
  sub->add_option("--ctx", o.ctx, "sequence length (and the model's context)")->capture_default_str();
  sub->add_option("--lr", o.lr, "peak learning rate (AdamW; linear warmup, cosine decay)")->capture_default_str();
  sub->add_option("--min-lr-ratio", o.min_lr_ratio, "final lr / peak lr")->capture_default_str();
  sub->add_option("--warmup", o.warmup, "warmup steps (-1: min(100, steps/10))")->capture_default_str();
  sub->add_option("--weight-decay", o.weight_decay, "AdamW weight decay on matrices")->capture_default_str();
  sub->add_option("--grad-clip", o.grad_clip, "gradient norm clip")->capture_default_str();
  sub->add_option("--seed", o.seed, "random seed (init and data order)")->capture_default_str();
  sub->add_option("--reg", o.reg, "condensation regulariser spec (see below), or none")->capture_default_str();
  sub->add_option("--device", o.device, "cpu or cuda")->capture_default_str();
  sub->add_option("--out", o.out, "output GGUF file")->required();
  sub->add_option("--checkpoint", o.checkpoint, "checkpoint file (default OUT.ckpt)");
  sub->add_flag("--f16", o.f16, "store matrices as f16 (default f32)");
  sub->add_option("--eval-every", o.eval_every, "validate every N steps (-1: steps/10)")->capture_default_str();
  sub->add_option("--eval-batches", o.eval_batches, "validation batches")->capture_default_str();
  sub->add_option("--checkpoint-every", o.checkpoint_every, "write OUT.ckpt every N steps (0: at the end only)")->capture_default_str();
  sub->add_option("--resume", o.resume, "continue from a checkpoint (OUT.ckpt of an earlier run)");
  sub->add_option("--stop-at", o.stop_at, "stop after this step with a checkpoint and no export (0: run all --steps)")->capture_default_str();
  sub->add_option("--csv", o.csv, "loss curve CSV (default OUT.csv)");
  sub->add_option("--svg", o.svg, "loss curve plot (default OUT.svg)");
  sub->add_option("--json", o.json, "write a summary JSON here");
  sub->add_option("--sample", o.sample_tokens, "after training, sample N tokens from --prompt")->capture_default_str();
  sub->add_option("--prompt", o.prompt, "prompt for --sample")->capture_default_str();
  sub->add_option("--metric-k", o.metric_k, "k of the reported sparsity metrics")->capture_default_str();
  sub->add_option("--metric-eps", o.metric_eps, "eps of the (eps,k)-sparse share")->capture_default_str();
  sub->add_flag("--quiet,-q", o.quiet, "no progress output");
  add_threads_option(sub, &opts->threads);
  sub->callback([opts] { run_train(*opts); });
}
ATTNSPARSE_VERB(register_train);

}  // namespace
}  // namespace attnsparse::cli
