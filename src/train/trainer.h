// `attnsparse train`: options and entry point of the libtorch trainer (the implementation
// lives in src/train/torch/ and exists only when ATTNSPARSE_HAVE_TORCH is defined).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace attnsparse::train {

struct TrainOptions {
  std::string arch = "llama";        // llama | gpt2
  std::string preset = "tiny";       // tiny | small | base
  std::vector<std::string> data;     // training text files
  std::vector<std::string> val;      // validation text files (else the last 5% of the data)
  std::string tokenizer = "byte";    // byte | spm:N | gguf:FILE
  int64_t steps = 100;
  int64_t batch = 8;
  int64_t ctx = 128;
  double lr = 1e-3;
  double min_lr_ratio = 0.1;         // cosine decays to lr * ratio
  int64_t warmup = -1;               // -1: min(100, steps / 10)
  double weight_decay = 0.1;
  double grad_clip = 1.0;
  uint64_t seed = 1;
  std::string reg = "none";          // RegSpec string
  std::string device = "cpu";
  std::string out;                   // model.gguf
  std::string checkpoint;            // default: out + ".ckpt"
  bool f16 = false;                  // export matrices as f16
  int64_t eval_every = -1;           // -1: steps / 10
  int64_t eval_batches = 8;
  int64_t checkpoint_every = 0;      // 0: only at the end
  std::string resume;                // checkpoint to continue from
  int64_t stop_at = 0;               // > 0: stop after this step (checkpoint, no export)
  std::string csv;                   // default: out + ".csv"
  std::string svg;                   // default: out + ".svg"
  std::string json;                  // summary JSON (optional)
  int64_t sample_tokens = 0;         // after training, sample this many tokens
  std::string prompt = "And";
  int64_t metric_k = 8;              // k of the sparsity metrics (mean M_k, (ε,k)-sparse share)
  double metric_eps = 0.05;
  bool quiet = false;                // no progress on stderr
  int threads = 0;                   // 0: libtorch's default (all cores)
};

struct TrainSummary {
  int64_t params = 0;
  int64_t steps = 0;
  int64_t n_vocab = 0;
  int64_t train_tokens = 0, val_tokens = 0;
  bool line_aligned = false;   // windows start at line starts
  double train_loss = 0, val_loss = 0, val_ppl = 0;
  double val_bits_per_byte = 0;  // the validation loss per UTF-8 byte of the predicted text
  double mean_topk_mass = 0;   // mean M_k over val rows t >= k, all layers and heads
  double sparse_share = 0;     // share of those rows with M_k >= 1 - eps
  double tokens_per_s = 0;
  double seconds = 0;
  std::string sample;
  bool stopped = false;        // stopped early by stop_at (nothing exported)
};

// Trains, writes checkpoints/CSV/SVG/GGUF as the options say. Throws Error on bad input.
TrainSummary run_training(const TrainOptions& opts);

}  // namespace attnsparse::train
