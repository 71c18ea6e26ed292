// The training loop of `attnsparse train`: data, AdamW + warmup/cosine schedule, gradient
// clipping, the condensation regulariser, evaluation, checkpoints, CSV/SVG logs, export.
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/tokenizer.h"
#include "train/text_tokenizer.h"
#include "train/torch/lm.h"
#include "train/torch/train_log.h"
#include "train/trainer.h"

namespace attnsparse::train {
namespace {

namespace fs = std::filesystem;

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_file(path, "cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  if (s.empty()) fail_file(path, "empty file");
  return s;
}

// A token stream and the positions where windows may start. A window is BOS followed by
// T tokens of the stream (input: BOS + the first T-1, targets: the T tokens), so every
// sequence the model sees starts as an inference prompt does (the engine adds BOS).
struct TokenStream {
  std::vector<int64_t> ids;
  std::vector<int64_t> line_starts;  // candidates: stream start and after each newline token
  std::vector<int64_t> starts;       // window starts s, s + T <= ids.size()
  bool line_aligned = false;
};

// Windows start at line starts (the token after one whose text ends in a newline) when
// there are enough of them to reach every part of the text (>= size / T); otherwise at
// every position.
void choose_starts(TokenStream& s, int64_t T) {
  const int64_t n = static_cast<int64_t>(s.ids.size());
  s.starts.clear();
  for (int64_t p : s.line_starts)
    if (p + T <= n) s.starts.push_back(p);
  s.line_aligned = !s.starts.empty() && static_cast<int64_t>(s.starts.size()) >= n / T;
  if (!s.line_aligned) {
    s.starts.clear();
    for (int64_t i = 0; i + T <= n; ++i) s.starts.push_back(i);
  }
}

// Files are encoded whole, one after another (the engine tokenizer: the same ids a GGUF
// reader of the exported model produces for the same text).
TokenStream tokenize_files(const TextTokenizer& tok, const std::vector<std::string>& files,
                           const std::vector<char>& ends_line) {
  TokenStream s;
  for (const auto& f : files) {
    auto ids = tok.encode(read_text(f));
    const int64_t base = static_cast<int64_t>(s.ids.size());
    s.line_starts.push_back(base);
    for (size_t i = 0; i < ids.size(); ++i) {
      s.ids.push_back(ids[i]);
      if (ends_line[ids[i]] && i + 1 < ids.size()) s.line_starts.push_back(base + int64_t(i) + 1);
    }
  }
  return s;
}

// Moves the last `fraction` of the tokens into a new stream.
TokenStream split_tail(TokenStream& s, double fraction) {
  const int64_t n = static_cast<int64_t>(s.ids.size());
  const int64_t cut = n - static_cast<int64_t>(std::floor(n * fraction));
  TokenStream tail;
  tail.ids.assign(s.ids.begin() + cut, s.ids.end());
  tail.line_starts.push_back(0);
  std::vector<int64_t> head_starts;
  for (int64_t p : s.line_starts) {
    if (p < cut) head_starts.push_back(p);
    else if (p > cut) tail.line_starts.push_back(p - cut);
  }
  s.ids.resize(cut);
  s.line_starts = std::move(head_starts);
  return tail;
}

torch::Tensor bytes_tensor(const std::string& s) {
  auto t = torch::empty({static_cast<int64_t>(s.size())}, torch::kUInt8);
  if (!s.empty()) std::memcpy(t.data_ptr<uint8_t>(), s.data(), s.size());
  return t;
}
std::string tensor_bytes(const torch::Tensor& t) {
  auto c = t.contiguous();
  return std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), c.numel());
}

std::string c10_message(const c10::Error& e) {
  std::string m = e.what_without_backtrace();
  auto nl = m.find('\n');
  return m.substr(0, std::min<size_t>(nl, 200));
}

// ---- setup: options, files, checkpoint header ----

// Every argument is checked before any work, so a long run does not fail at its end.
void check_options(const TrainOptions& o) {
  if (o.out.empty()) fail_usage("--out is required");
  if (o.data.empty()) fail_usage("--data is required");
  if (o.steps < 1) fail_usage("--steps {}: must be >= 1", o.steps);
  if (o.batch < 1) fail_usage("--batch {}: must be >= 1", o.batch);
  if (o.ctx < 2 || o.ctx > 8192) fail_usage("--ctx {}: expected 2..8192", o.ctx);
  if (!(o.lr > 0) || !std::isfinite(o.lr)) fail_usage("--lr {}: must be a positive number", o.lr);
  if (!(o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1)) fail_usage("--min-lr-ratio {}: expected 0..1", o.min_lr_ratio);
  if (!(o.weight_decay >= 0)) fail_usage("--weight-decay {}: must be >= 0", o.weight_decay);
  if (!(o.grad_clip > 0)) fail_usage("--grad-clip {}: must be > 0", o.grad_clip);
  if (o.eval_batches < 1) fail_usage("--eval-batches {}: must be >= 1", o.eval_batches);
  if (o.metric_k < 1) fail_usage("--metric-k {}: must be >= 1", o.metric_k);
  if (!(o.metric_eps >= 0 && o.metric_eps < 1)) fail_usage("--metric-eps {}: expected [0, 1)", o.metric_eps);
  if (o.sample_tokens < 0) fail_usage("--sample {}: must be >= 0", o.sample_tokens);
  if (o.stop_at < 0) fail_usage("--stop-at {}: must be >= 0", o.stop_at);
}

torch::Device choose_device(const std::string& name) {
  if (name == "cuda") {
    if (!torch::cuda::is_available())
      fail_usage("--device cuda: this libtorch has no CUDA support (Debian's libtorch is CPU-only) or no GPU is visible; use --device cpu");
    return torch::Device(torch::kCUDA);
  }
  if (name != "cpu") fail_usage("--device '{}': expected cpu or cuda", name);
  return torch::Device(torch::kCPU);
}

// The files a run writes besides the model.
struct RunFiles {
  std::string checkpoint, csv, svg;
};

RunFiles run_files(const TrainOptions& o) {
  RunFiles f{o.checkpoint.empty() ? o.out + ".ckpt" : o.checkpoint, o.csv.empty() ? o.out + ".csv" : o.csv,
             o.svg.empty() ? o.out + ".svg" : o.svg};
  for (const std::string& p : {o.out, f.checkpoint, f.csv, f.svg, o.json}) {
    if (p.empty()) continue;
    fs::path dir = fs::absolute(p).parent_path();
    if (!fs::is_directory(dir)) fail_file(p, "the directory {} does not exist", dir.string());
  }
  return f;
}

// ---- checkpoint: tokenizer, config, what the run was started with, parameters, optimizer
// state and step ----

// The first half of resuming: what is needed before the model exists.
struct CheckpointHeader {
  std::unique_ptr<torch::serialize::InputArchive> archive;
  std::string tokenizer;  // TextTokenizer::serialize()
  LMConfig config;
  std::string preset, tokenizer_spec;
};

CheckpointHeader read_checkpoint_header(const TrainOptions& o) {
  CheckpointHeader h;
  h.preset = o.preset;
  h.tokenizer_spec = o.tokenizer;
  if (!fs::is_regular_file(o.resume)) fail_file(o.resume, "no such checkpoint");
  h.archive = std::make_unique<torch::serialize::InputArchive>();
  try {
    h.archive->load_from(o.resume);
    torch::Tensor t;
    h.archive->read("tokenizer", t);
    h.tokenizer = tensor_bytes(t);
    h.archive->read("config", t);
    h.config = LMConfig::from_json(tensor_bytes(t));
    if (h.archive->try_read("meta", t)) {
      auto meta = nlohmann::json::parse(tensor_bytes(t));
      h.preset = meta.value("preset", h.preset);
      h.tokenizer_spec = meta.value("tokenizer", h.tokenizer_spec);
    }
  } catch (const c10::Error& e) {
    fail_file(o.resume, "not a trainer checkpoint ({})", c10_message(e));
  } catch (const nlohmann::json::exception& e) {
    fail_file(o.resume, "not a trainer checkpoint (bad config: {})", e.what());
  }
  if (h.config.n_ctx != o.ctx) fail_usage("--ctx {} differs from the checkpoint's {}", o.ctx, h.config.n_ctx);
  return h;
}

// One training run: the constructor sets up (options, tokenizer, data, model, optimizer,
// checkpoint), then the loop calls step(), evaluate() and save_checkpoint().
class TrainingRun {
 public:
  struct Eval {
    double loss = 0;  // nats per token
    double bits_per_byte = 0;
  };

  explicit TrainingRun(const TrainOptions& o);

  const TrainOptions& options() const { return o_; }
  const RunFiles& files() const { return files_; }
  const LMConfig& config() const { return cfg_; }
  const RegSpec& reg() const { return reg_; }
  const std::string& preset() const { return preset_; }
  const std::string& tokenizer_spec() const { return tokenizer_spec_; }
  const TokenStream& train_stream() const { return train_s_; }
  const TokenStream& val_stream() const { return val_s_; }
  LM& model() { return model_; }
  const TextTokenizer& tokenizer() const { return tok_; }
  int64_t start_step() const { return start_step_; }
  void log(const std::string& s) const {
    if (!o_.quiet) fmt::print(stderr, "{}", s), std::fflush(stderr);
  }

  // One optimizer step at 0-based `step`: its log row (no validation loss).
  LogRow step(int64_t step);
  // The validation windows; with `stats`, the attention sparsity metrics of their rows.
  Eval evaluate(SparsityStats* stats);
  void save_checkpoint(int64_t step);
  // `sample_tokens` tokens after the prompt, sampled at temperature 0.8 with the run's seed.
  std::string sample();

 private:
  void load_data();
  void build_model(const CheckpointHeader* resume);
  void restore(CheckpointHeader& resume);
  double lr_at(int64_t step) const;
  // [rows, T + 1]: BOS, then T tokens of the stream from each start.
  torch::Tensor windows(const torch::Tensor& stream, const std::vector<int64_t>& starts) const;
  // Batches are a pure function of (seed, step), so a resumed run sees the same data.
  torch::Tensor batch_at(int64_t step) const;
  int64_t target_bytes(const torch::Tensor& targets) const;

  const TrainOptions& o_;
  torch::Device device_;
  RegSpec reg_;
  RunFiles files_;
  std::string preset_, tokenizer_spec_;  // as the run was started (a resumed run: the original's)
  TextTokenizer tok_;
  std::vector<char> ends_line_;       // per token: its text ends a line (window starts)
  std::vector<int64_t> piece_bytes_;  // per token: its UTF-8 length (bits per byte)
  TokenStream train_s_, val_s_;
  LMConfig cfg_;
  LM model_{nullptr};
  std::unique_ptr<torch::optim::AdamW> opt_;
  int64_t start_step_ = 0, warmup_ = 0;
  torch::Tensor train_t_, val_t_, offsets_;
  std::vector<int64_t> val_starts_;  // fixed windows spread evenly over the held-out starts
};

TrainingRun::TrainingRun(const TrainOptions& o) : o_(o), device_(torch::kCPU) {
  check_options(o);
  device_ = choose_device(o.device);
  reg_ = RegSpec::parse(o.reg);
  for (const auto& f : o.data) if (!fs::is_regular_file(f)) fail_file(f, "no such file");
  for (const auto& f : o.val) if (!fs::is_regular_file(f)) fail_file(f, "no such file");
  files_ = run_files(o);
  if (o.threads > 0) torch::set_num_threads(o.threads);

  std::optional<CheckpointHeader> resume;
  if (!o.resume.empty()) resume = read_checkpoint_header(o);
  preset_ = resume ? resume->preset : o.preset;
  tokenizer_spec_ = resume ? resume->tokenizer_spec : o.tokenizer;
  tok_ = resume ? TextTokenizer::deserialize(resume->tokenizer) : TextTokenizer::from_spec(o.tokenizer, o.data);
  log(fmt::format("tokenizer: {} ({} tokens)\n", tok_.kind(), tok_.n_vocab()));
  if (tok_.bos_id() < 0) fail("--tokenizer {}: the vocabulary has no BOS token", o.tokenizer);
  load_data();
  build_model(resume ? &*resume : nullptr);
  if (resume) restore(*resume);
  warmup_ = o.warmup >= 0 ? o.warmup : std::min<int64_t>(100, o.steps / 10);
}

void TrainingRun::load_data() {
  ends_line_.assign(tok_.n_vocab(), 0);
  piece_bytes_.assign(tok_.n_vocab(), 0);
  for (int32_t id = 0; id < tok_.n_vocab(); ++id) {
    const std::string p = tok_.engine().decode(std::span<const int32_t>(&id, 1));
    ends_line_[id] = !p.empty() && p.back() == '\n';
    piece_bytes_[id] = static_cast<int64_t>(p.size());
  }
  const int64_t T = o_.ctx;
  train_s_ = tokenize_files(tok_, o_.data, ends_line_);
  val_s_ = o_.val.empty() ? split_tail(train_s_, 0.05) : tokenize_files(tok_, o_.val, ends_line_);
  choose_starts(train_s_, T);
  choose_starts(val_s_, T);
  if (static_cast<int64_t>(train_s_.ids.size()) < T)
    fail("training data has {} tokens, fewer than --ctx {}", train_s_.ids.size(), T);
  if (static_cast<int64_t>(val_s_.ids.size()) < T)
    fail("validation data has {} tokens, fewer than --ctx {}", val_s_.ids.size(), T);
  log(fmt::format("data: {} train tokens ({} window starts{}), {} val tokens\n", train_s_.ids.size(),
                  train_s_.starts.size(), train_s_.line_aligned ? ", at line starts" : "", val_s_.ids.size()));
}

void TrainingRun::build_model(const CheckpointHeader* resume) {
  cfg_ = resume ? resume->config : preset_config(o_.arch, o_.preset, tok_.n_vocab(), o_.ctx);
  if (cfg_.n_vocab != tok_.n_vocab())
    fail_file(o_.resume, "checkpoint vocabulary {} differs from its tokenizer's {}", cfg_.n_vocab, tok_.n_vocab());
  torch::manual_seed(o_.seed);
  model_ = LM(cfg_, o_.seed);
  model_->to(device_);
  log(fmt::format("model: {} {}: {} layers, n_embd {}, {} heads ({} kv), n_ff {}, {:.2f}M params\n", cfg_.arch,
                  preset_, cfg_.n_layer, cfg_.n_embd, cfg_.n_head, cfg_.n_kv_head, cfg_.n_ff,
                  model_->num_params() / 1e6));

  // AdamW: weight decay on matrices only.
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& [name, t] : model_->gguf_params()) (t.dim() >= 2 ? decay : no_decay).push_back(t);
  auto base_opts = torch::optim::AdamWOptions(o_.lr).betas({0.9, 0.95}).eps(1e-8);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(base_opts).weight_decay(o_.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(base_opts).weight_decay(0.0)));
  opt_ = std::make_unique<torch::optim::AdamW>(groups, base_opts);

  train_t_ = torch::tensor(train_s_.ids, torch::kInt64);
  val_t_ = torch::tensor(val_s_.ids, torch::kInt64);
  offsets_ = torch::arange(o_.ctx, torch::kInt64).unsqueeze(0);
  const int64_t n = std::min<int64_t>(o_.eval_batches * o_.batch, static_cast<int64_t>(val_s_.starts.size()));
  for (int64_t w = 0; w < n; ++w) val_starts_.push_back(val_s_.starts[(w * val_s_.starts.size()) / n]);
}

// The second half of resuming: parameters, optimizer state and step.
void TrainingRun::restore(CheckpointHeader& resume) {
  try {
    torch::NoGradGuard ng;
    for (const auto& [name, t] : model_->gguf_params()) {
      torch::Tensor v;
      resume.archive->read("param/" + name, v);
      if (!v.sizes().equals(t.sizes())) fail_file(o_.resume, "parameter {} has the wrong shape", name);
      t.copy_(v);
    }
    torch::serialize::InputArchive oa;
    resume.archive->read("optimizer", oa);
    opt_->load(oa);
    torch::Tensor st;
    resume.archive->read("step", st);
    start_step_ = st.item<int64_t>();
  } catch (const c10::Error& e) {
    fail_file(o_.resume, "checkpoint does not match ({})", c10_message(e));
  }
  if (start_step_ > o_.steps) fail_usage("--steps {}: the checkpoint is already at step {}", o_.steps, start_step_);
  log(fmt::format("resumed from {} at step {}\n", o_.resume, start_step_));
}

void TrainingRun::save_checkpoint(int64_t step) {
  torch::serialize::OutputArchive ar;
  ar.write("tokenizer", bytes_tensor(tok_.serialize()));
  ar.write("config", bytes_tensor(cfg_.to_json()));
  ar.write("meta", bytes_tensor(nlohmann::json{{"preset", preset_}, {"tokenizer", tokenizer_spec_}}.dump()));
  for (const auto& [name, t] : model_->gguf_params()) ar.write("param/" + name, t.detach().cpu());
  torch::serialize::OutputArchive oa;
  opt_->save(oa);
  ar.write("optimizer", oa);
  ar.write("step", torch::tensor(step));
  ar.save_to(files_.checkpoint + ".tmp");
  fs::rename(files_.checkpoint + ".tmp", files_.checkpoint);
}

// ---- step ----

double TrainingRun::lr_at(int64_t step) const {  // step is 0-based
  if (step < warmup_) return o_.lr * double(step + 1) / double(warmup_);
  double prog = double(step - warmup_) / double(std::max<int64_t>(1, o_.steps - warmup_));
  double cosv = 0.5 * (1 + std::cos(M_PI * std::min(1.0, prog)));
  return o_.lr * (o_.min_lr_ratio + (1 - o_.min_lr_ratio) * cosv);
}

torch::Tensor TrainingRun::windows(const torch::Tensor& stream, const std::vector<int64_t>& starts) const {
  auto idx = torch::tensor(starts, torch::kInt64).unsqueeze(1) + offsets_;
  auto bos = torch::full({static_cast<int64_t>(starts.size()), 1}, int64_t(tok_.bos_id()), torch::kInt64);
  return torch::cat({bos, stream.index({idx})}, 1).to(device_);
}

torch::Tensor TrainingRun::batch_at(int64_t step) const {
  std::mt19937_64 rng(o_.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(step));
  std::uniform_int_distribution<size_t> pick(0, train_s_.starts.size() - 1);
  std::vector<int64_t> starts(o_.batch);
  for (auto& s : starts) s = train_s_.starts[pick(rng)];
  return windows(train_t_, starts);
}

LogRow TrainingRun::step(int64_t step) {
  const int64_t T = o_.ctx;
  const auto t0 = std::chrono::steady_clock::now();
  const double lr = lr_at(step);
  for (auto& g : opt_->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
  auto b = batch_at(step);
  std::vector<torch::Tensor> probs;
  auto logits = model_->forward(b.slice(1, 0, T), reg_.active() ? &probs : nullptr);
  auto lm_loss =
      torch::nn::functional::cross_entropy(logits.reshape({-1, cfg_.n_vocab}), b.slice(1, 1, T + 1).reshape({-1}));
  auto reg_loss = condensation_loss(probs, reg_);
  auto loss = lm_loss + reg_loss;
  opt_->zero_grad();
  loss.backward();
  torch::nn::utils::clip_grad_norm_(model_->parameters(), o_.grad_clip);
  opt_->step();
  const double train_loss = lm_loss.item<double>();
  if (!std::isfinite(train_loss) || !std::isfinite(reg_loss.item<double>()))
    fail("training diverged at step {} (loss {}); lower --lr", step + 1, train_loss);
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return LogRow{step + 1, train_loss, reg_loss.item<double>(), NAN, lr, double(o_.batch * T) / dt};
}

// ---- evaluate ----

int64_t TrainingRun::target_bytes(const torch::Tensor& targets) const {
  int64_t b = 0;
  auto c = targets.cpu().contiguous();
  const int64_t* p = c.data_ptr<int64_t>();
  for (int64_t i = 0; i < c.numel(); ++i) b += piece_bytes_[p[i]];
  return b;
}

TrainingRun::Eval TrainingRun::evaluate(SparsityStats* stats) {
  const int64_t T = o_.ctx;
  torch::NoGradGuard ng;
  model_->eval();
  double nats = 0;
  int64_t tokens = 0, bytes = 0;
  for (size_t w0 = 0; w0 < val_starts_.size(); w0 += o_.batch) {
    std::vector<int64_t> starts(val_starts_.begin() + w0,
                                val_starts_.begin() + std::min(val_starts_.size(), w0 + o_.batch));
    auto b = windows(val_t_, starts);
    std::vector<torch::Tensor> probs;
    auto logits = model_->forward(b.slice(1, 0, T), stats ? &probs : nullptr);
    auto targets = b.slice(1, 1, T + 1);
    auto loss = torch::nn::functional::cross_entropy(
        logits.reshape({-1, cfg_.n_vocab}), targets.reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    nats += loss.item<double>();
    tokens += targets.numel();
    bytes += target_bytes(targets);
    if (stats) stats->add(probs, o_.metric_k, o_.metric_eps);
  }
  model_->train();
  return Eval{nats / tokens, bytes > 0 ? nats / std::log(2.0) / bytes : NAN};
}

std::string TrainingRun::sample() {
  torch::NoGradGuard ng;
  model_->eval();
  auto gen = at::detail::createCPUGenerator(o_.seed);
  std::vector<int64_t> ctx = {tok_.bos_id()};
  for (int32_t id : tok_.encode(o_.prompt)) ctx.push_back(id);
  std::vector<int32_t> out_ids;
  for (int64_t i = 0; i < o_.sample_tokens; ++i) {
    const int64_t from = std::max<int64_t>(0, static_cast<int64_t>(ctx.size()) - o_.ctx);
    auto x = torch::tensor(std::vector<int64_t>(ctx.begin() + from, ctx.end()), torch::kInt64)
                 .unsqueeze(0)
                 .to(device_);
    auto logits = model_->forward(x).select(1, -1).squeeze(0).cpu() / 0.8;
    auto next = torch::multinomial(torch::softmax(logits, -1), 1, false, gen).item<int64_t>();
    if (next == tok_.eos_id()) break;
    ctx.push_back(next);
    out_ids.push_back(static_cast<int32_t>(next));
  }
  return o_.prompt + tok_.decode(out_ids);
}

// ---- the run's outputs ----

// The loss log: the rows of an earlier run up to the resumed step, then one row per step;
// written to CSV.tmp and renamed when the run ends (copied at each checkpoint).
class LossLog {
 public:
  LossLog(const std::string& path, int64_t resumed_step) : path_(path), tmp_(path + ".tmp") {
    if (resumed_step >= 0) rows_ = read_log_csv(path_, resumed_step);  // keep the earlier part of the curve
    csv_.open(tmp_);
    if (!csv_) fail_file(path_, "cannot write");
    csv_ << log_csv_header();
    for (const auto& r : rows_) csv_ << log_csv_row(r);
  }
  void add(const LogRow& r) {
    rows_.push_back(r);
    csv_ << log_csv_row(r);
  }
  void snapshot() {  // the curve so far next to a checkpoint
    csv_.flush();
    fs::copy_file(tmp_, path_, fs::copy_options::overwrite_existing);
  }
  void close() {
    csv_.close();
    if (!csv_) fail_file(path_, "write failed");
    fs::rename(tmp_, path_);
  }
  const std::vector<LogRow>& rows() const { return rows_; }

 private:
  std::string path_, tmp_;
  std::vector<LogRow> rows_;
  std::ofstream csv_;
};

void print_summary(const TrainingRun& run, const TrainSummary& sum) {
  const TrainOptions& o = run.options();
  fmt::print("model            {} ({} {}, {:.2f}M params, vocab {})\n", o.out, run.config().arch, run.preset(),
             sum.params / 1e6, sum.n_vocab);
  fmt::print("regulariser      {}\n", run.reg().to_string());
  fmt::print("steps            {} x {} sequences x {} tokens\n", o.steps, o.batch, o.ctx);
  fmt::print("train loss       {}\n", std::isfinite(sum.train_loss) ? fmt::format("{:.4f}", sum.train_loss) : "- (no step run)");
  fmt::print("val loss         {:.4f} nats/token  (ppl {:.3f}, {:.4f} bits/byte)\n", sum.val_loss, sum.val_ppl,
             sum.val_bits_per_byte);
  fmt::print("mean M_{}         {:.4f}\n", o.metric_k, sum.mean_topk_mass);
  fmt::print("({:g},{})-sparse   {:.4f} of rows\n", o.metric_eps, o.metric_k, sum.sparse_share);
  fmt::print("speed            {:.0f} tokens/s, {:.0f} s in all\n", sum.tokens_per_s, sum.seconds);
  if (!sum.sample.empty()) fmt::print("sample           {}\n", sum.sample);
}

void write_summary_json(const TrainingRun& run, const TrainSummary& sum) {
  const TrainOptions& o = run.options();
  nlohmann::json j = {{"out", o.out}, {"arch", run.config().arch}, {"preset", run.preset()},
                      {"tokenizer", run.tokenizer_spec()}, {"reg", run.reg().to_string()}, {"params", sum.params},
                      {"n_vocab", sum.n_vocab}, {"steps", sum.steps}, {"batch", o.batch},
                      {"ctx", o.ctx}, {"lr", o.lr}, {"seed", o.seed},
                      {"train_tokens", sum.train_tokens}, {"val_tokens", sum.val_tokens},
                      {"line_aligned", sum.line_aligned}, {"train_loss", sum.train_loss},
                      {"val_loss", sum.val_loss}, {"val_ppl", sum.val_ppl},
                      {"val_bits_per_byte", sum.val_bits_per_byte}, {"metric_k", o.metric_k},
                      {"metric_eps", o.metric_eps}, {"mean_topk_mass", sum.mean_topk_mass},
                      {"sparse_share", sum.sparse_share}, {"tokens_per_s", sum.tokens_per_s},
                      {"threads", torch::get_num_threads()}, {"seconds", sum.seconds},
                      {"sample", sum.sample}};
  const std::string tmp = o.json + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) fail_file(o.json, "cannot write");
    f << j.dump(2) << "\n";
  }
  fs::rename(tmp, o.json);
}

}  // namespace

TrainSummary run_training(const TrainOptions& o) {
  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  TrainingRun run(o);
  const LMConfig& cfg = run.config();
  const int64_t eval_every = o.eval_every > 0 ? o.eval_every : std::max<int64_t>(1, o.steps / 10);
  const int64_t print_every = std::max<int64_t>(1, o.steps / 20);
  LossLog losses(run.files().csv, o.resume.empty() ? -1 : run.start_step());

  TrainSummary sum;
  sum.params = run.model()->num_params();
  sum.n_vocab = cfg.n_vocab;
  sum.train_tokens = static_cast<int64_t>(run.train_stream().ids.size());
  sum.val_tokens = static_cast<int64_t>(run.val_stream().ids.size());
  sum.line_aligned = run.train_stream().line_aligned;
  run.model()->train();
  const auto t_loop = clock::now();
  int64_t tokens_done = 0;
  double last_train = NAN;
  const int64_t end_step = o.stop_at > 0 ? std::min(o.stop_at, o.steps) : o.steps;
  for (int64_t step = run.start_step(); step < end_step; ++step) {
    LogRow r = run.step(step);
    last_train = r.train_loss;
    tokens_done += o.batch * o.ctx;
    if ((step + 1) % eval_every == 0 || step + 1 == o.steps) r.val_loss = run.evaluate(nullptr).loss;
    losses.add(r);
    if ((step + 1) % print_every == 0 || step + 1 == o.steps || std::isfinite(r.val_loss))
      run.log(fmt::format("step {:>6}/{}  loss {:.4f}  reg {:.4f}  val {}  lr {:.2e}  {:.0f} tok/s\n", step + 1,
                          o.steps, r.train_loss, r.reg_loss,
                          std::isfinite(r.val_loss) ? fmt::format("{:.4f}", r.val_loss) : "-", r.lr,
                          r.tokens_per_s));
    if (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0 && step + 1 < o.steps) {
      run.save_checkpoint(step + 1);
      losses.snapshot();
    }
  }
  losses.close();
  const double loop_s = std::chrono::duration<double>(clock::now() - t_loop).count();
  run.save_checkpoint(end_step);
  sum.train_loss = last_train;
  sum.tokens_per_s = loop_s > 0 ? tokens_done / loop_s : 0;
  if (end_step < o.steps) {
    run.log(fmt::format("stopped at step {} of {}; continue with --resume {}\n", end_step, o.steps,
                        run.files().checkpoint));
    sum.steps = end_step;
    sum.stopped = true;
    return sum;
  }
  write_loss_svg(run.files().svg, losses.rows(), fmt::format("{} {} {}", cfg.arch, run.preset(), run.reg().to_string()));

  SparsityStats stats;
  const TrainingRun::Eval final_eval = run.evaluate(&stats);
  sum.val_loss = final_eval.loss;
  sum.val_ppl = std::exp(final_eval.loss);
  sum.val_bits_per_byte = final_eval.bits_per_byte;
  sum.steps = o.steps;
  sum.mean_topk_mass = stats.rows ? stats.mass_sum / stats.rows : NAN;
  sum.sparse_share = stats.rows ? double(stats.sparse) / stats.rows : NAN;

  std::vector<std::pair<std::string, std::string>> extra = {
      {"arch_preset", cfg.arch + ":" + run.preset()}, {"tokenizer", run.tokenizer_spec()},
      {"steps", std::to_string(o.steps)},              {"batch", std::to_string(o.batch)},
      {"ctx", std::to_string(o.ctx)},                  {"lr", fmt::format("{:g}", o.lr)},
      {"seed", std::to_string(o.seed)},                {"reg", run.reg().to_string()},
      {"val_ppl", fmt::format("{:.4f}", sum.val_ppl)}};
  export_gguf(run.model(), run.tokenizer(), o.out, o.f16, extra);
  if (o.sample_tokens > 0) sum.sample = run.sample();
  sum.seconds = std::chrono::duration<double>(clock::now() - t_start).count();
  print_summary(run, sum);
  if (!o.json.empty()) write_summary_json(run, sum);
  return sum;
}

}  // namespace attnsparse::train
