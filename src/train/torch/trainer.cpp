// The training loop of `attnsparse train`: data, AdamW + warmup/cosine schedule, gradient
// clipping, the condensation regulariser, evaluation, checkpoints, CSV/SVG logs, export.
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
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

}  // namespace

TrainSummary run_training(const TrainOptions& o) {
  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  // Every argument is checked before any work, so a long run does not fail at its end.
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
  torch::Device device(torch::kCPU);
  if (o.device == "cuda") {
    if (!torch::cuda::is_available())
      fail_usage("--device cuda: this libtorch has no CUDA support (Debian's libtorch is CPU-only) or no GPU is visible; use --device cpu");
    device = torch::Device(torch::kCUDA);
  } else if (o.device != "cpu") {
    fail_usage("--device '{}': expected cpu or cuda", o.device);
  }
  const RegSpec reg = RegSpec::parse(o.reg);
  for (const auto& f : o.data) if (!fs::is_regular_file(f)) fail_file(f, "no such file");
  for (const auto& f : o.val) if (!fs::is_regular_file(f)) fail_file(f, "no such file");
  const std::string ckpt_path = o.checkpoint.empty() ? o.out + ".ckpt" : o.checkpoint;
  const std::string csv_path = o.csv.empty() ? o.out + ".csv" : o.csv;
  const std::string svg_path = o.svg.empty() ? o.out + ".svg" : o.svg;
  for (const std::string& p : {o.out, ckpt_path, csv_path, svg_path, o.json}) {
    if (p.empty()) continue;
    fs::path dir = fs::absolute(p).parent_path();
    if (!fs::is_directory(dir)) fail_file(p, "the directory {} does not exist", dir.string());
  }
  if (o.threads > 0) torch::set_num_threads(o.threads);
  auto log = [&](const std::string& s) {
    if (!o.quiet) fmt::print(stderr, "{}", s), std::fflush(stderr);
  };

  // Checkpoint (resume): config, tokenizer, parameters, optimizer state, step.
  std::unique_ptr<torch::serialize::InputArchive> resume;
  std::string tok_blob;
  LMConfig cfg;
  // What the run was started with (a resumed run reports the original's).
  std::string preset = o.preset, tokenizer_spec = o.tokenizer;
  if (!o.resume.empty()) {
    if (!fs::is_regular_file(o.resume)) fail_file(o.resume, "no such checkpoint");
    resume = std::make_unique<torch::serialize::InputArchive>();
    try {
      resume->load_from(o.resume);
      torch::Tensor t;
      resume->read("tokenizer", t);
      tok_blob = tensor_bytes(t);
      resume->read("config", t);
      cfg = LMConfig::from_json(tensor_bytes(t));
      if (resume->try_read("meta", t)) {
        auto meta = nlohmann::json::parse(tensor_bytes(t));
        preset = meta.value("preset", preset);
        tokenizer_spec = meta.value("tokenizer", tokenizer_spec);
      }
    } catch (const c10::Error& e) {
      fail_file(o.resume, "not a trainer checkpoint ({})", c10_message(e));
    } catch (const nlohmann::json::exception& e) {
      fail_file(o.resume, "not a trainer checkpoint (bad config: {})", e.what());
    }
    if (cfg.n_ctx != o.ctx) fail_usage("--ctx {} differs from the checkpoint's {}", o.ctx, cfg.n_ctx);
  }
  TextTokenizer tok = resume ? TextTokenizer::deserialize(tok_blob)
                             : TextTokenizer::from_spec(o.tokenizer, o.data);
  log(fmt::format("tokenizer: {} ({} tokens)\n", tok.kind(), tok.n_vocab()));
  if (tok.bos_id() < 0) fail("--tokenizer {}: the vocabulary has no BOS token", o.tokenizer);

  // Per token: its text ends a line (window starts) and its UTF-8 length (bits per byte).
  std::vector<char> ends_line(tok.n_vocab());
  std::vector<int64_t> piece_bytes(tok.n_vocab());
  for (int32_t id = 0; id < tok.n_vocab(); ++id) {
    const std::string p = tok.engine().decode(std::span<const int32_t>(&id, 1));
    ends_line[id] = !p.empty() && p.back() == '\n';
    piece_bytes[id] = static_cast<int64_t>(p.size());
  }
  const int64_t T = o.ctx;
  TokenStream train_s = tokenize_files(tok, o.data, ends_line);
  TokenStream val_s = o.val.empty() ? split_tail(train_s, 0.05) : tokenize_files(tok, o.val, ends_line);
  choose_starts(train_s, T);
  choose_starts(val_s, T);
  if (static_cast<int64_t>(train_s.ids.size()) < T)
    fail("training data has {} tokens, fewer than --ctx {}", train_s.ids.size(), T);
  if (static_cast<int64_t>(val_s.ids.size()) < T)
    fail("validation data has {} tokens, fewer than --ctx {}", val_s.ids.size(), T);
  log(fmt::format("data: {} train tokens ({} window starts{}), {} val tokens\n", train_s.ids.size(),
                  train_s.starts.size(), train_s.line_aligned ? ", at line starts" : "",
                  val_s.ids.size()));

  if (!resume) cfg = preset_config(o.arch, o.preset, tok.n_vocab(), T);
  if (cfg.n_vocab != tok.n_vocab())
    fail_file(o.resume, "checkpoint vocabulary {} differs from its tokenizer's {}", cfg.n_vocab, tok.n_vocab());
  torch::manual_seed(o.seed);
  LM model(cfg, o.seed);
  model->to(device);
  log(fmt::format("model: {} {}: {} layers, n_embd {}, {} heads ({} kv), n_ff {}, {:.2f}M params\n",
                  cfg.arch, preset, cfg.n_layer, cfg.n_embd, cfg.n_head,
                  cfg.n_kv_head, cfg.n_ff, model->num_params() / 1e6));

  // AdamW: weight decay on matrices only.
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& [name, t] : model->gguf_params()) (t.dim() >= 2 ? decay : no_decay).push_back(t);
  auto base_opts = torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).eps(1e-8);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(base_opts).weight_decay(o.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(base_opts).weight_decay(0.0)));
  torch::optim::AdamW opt(groups, base_opts);

  int64_t start_step = 0;
  if (resume) {
    try {
      torch::NoGradGuard ng;
      for (const auto& [name, t] : model->gguf_params()) {
        torch::Tensor v;
        resume->read("param/" + name, v);
        if (!v.sizes().equals(t.sizes())) fail_file(o.resume, "parameter {} has the wrong shape", name);
        t.copy_(v);
      }
      torch::serialize::InputArchive oa;
      resume->read("optimizer", oa);
      opt.load(oa);
      torch::Tensor st;
      resume->read("step", st);
      start_step = st.item<int64_t>();
    } catch (const c10::Error& e) {
      fail_file(o.resume, "checkpoint does not match ({})", c10_message(e));
    }
    if (start_step > o.steps)
      fail_usage("--steps {}: the checkpoint is already at step {}", o.steps, start_step);
    log(fmt::format("resumed from {} at step {}\n", o.resume, start_step));
  }
  auto save_checkpoint = [&](int64_t step) {
    torch::serialize::OutputArchive ar;
    ar.write("tokenizer", bytes_tensor(tok.serialize()));
    ar.write("config", bytes_tensor(cfg.to_json()));
    ar.write("meta", bytes_tensor(nlohmann::json{{"preset", preset}, {"tokenizer", tokenizer_spec}}.dump()));
    for (const auto& [name, t] : model->gguf_params()) ar.write("param/" + name, t.detach().cpu());
    torch::serialize::OutputArchive oa;
    opt.save(oa);
    ar.write("optimizer", oa);
    ar.write("step", torch::tensor(step));
    ar.save_to(ckpt_path + ".tmp");
    fs::rename(ckpt_path + ".tmp", ckpt_path);
  };

  auto train_t = torch::tensor(train_s.ids, torch::kInt64);
  auto val_t = torch::tensor(val_s.ids, torch::kInt64);
  auto offsets = torch::arange(T, torch::kInt64).unsqueeze(0);
  auto bos_col = [&](int64_t rows) { return torch::full({rows, 1}, int64_t(tok.bos_id()), torch::kInt64); };
  // [rows, T + 1]: BOS, then T tokens of the stream from each start.
  auto windows = [&](const torch::Tensor& stream, const std::vector<int64_t>& starts) {
    auto idx = torch::tensor(starts, torch::kInt64).unsqueeze(1) + offsets;
    return torch::cat({bos_col(static_cast<int64_t>(starts.size())), stream.index({idx})}, 1).to(device);
  };
  // Batches are a pure function of (seed, step), so a resumed run sees the same data.
  auto batch_at = [&](int64_t step) {
    std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(step));
    std::uniform_int_distribution<size_t> pick(0, train_s.starts.size() - 1);
    std::vector<int64_t> starts(o.batch);
    for (auto& s : starts) s = train_s.starts[pick(rng)];
    return windows(train_t, starts);
  };
  // Validation: fixed windows spread evenly over the held-out starts.
  std::vector<int64_t> val_starts;
  {
    const int64_t n = std::min<int64_t>(o.eval_batches * o.batch, static_cast<int64_t>(val_s.starts.size()));
    for (int64_t w = 0; w < n; ++w)
      val_starts.push_back(val_s.starts[(w * val_s.starts.size()) / n]);
  }
  auto target_bytes = [&](const torch::Tensor& targets) {
    int64_t b = 0;
    auto c = targets.cpu().contiguous();
    const int64_t* p = c.data_ptr<int64_t>();
    for (int64_t i = 0; i < c.numel(); ++i) b += piece_bytes[p[i]];
    return b;
  };
  struct Eval {
    double loss = 0;            // nats per token
    double bits_per_byte = 0;
  };
  auto evaluate = [&](SparsityStats* stats) {
    torch::NoGradGuard ng;
    model->eval();
    double nats = 0;
    int64_t tokens = 0, bytes = 0;
    for (size_t w0 = 0; w0 < val_starts.size(); w0 += o.batch) {
      std::vector<int64_t> starts(val_starts.begin() + w0,
                                  val_starts.begin() + std::min(val_starts.size(), w0 + o.batch));
      auto b = windows(val_t, starts);
      std::vector<torch::Tensor> probs;
      auto logits = model->forward(b.slice(1, 0, T), stats ? &probs : nullptr);
      auto targets = b.slice(1, 1, T + 1);
      auto loss = torch::nn::functional::cross_entropy(
          logits.reshape({-1, cfg.n_vocab}), targets.reshape({-1}),
          torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
      nats += loss.item<double>();
      tokens += targets.numel();
      bytes += target_bytes(targets);
      if (stats) stats->add(probs, o.metric_k, o.metric_eps);
    }
    model->train();
    return Eval{nats / tokens, bytes > 0 ? nats / std::log(2.0) / bytes : NAN};
  };

  const int64_t warmup = o.warmup >= 0 ? o.warmup : std::min<int64_t>(100, o.steps / 10);
  auto lr_at = [&](int64_t step) {  // step is 0-based
    if (step < warmup) return o.lr * double(step + 1) / double(warmup);
    double prog = double(step - warmup) / double(std::max<int64_t>(1, o.steps - warmup));
    double cosv = 0.5 * (1 + std::cos(M_PI * std::min(1.0, prog)));
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * cosv);
  };
  const int64_t eval_every = o.eval_every > 0 ? o.eval_every : std::max<int64_t>(1, o.steps / 10);
  const int64_t print_every = std::max<int64_t>(1, o.steps / 20);

  std::vector<LogRow> rows;
  if (resume) rows = read_log_csv(csv_path, start_step);  // keep the earlier part of the curve
  const std::string csv_tmp = csv_path + ".tmp";
  std::ofstream csv(csv_tmp);
  if (!csv) fail_file(csv_path, "cannot write");
  csv << log_csv_header();
  for (const auto& r : rows) csv << log_csv_row(r);

  TrainSummary sum;
  sum.params = model->num_params();
  sum.n_vocab = cfg.n_vocab;
  sum.train_tokens = static_cast<int64_t>(train_s.ids.size());
  sum.val_tokens = static_cast<int64_t>(val_s.ids.size());
  sum.line_aligned = train_s.line_aligned;
  model->train();
  auto t_loop = clock::now();
  int64_t tokens_done = 0;
  double last_train = NAN;
  const int64_t end_step = o.stop_at > 0 ? std::min(o.stop_at, o.steps) : o.steps;
  for (int64_t step = start_step; step < end_step; ++step) {
    auto t0 = clock::now();
    const double lr = lr_at(step);
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    auto b = batch_at(step);
    std::vector<torch::Tensor> probs;
    auto logits = model->forward(b.slice(1, 0, T), reg.active() ? &probs : nullptr);
    auto lm_loss = torch::nn::functional::cross_entropy(logits.reshape({-1, cfg.n_vocab}),
                                                        b.slice(1, 1, T + 1).reshape({-1}));
    auto reg_loss = condensation_loss(probs, reg);
    auto loss = lm_loss + reg_loss;
    opt.zero_grad();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), o.grad_clip);
    opt.step();
    last_train = lm_loss.item<double>();
    if (!std::isfinite(last_train) || !std::isfinite(reg_loss.item<double>()))
      fail("training diverged at step {} (loss {}); lower --lr", step + 1, last_train);
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    tokens_done += o.batch * T;
    LogRow r{step + 1, last_train, reg_loss.item<double>(), NAN, lr, double(o.batch * T) / dt};
    if ((step + 1) % eval_every == 0 || step + 1 == o.steps) r.val_loss = evaluate(nullptr).loss;
    rows.push_back(r);
    csv << log_csv_row(r);
    if ((step + 1) % print_every == 0 || step + 1 == o.steps || std::isfinite(r.val_loss))
      log(fmt::format("step {:>6}/{}  loss {:.4f}  reg {:.4f}  val {}  lr {:.2e}  {:.0f} tok/s\n", step + 1,
                      o.steps, r.train_loss, r.reg_loss,
                      std::isfinite(r.val_loss) ? fmt::format("{:.4f}", r.val_loss) : "-", lr,
                      r.tokens_per_s));
    if (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0 && step + 1 < o.steps) {
      save_checkpoint(step + 1);
      csv.flush();
      fs::copy_file(csv_tmp, csv_path, fs::copy_options::overwrite_existing);
    }
  }
  csv.close();
  if (!csv) fail_file(csv_path, "write failed");
  fs::rename(csv_tmp, csv_path);
  const double loop_s = std::chrono::duration<double>(clock::now() - t_loop).count();
  save_checkpoint(end_step);
  if (end_step < o.steps) {
    log(fmt::format("stopped at step {} of {}; continue with --resume {}\n", end_step, o.steps, ckpt_path));
    sum.steps = end_step;
    sum.stopped = true;
    sum.train_loss = last_train;
    sum.tokens_per_s = loop_s > 0 ? tokens_done / loop_s : 0;
    return sum;
  }
  write_loss_svg(svg_path, rows, fmt::format("{} {} {}", cfg.arch, preset, reg.to_string()));

  SparsityStats stats;
  const Eval final_eval = evaluate(&stats);
  sum.val_loss = final_eval.loss;
  sum.val_ppl = std::exp(final_eval.loss);
  sum.val_bits_per_byte = final_eval.bits_per_byte;
  sum.train_loss = last_train;
  sum.steps = o.steps;
  sum.mean_topk_mass = stats.rows ? stats.mass_sum / stats.rows : NAN;
  sum.sparse_share = stats.rows ? double(stats.sparse) / stats.rows : NAN;
  sum.tokens_per_s = loop_s > 0 ? tokens_done / loop_s : 0;

  std::vector<std::pair<std::string, std::string>> extra = {
      {"arch_preset", cfg.arch + ":" + preset}, {"tokenizer", tokenizer_spec},
      {"steps", std::to_string(o.steps)},         {"batch", std::to_string(o.batch)},
      {"ctx", std::to_string(o.ctx)},             {"lr", fmt::format("{:g}", o.lr)},
      {"seed", std::to_string(o.seed)},           {"reg", reg.to_string()},
      {"val_ppl", fmt::format("{:.4f}", sum.val_ppl)}};
  export_gguf(model, tok, o.out, o.f16, extra);

  if (o.sample_tokens > 0) {
    torch::NoGradGuard ng;
    model->eval();
    auto gen = at::detail::createCPUGenerator(o.seed);
    std::vector<int64_t> ctx = {tok.bos_id()};
    for (int32_t id : tok.encode(o.prompt)) ctx.push_back(id);
    std::vector<int32_t> out_ids;
    for (int64_t i = 0; i < o.sample_tokens; ++i) {
      const int64_t from = std::max<int64_t>(0, static_cast<int64_t>(ctx.size()) - T);
      auto x = torch::tensor(std::vector<int64_t>(ctx.begin() + from, ctx.end()), torch::kInt64)
                   .unsqueeze(0).to(device);
      auto logits = model->forward(x).select(1, -1).squeeze(0).cpu() / 0.8;
      auto next = torch::multinomial(torch::softmax(logits, -1), 1, false, gen).item<int64_t>();
      if (next == tok.eos_id()) break;
      ctx.push_back(next);
      out_ids.push_back(static_cast<int32_t>(next));
    }
    sum.sample = o.prompt + tok.decode(out_ids);
  }
  sum.seconds = std::chrono::duration<double>(clock::now() - t_start).count();
  fmt::print("model            {} ({} {}, {:.2f}M params, vocab {})\n", o.out, cfg.arch, preset,
             sum.params / 1e6, sum.n_vocab);
  fmt::print("regulariser      {}\n", reg.to_string());
  fmt::print("steps            {} x {} sequences x {} tokens\n", o.steps, o.batch, T);
  fmt::print("train loss       {}\n", std::isfinite(sum.train_loss) ? fmt::format("{:.4f}", sum.train_loss) : "- (no step run)");
  fmt::print("val loss         {:.4f} nats/token  (ppl {:.3f}, {:.4f} bits/byte)\n", sum.val_loss,
             sum.val_ppl, sum.val_bits_per_byte);
  fmt::print("mean M_{}         {:.4f}\n", o.metric_k, sum.mean_topk_mass);
  fmt::print("({:g},{})-sparse   {:.4f} of rows\n", o.metric_eps, o.metric_k, sum.sparse_share);
  fmt::print("speed            {:.0f} tokens/s, {:.0f} s in all\n", sum.tokens_per_s, sum.seconds);
  if (!sum.sample.empty()) fmt::print("sample           {}\n", sum.sample);
  if (!o.json.empty()) {
    nlohmann::json j = {{"out", o.out}, {"arch", cfg.arch}, {"preset", preset},
                        {"tokenizer", tokenizer_spec}, {"reg", reg.to_string()}, {"params", sum.params},
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
  return sum;
}

}  // namespace attnsparse::train
