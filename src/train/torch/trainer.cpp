// The training loop of `attnsparse train`: data, AdamW + warmup/cosine schedule, gradient
// clipping, the condensation regulariser, evaluation, checkpoints, CSV/SVG logs, export.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "train/text_tokenizer.h"
#include "train/torch/lm.h"
#include "train/trainer.h"

namespace attnsparse::train {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_file(path, "cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  if (s.empty()) fail_file(path, "empty file");
  return s;
}

std::vector<int64_t> tokenize_files(const TextTokenizer& tok, const std::vector<std::string>& files) {
  std::vector<int64_t> out;
  for (const auto& f : files) {
    auto ids = tok.encode(read_text(f));
    out.push_back(tok.bos_id());
    out.insert(out.end(), ids.begin(), ids.end());
  }
  return out;
}

struct LogRow {
  int64_t step;
  double train_loss, reg_loss, val_loss, lr, tps;
};

void write_svg(const std::string& path, const std::vector<LogRow>& rows) {
  if (rows.empty()) return;
  const double W = 720, H = 420, L = 60, R = 20, Tm = 30, Bm = 45;
  double xmax = std::max<double>(1, rows.back().step), ymin = 1e30, ymax = -1e30;
  for (const auto& r : rows) {
    for (double v : {r.train_loss, r.val_loss})
      if (std::isfinite(v)) ymin = std::min(ymin, v), ymax = std::max(ymax, v);
  }
  if (!(ymax > ymin)) ymax = ymin + 1;
  auto X = [&](double s) { return L + (W - L - R) * s / xmax; };
  auto Y = [&](double v) { return Tm + (H - Tm - Bm) * (1 - (v - ymin) / (ymax - ymin)); };
  std::string s = fmt::format(
      "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-family='sans-serif' "
      "font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n",
      W, H);
  s += fmt::format("<text x='{}' y='18'>loss (nats/token) vs step</text>\n", L);
  for (int i = 0; i <= 5; ++i) {
    double v = ymin + (ymax - ymin) * i / 5, y = Y(v);
    s += fmt::format("<line x1='{}' x2='{}' y1='{:.1f}' y2='{:.1f}' stroke='#ddd'/>", L, W - R, y, y);
    s += fmt::format("<text x='5' y='{:.1f}'>{:.3f}</text>\n", y + 4, v);
    double st = xmax * i / 5;
    s += fmt::format("<text x='{:.1f}' y='{}' text-anchor='middle'>{:.0f}</text>\n", X(st), H - Bm + 18, st);
  }
  s += fmt::format("<text x='{}' y='{}' text-anchor='middle'>step</text>\n", (L + W - R) / 2, H - 8);
  auto poly = [&](auto get, const char* color) {
    std::string pts;
    for (const auto& r : rows) {
      double v = get(r);
      if (std::isfinite(v)) pts += fmt::format("{:.1f},{:.1f} ", X(r.step), Y(v));
    }
    return fmt::format("<polyline fill='none' stroke='{}' stroke-width='1.5' points='{}'/>\n", color, pts);
  };
  s += poly([](const LogRow& r) { return r.train_loss; }, "#1f77b4");
  s += poly([](const LogRow& r) { return r.val_loss; }, "#d62728");
  s += fmt::format("<text x='{}' y='{}' fill='#1f77b4'>train</text>", W - R - 90, Tm + 14);
  s += fmt::format("<text x='{}' y='{}' fill='#d62728'>val</text>\n</svg>\n", W - R - 40, Tm + 14);
  std::ofstream(path) << s;
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

}  // namespace

TrainSummary run_training(const TrainOptions& o) {
  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  if (o.out.empty()) fail_usage("--out is required");
  if (o.data.empty()) fail_usage("--data is required");
  if (o.steps < 1 || o.batch < 1) fail_usage("--steps and --batch must be >= 1");
  if (!(o.lr > 0) || !std::isfinite(o.lr)) fail_usage("--lr must be > 0");
  if (o.threads > 0) torch::set_num_threads(o.threads);
  torch::Device device(torch::kCPU);
  if (o.device == "cuda") {
    if (!torch::cuda::is_available())
      fail_usage("--device cuda: this libtorch has no CUDA support (Debian's libtorch is CPU-only) or no GPU is visible");
    device = torch::Device(torch::kCUDA);
  } else if (o.device != "cpu") {
    fail_usage("--device '{}': expected cpu or cuda", o.device);
  }
  RegSpec reg = RegSpec::parse(o.reg);
  for (const auto& f : o.data) if (!std::filesystem::is_regular_file(f)) fail_file(f, "no such file");
  for (const auto& f : o.val) if (!std::filesystem::is_regular_file(f)) fail_file(f, "no such file");
  auto log = [&](const std::string& s) { if (!o.quiet) fmt::print("{}", s), std::fflush(stdout); };

  // Checkpoint (resume): config, tokenizer, parameters, optimizer state, step.
  std::unique_ptr<torch::serialize::InputArchive> resume;
  std::string tok_blob;
  LMConfig cfg;
  if (!o.resume.empty()) {
    if (!std::filesystem::is_regular_file(o.resume)) fail_file(o.resume, "no such checkpoint");
    resume = std::make_unique<torch::serialize::InputArchive>();
    try {
      resume->load_from(o.resume);
      torch::Tensor t;
      resume->read("tokenizer", t);
      tok_blob = tensor_bytes(t);
      resume->read("config", t);
      cfg = LMConfig::from_json(tensor_bytes(t));
    } catch (const c10::Error& e) {
      fail_file(o.resume, "not a trainer checkpoint ({})", std::string(e.what_without_backtrace()).substr(0, 200));
    }
  }
  TextTokenizer tok = resume ? TextTokenizer::deserialize(tok_blob)
                             : TextTokenizer::from_spec(o.tokenizer, o.data, o.out + ".spm");
  log(fmt::format("tokenizer: {} ({} tokens)\n", tok.kind(), tok.n_vocab()));
  std::vector<int64_t> train_ids = tokenize_files(tok, o.data), val_ids;
  if (!o.val.empty()) {
    val_ids = tokenize_files(tok, o.val);
  } else {
    size_t cut = train_ids.size() - train_ids.size() / 20;
    val_ids.assign(train_ids.begin() + cut, train_ids.end());
    train_ids.resize(cut);
  }
  const int64_t T = o.ctx;
  if (static_cast<int64_t>(train_ids.size()) < T + 2)
    fail("training data has {} tokens, fewer than --ctx {} + 2", train_ids.size(), T);
  if (static_cast<int64_t>(val_ids.size()) < T + 2)
    fail("validation data has {} tokens, fewer than --ctx {} + 2", val_ids.size(), T);
  log(fmt::format("data: {} train tokens, {} val tokens\n", train_ids.size(), val_ids.size()));

  if (!resume) cfg = preset_config(o.arch, o.preset, tok.n_vocab(), T);
  if (cfg.n_ctx != T) fail_usage("--ctx {} differs from the checkpoint's {}", T, cfg.n_ctx);
  torch::manual_seed(o.seed);
  LM model(cfg, o.seed);
  model->to(device);
  log(fmt::format("model: {} {} — {} layers, n_embd {}, {} heads ({} kv), n_ff {}, {:.2f}M params\n",
                  cfg.arch, o.preset, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.n_ff,
                  model->num_params() / 1e6));

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
      for (const auto& [name, t] : model->gguf_params()) {
        torch::Tensor v;
        resume->read("param/" + name, v);
        torch::NoGradGuard ng;
        t.copy_(v);
      }
      torch::serialize::InputArchive oa;
      resume->read("optimizer", oa);
      opt.load(oa);
      torch::Tensor st;
      resume->read("step", st);
      start_step = st.item<int64_t>();
    } catch (const c10::Error& e) {
      fail_file(o.resume, "checkpoint does not match ({})", std::string(e.what_without_backtrace()).substr(0, 200));
    }
    log(fmt::format("resumed from {} at step {}\n", o.resume, start_step));
  }
  auto save_checkpoint = [&](int64_t step) {
    torch::serialize::OutputArchive ar;
    ar.write("tokenizer", bytes_tensor(tok.serialize()));
    ar.write("config", bytes_tensor(cfg.to_json()));
    for (const auto& [name, t] : model->gguf_params()) ar.write("param/" + name, t.detach().cpu());
    torch::serialize::OutputArchive oa;
    opt.save(oa);
    ar.write("optimizer", oa);
    ar.write("step", torch::tensor(step));
    std::string path = o.out + ".ckpt";
    ar.save_to(path + ".tmp");
    std::filesystem::rename(path + ".tmp", path);
  };

  auto train_t = torch::tensor(train_ids, torch::kInt64);
  auto val_t = torch::tensor(val_ids, torch::kInt64);
  auto arange = torch::arange(T + 1, torch::kInt64);
  // Batches are a pure function of (seed, step), so a resumed run sees the same data.
  auto batch_at = [&](int64_t step) {
    std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(step));
    std::uniform_int_distribution<int64_t> pick(0, train_t.size(0) - T - 1);
    std::vector<int64_t> starts(o.batch);
    for (auto& s : starts) s = pick(rng);
    auto idx = torch::tensor(starts, torch::kInt64).unsqueeze(1) + arange.unsqueeze(0);
    return train_t.index({idx}).to(device);
  };
  // Validation: fixed windows spread over the held-out tokens.
  const int64_t n_val_win = std::max<int64_t>(1, std::min<int64_t>(o.eval_batches * o.batch,
                                                                   (val_t.size(0) - 1) / T));
  const int64_t val_stride = (val_t.size(0) - T - 1) / std::max<int64_t>(1, n_val_win - 1);
  auto evaluate = [&](SparsityStats* stats) {
    torch::NoGradGuard ng;
    model->eval();
    double sum = 0;
    int64_t n = 0;
    for (int64_t w0 = 0; w0 < n_val_win; w0 += o.batch) {
      std::vector<int64_t> starts;
      for (int64_t w = w0; w < std::min(n_val_win, w0 + o.batch); ++w)
        starts.push_back(std::min(w * val_stride, val_t.size(0) - T - 1));
      auto idx = torch::tensor(starts, torch::kInt64).unsqueeze(1) + arange.unsqueeze(0);
      auto b = val_t.index({idx}).to(device);
      std::vector<torch::Tensor> probs;
      auto logits = model->forward(b.slice(1, 0, T), stats ? &probs : nullptr);
      auto loss = torch::nn::functional::cross_entropy(
          logits.reshape({-1, cfg.n_vocab}), b.slice(1, 1, T + 1).reshape({-1}),
          torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
      sum += loss.item<double>();
      n += b.size(0) * T;
      if (stats) stats->add(probs, o.metric_k, o.metric_eps);
    }
    model->train();
    return sum / n;
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

  std::string csv_path = o.csv.empty() ? o.out + ".csv" : o.csv;
  std::string svg_path = o.svg.empty() ? o.out + ".svg" : o.svg;
  std::vector<LogRow> rows;
  if (resume && std::filesystem::is_regular_file(csv_path)) {  // keep the earlier part of the curve
    std::ifstream f(csv_path);
    std::string line;
    std::getline(f, line);
    while (std::getline(f, line)) {
      LogRow r{};
      std::vector<double> v;
      std::stringstream ls(line);
      std::string cell;
      while (std::getline(ls, cell, ',')) v.push_back(cell.empty() ? NAN : std::atof(cell.c_str()));
      if (v.size() < 6 || v[0] > start_step) continue;
      rows.push_back({int64_t(v[0]), v[1], v[2], v[3], v[4], v[5]});
    }
  }
  std::ofstream csv(csv_path);
  if (!csv) fail_file(csv_path, "cannot write");
  auto csv_num = [](double v) { return std::isfinite(v) ? fmt::format("{:.6g}", v) : std::string(); };
  auto csv_row = [&](const LogRow& r) {
    csv << r.step << ',' << csv_num(r.train_loss) << ',' << csv_num(r.reg_loss) << ','
        << csv_num(r.val_loss) << ',' << csv_num(r.lr) << ',' << csv_num(r.tps) << '\n';
  };
  csv << "step,train_loss,reg_loss,val_loss,lr,tokens_per_s\n";
  for (const auto& r : rows) csv_row(r);

  TrainSummary sum;
  sum.params = model->num_params();
  model->train();
  auto t_loop = clock::now();
  int64_t tokens_done = 0;
  double last_train = NAN, last_val = NAN;
  for (int64_t step = start_step; step < o.steps; ++step) {
    auto t0 = clock::now();
    double lr = lr_at(step);
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
    if (!std::isfinite(last_train)) fail("training diverged at step {} (loss {}); lower --lr", step + 1, last_train);
    double dt = std::chrono::duration<double>(clock::now() - t0).count();
    tokens_done += o.batch * T;
    LogRow r{step + 1, last_train, reg_loss.item<double>(), NAN, lr, double(o.batch * T) / dt};
    if ((step + 1) % eval_every == 0 || step + 1 == o.steps) r.val_loss = last_val = evaluate(nullptr);
    rows.push_back(r);
    csv_row(r);
    if ((step + 1) % print_every == 0 || step + 1 == o.steps || std::isfinite(r.val_loss))
      log(fmt::format("step {:>6}/{}  loss {:.4f}  reg {:.4f}  val {}  lr {:.2e}  {:.0f} tok/s\n", step + 1,
                      o.steps, r.train_loss, r.reg_loss,
                      std::isfinite(r.val_loss) ? fmt::format("{:.4f}", r.val_loss) : "-", lr, r.tps));
    if (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0 && step + 1 < o.steps) {
      csv.flush();
      save_checkpoint(step + 1);
    }
  }
  csv.close();
  double loop_s = std::chrono::duration<double>(clock::now() - t_loop).count();
  save_checkpoint(std::max(o.steps, start_step));
  write_svg(svg_path, rows);

  SparsityStats stats;
  sum.val_loss = evaluate(&stats);
  sum.val_ppl = std::exp(sum.val_loss);
  sum.train_loss = last_train;
  sum.steps = o.steps;
  sum.mean_topk_mass = stats.rows ? stats.mass_sum / stats.rows : NAN;
  sum.sparse_share = stats.rows ? double(stats.sparse) / stats.rows : NAN;
  sum.tokens_per_s = loop_s > 0 ? tokens_done / loop_s : 0;

  std::vector<std::pair<std::string, std::string>> extra = {
      {"arch_preset", o.arch + ":" + o.preset}, {"tokenizer", o.tokenizer},
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
      int64_t from = std::max<int64_t>(0, static_cast<int64_t>(ctx.size()) - T);
      auto x = torch::tensor(std::vector<int64_t>(ctx.begin() + from, ctx.end()), torch::kInt64)
                   .unsqueeze(0).to(device);
      auto logits = model->forward(x).select(1, -1).squeeze(0).cpu() / 0.8;
      auto next = torch::multinomial(torch::softmax(logits, -1), 1, false, gen).item<int64_t>();
      if (next == tok.eos_id()) break;
      ctx.push_back(next);
      out_ids.push_back(static_cast<int32_t>(next));
    }
    sum.sample = o.prompt + tok.decode(out_ids);
    log(fmt::format("sample: {}\n", sum.sample));
  }
  sum.seconds = std::chrono::duration<double>(clock::now() - t_start).count();
  log(fmt::format("done: val loss {:.4f}  val ppl {:.3f}  mean M_{} {:.4f}  ({:g},{})-sparse rows {:.4f}  "
                  "{:.0f} tok/s  {:.0f} s  -> {}\n",
                  sum.val_loss, sum.val_ppl, o.metric_k, sum.mean_topk_mass, o.metric_eps, o.metric_k,
                  sum.sparse_share, sum.tokens_per_s, sum.seconds, o.out));
  if (!o.json.empty()) {
    nlohmann::json j = {{"out", o.out}, {"arch", o.arch}, {"preset", o.preset},
                        {"tokenizer", o.tokenizer}, {"reg", reg.to_string()}, {"params", sum.params},
                        {"steps", sum.steps}, {"batch", o.batch}, {"ctx", o.ctx}, {"seed", o.seed},
                        {"train_loss", sum.train_loss}, {"val_loss", sum.val_loss},
                        {"val_ppl", sum.val_ppl}, {"metric_k", o.metric_k}, {"metric_eps", o.metric_eps},
                        {"mean_topk_mass", sum.mean_topk_mass}, {"sparse_share", sum.sparse_share},
                        {"tokens_per_s", sum.tokens_per_s}, {"seconds", sum.seconds},
                        {"sample", sum.sample}};
    std::ofstream(o.json) << j.dump(2) << "\n";
  }
  return sum;
}

}  // namespace attnsparse::train
