#include "theory/fit_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <span>

#include "analysis/layer_kind.h"
#include "analysis/row_metrics.h"
#include "core/error.h"
#include "io/corpus.h"
#include "model/documents.h"
#include "model/model.h"
#include "policies/oracle.h"
#include "policies/policy_map.h"
#include "theory/normal.h"

namespace attnsparse::theory {

const char* fit_rule_name(int rule) {
  switch (rule) {
    case kTopkDynamic: return "topk-dyn";
    case kTopkFixed: return "topk-fixed";
    case kWindowDynamic: return "window-dyn";
    case kWindowFixed: return "window-fixed";
  }
  return "?";
}

void validate(const FitOptions& o) {
  if (o.data.empty()) fail_usage("--data: give at least one file or directory");
  if (o.eps.empty()) fail_usage("--eps: give at least one value");
  for (double e : o.eps)
    if (!(e > 0 && e < 1)) fail_usage("--eps {} is outside (0, 1)", e);
  // Both bounded before 4 x --min-n is formed, so the product cannot overflow.
  if (o.max_tokens < 8 || o.max_tokens > kFitMaxTokens)
    fail_usage("--max-tokens {} is outside [8, {}]", o.max_tokens, kFitMaxTokens);
  if (o.min_n < 2 || o.min_n > o.max_tokens / 4)
    fail_usage("--min-n {} is outside [2, {}] (--max-tokens / 4, so that rows span three lengths)", o.min_n,
               o.max_tokens / 4);
  if (o.max_docs < 0) fail_usage("--docs {} must be >= 0", o.max_docs);
  if (o.rows_per_bin < 0 || o.rows_per_bin > kFitMaxTokens)
    fail_usage("--rows-per-bin {} is outside [0, {}] (0 = every row)", o.rows_per_bin, kFitMaxTokens);
  if (o.bootstrap < 0 || o.bootstrap > 100000) fail_usage("--bootstrap {} is outside [0, 100000]", o.bootstrap);
  if (!(o.level > 0 && o.level < 1)) fail_usage("--level {} is outside (0, 1)", o.level);
}

std::string fit_verdict(const PowerFit& f, size_t bins, const FitOptions& o) {
  if (!std::isfinite(f.C) || bins < size_t(o.min_bins)) return "too few lengths";
  if (f.C_hi < o.collapsed_below) return "collapsed (O(1) entries)";
  if (f.C > o.dense_above) return "dense (C ~ 1)";
  if (f.r2 < o.min_r2) return "no clean power law";
  if (f.C_lo > 0 && f.C_hi < 1) return "n^C-sparse";
  return "no clean power law";
}

namespace {

// One document's tokens and the query positions sampled from it.
struct DocPlan {
  std::vector<int32_t> tokens;
  std::vector<int64_t> pos;    // sampled query positions, increasing
  std::vector<int> bin;        // their length bin
  std::vector<int> sample_of;  // position -> sample index, or -1
};

DocPlan plan_document(std::vector<int32_t> tokens, const FitOptions& o) {
  DocPlan p;
  p.tokens = std::move(tokens);
  const int64_t T = int64_t(p.tokens.size());
  p.sample_of.assign(T, -1);
  for (int b = 0;; ++b) {
    const int64_t lo = o.min_n << b;
    if (lo > T) break;
    const int64_t hi = std::min(2 * lo, T + 1);  // row lengths n in [lo, hi)
    const int64_t count = hi - lo;
    const int64_t R = o.rows_per_bin == 0 ? count : std::min<int64_t>(count, o.rows_per_bin);
    for (int64_t i = 0; i < R; ++i) {
      const int64_t n = lo + (2 * i + 1) * count / (2 * R);  // evenly spaced, distinct
      p.sample_of[n - 1] = int(p.pos.size());
      p.pos.push_back(n - 1);
      p.bin.push_back(b);
    }
  }
  return p;
}

// Per-row results of one document: [layer][head][sample] then eps or rule.
struct DocRows {
  std::vector<double> k;                // ... x E
  std::vector<double> err, rel, tau;    // ... x kFitRules
};

struct Dims {
  int L = 0, H = 0, KVH = 0, D = 0;
  size_t E = 0;
};

// The budgets of the second pass for one head, as the policies the oracle runs
// (policies/oracle.h): the measurement code is eval-policy's.
struct HeadBudget {
  double alpha = NAN, C = NAN;
  int64_t k_fixed = 0;
  bool usable() const { return std::isfinite(C) && std::isfinite(alpha); }
  policies::Policy rule(int r) const {
    policies::Policy p;
    if (!usable()) return p;  // dense (its errors are not reported)
    const int64_t sinks = std::min<int64_t>(4, k_fixed / 2);
    switch (r) {
      case kTopkDynamic: p.kind = policies::Kind::DynTopK, p.alpha = alpha, p.exponent = C; break;
      case kTopkFixed: p.kind = policies::Kind::TopK, p.k = k_fixed; break;
      case kWindowDynamic: p.kind = policies::Kind::DynWindow, p.alpha = alpha, p.exponent = C, p.sink = 4; break;
      case kWindowFixed: p.kind = policies::Kind::SinkWindow, p.sink = sinks, p.window = k_fixed - sinks; break;
      default: break;
    }
    return p;
  }
  int64_t dynamic(int64_t n) const { return rule(kTopkDynamic).keep_count(n); }
};

// Pass 1: k_eps of the sampled rows, i.e. W_{1-eps} of analysis' row metrics
// (analysis::widths with the targets (1 - eps) * the row's mass). A row holds the keys
// the layer lets the query see: t + 1, or min(t + 1, W) under a native window.
class KEpsObserver final : public ops::RowObserver {
 public:
  int layer = 0;
  const Dims* dims = nullptr;
  const FitOptions* opt = nullptr;
  const DocPlan* doc = nullptr;
  DocRows* out = nullptr;
  const std::vector<size_t>* by_level = nullptr;  // eps indices by increasing 1 - eps

  void on_row(int head, int64_t query_pos, const float* probs, const int32_t*, int64_t n) override {
    if (query_pos < 0 || query_pos >= int64_t(doc->sample_of.size())) return;
    const int s = doc->sample_of[query_pos];
    if (s < 0 || n < 1) return;
    const size_t row = (size_t(layer) * dims->H + head) * doc->pos.size() + s;
    double total = 0;
    for (int64_t j = 0; j < n; ++j) total += probs[j];
    thread_local std::vector<double> levels;
    thread_local std::vector<int32_t> k;
    thread_local std::vector<float> scratch;
    levels.resize(dims->E);
    k.resize(dims->E);
    for (size_t i = 0; i < dims->E; ++i) levels[i] = (1.0 - opt->eps[(*by_level)[i]]) * total;
    analysis::widths(probs, n, levels.data(), int(dims->E), k.data(), scratch);
    for (size_t i = 0; i < dims->E; ++i) out->k[row * dims->E + (*by_level)[i]] = double(k[i]);
  }
};

class KEpsHooks final : public AttentionHooks {
 public:
  explicit KEpsHooks(std::vector<KEpsObserver>& layers) : layers_(layers) {}
  const ops::KeySet* plan(int, const ops::AttentionShape&, const ops::AttentionArgs&) override {
    return nullptr;  // dense attention
  }
  ops::RowObserver* observer(int layer) override { return &layers_[layer]; }

 private:
  std::vector<KEpsObserver>& layers_;
};

// Bin means of one head at one eps, with optional resampling weights.
struct BinData {
  // rows[b]: (doc, n, k) of every sampled row in bin b.
  struct Row {
    int doc;
    double n, k;
  };
  std::vector<std::vector<Row>> rows;
};

// Fit ln(mean k) on ln(mean n) over non-empty bins; doc_weight (multiplicities) or
// row resampling via `pick` (nullptr: all rows once).
LineFit fit_bins(const BinData& bd, const std::vector<double>* doc_weight, std::mt19937_64* rng, size_t* used) {
  std::vector<double> x, y;
  for (const auto& rows : bd.rows) {
    if (rows.empty()) continue;
    double sn = 0, sk = 0, sw = 0;
    if (rng && !doc_weight) {
      std::uniform_int_distribution<size_t> pick(0, rows.size() - 1);
      for (size_t i = 0; i < rows.size(); ++i) {
        const auto& r = rows[pick(*rng)];
        sn += r.n, sk += r.k, sw += 1;
      }
    } else {
      for (const auto& r : rows) {
        const double wt = doc_weight ? (*doc_weight)[r.doc] : 1.0;
        sn += wt * r.n, sk += wt * r.k, sw += wt;
      }
    }
    if (sw <= 0 || sk <= 0) continue;
    x.push_back(std::log(sn / sw));
    y.push_back(std::log(sk / sw));
  }
  if (used) *used = x.size();
  if (x.size() < 2) return {NAN, NAN, NAN};
  return fit_line(x, y);
}

PowerFit fit_head(const BinData& bd, int docs, const FitOptions& o, uint64_t seed, bool by_docs, size_t* bins) {
  PowerFit pf;
  pf.level = o.level;
  const LineFit base = fit_bins(bd, nullptr, nullptr, bins);
  pf.C = base.slope;
  pf.log_A = base.intercept;
  pf.r2 = base.r2;
  pf.C_lo = pf.C_hi = pf.C;
  if (!std::isfinite(pf.C) || o.bootstrap == 0) return pf;
  std::mt19937_64 rng(seed);
  std::vector<double> slopes, weight(docs);
  std::uniform_int_distribution<int> pick_doc(0, docs - 1);
  for (int b = 0; b < o.bootstrap; ++b) {
    LineFit f;
    if (by_docs) {
      std::fill(weight.begin(), weight.end(), 0.0);
      for (int i = 0; i < docs; ++i) weight[pick_doc(rng)] += 1;
      f = fit_bins(bd, &weight, &rng, nullptr);
    } else {
      f = fit_bins(bd, nullptr, &rng, nullptr);
    }
    if (std::isfinite(f.slope)) slopes.push_back(f.slope);
  }
  if (slopes.empty()) return pf;
  std::sort(slopes.begin(), slopes.end());
  auto q = [&](double p) {
    const double pos = p * double(slopes.size() - 1);
    const size_t i = size_t(pos);
    const double fr = pos - double(i);
    return i + 1 < slopes.size() ? slopes[i] * (1 - fr) + slopes[i + 1] * fr : slopes[i];
  };
  pf.C_lo = q((1 - o.level) / 2);
  pf.C_hi = q(1 - (1 - o.level) / 2);
  return pf;
}


// What one fit carries from step to step: the model, its sampled documents, their
// per-row results and the heads' budgets. The steps below fill it in order:
// open_model, plan_documents, forward_pass(1), fit_heads, forward_pass(2) with
// oracle_hooks, head_errors.
struct FitRun {
  explicit FitRun(const FitOptions& opt) : o(opt) {}
  const FitOptions& o;
  std::unique_ptr<Model> model;
  Dims dims;
  int64_t window = 0;                       // tokens per document
  std::vector<analysis::LayerKind> kinds;   // per layer (native windows)
  std::vector<size_t> by_level;             // eps indices by increasing 1 - eps
  std::vector<DocPlan> docs;
  std::vector<DocRows> rows;                // per document
  std::vector<HeadBudget> budgets;          // [layer * H + head]
  int n_bins = 0;
  int ranks = 1, rank = 0;
  int current = -1;  // the document the model runs now

  int n_docs() const { return int(docs.size()); }
  void say(const std::string& s) const {
    if (o.progress) o.progress(s);
  }
  // Native windows: a windowed layer's row at position t has min(t + 1, W) keys, and its
  // rows are binned by that length.
  int64_t row_length(int layer, int64_t pos) const {
    return analysis::visible_keys(pos, kinds[size_t(layer)].window);
  }
  int bin_of(int64_t n) const {  // the b with n in [min_n 2^b, min_n 2^(b+1)); -1 below min_n
    int b = -1;
    while ((o.min_n << (b + 1)) <= n) ++b;
    return b;
  }
  HeadBudget& budget(int layer, int head) { return budgets[size_t(layer) * dims.H + head]; }
};

// Loads the model, checks its shape, caps the window at its context and fills the
// result's description of the model.
void open_model(FitRun& run, FitResult& res) {
  const FitOptions& o = run.o;
  run.model = Model::load(o.model_path, o.model_options);
  const ModelConfig& cfg = run.model->config();
  Dims& dims = run.dims;
  dims = Dims{int(cfg.n_layer), int(cfg.n_head), int(cfg.n_kv_head), int(cfg.head_dim), o.eps.size()};
  if (dims.KVH < 1 || dims.H % dims.KVH != 0)
    fail_file(o.model_path, "n_head {} is not a multiple of n_kv_head {}", dims.H, dims.KVH);
  run.window = o.max_tokens;
  if (cfg.n_ctx > 0 && run.window > cfg.n_ctx) {
    run.say(fmt::format("--max-tokens {} is above the model's context {}; using {}", run.window, cfg.n_ctx,
                        cfg.n_ctx));
    run.window = cfg.n_ctx;
  }
  if (run.window < 4 * o.min_n)
    fail_usage("the model's context {} is shorter than 4 x --min-n ({}); lower --min-n", run.window, o.min_n);
  res.model = o.model_path;
  res.arch = cfg.arch;
  res.window = run.window;
  res.n_layer = dims.L, res.n_head = dims.H, res.n_kv_head = dims.KVH, res.head_dim = dims.D;
  run.kinds = analysis::layer_kinds(cfg);
  for (const auto& k : run.kinds) res.windows.push_back(k.window);
  run.by_level.resize(dims.E);
  std::iota(run.by_level.begin(), run.by_level.end(), size_t(0));
  std::stable_sort(run.by_level.begin(), run.by_level.end(),
                   [&](size_t a, size_t b) { return o.eps[a] > o.eps[b]; });
  run.budgets.assign(size_t(dims.L) * dims.H, HeadBudget{});
  run.ranks = o.comm ? o.comm->size() : 1;
  run.rank = o.comm ? o.comm->rank() : 0;
}

// Documents -> prefixes of at most `window` tokens (the fit follows rows of growing
// length from the start of the text, so it keeps the head rather than cutting in the
// middle), at least 4 min_n long (>= 3 bins), with their sampled query positions.
void plan_documents(FitRun& run, FitResult& res) {
  const FitOptions& o = run.o;
  for (const Document& d : read_documents(o.data)) {
    if (o.max_docs > 0 && run.n_docs() >= o.max_docs) break;
    PreparedDocument pd = prepare_document(*run.model, d, run.window, DocumentCut::Head);
    res.cut += pd.truncated;
    if (int64_t(pd.tokens.size()) < 4 * o.min_n) {
      ++res.skipped_short;
      continue;
    }
    run.docs.push_back(plan_document(std::move(pd.tokens), o));
  }
  if (run.docs.empty())
    fail_usage("no document has at least {} tokens (4 x --min-n); {} were shorter", 4 * o.min_n, res.skipped_short);
  res.documents = run.n_docs();
  for (const auto& d : run.docs) res.tokens += int64_t(d.tokens.size()), res.rows += int64_t(d.pos.size());
  res.rows *= int64_t(run.dims.L) * run.dims.H;
  run.rows.resize(run.docs.size());
  for (const auto& d : run.docs)
    for (int x : d.bin) run.n_bins = std::max(run.n_bins, x + 1);
}

// Rows travel between ranks as raw doubles (NaN included, bit for bit).
void put_doubles(std::vector<uint8_t>& out, const std::vector<double>& v) {
  const size_t at = out.size();
  out.resize(at + v.size() * sizeof(double));
  if (!v.empty()) std::memcpy(out.data() + at, v.data(), v.size() * sizeof(double));
}

void take_doubles(const std::vector<uint8_t>& in, size_t& at, std::vector<double>& v) {
  if (at + v.size() * sizeof(double) > in.size()) fail("internal: short message from a rank");
  if (!v.empty()) std::memcpy(v.data(), in.data() + at, v.size() * sizeof(double));
  at += v.size() * sizeof(double);
}

using RowField = std::vector<double> DocRows::*;

// After a pass: the documents' rows of `fields` from their ranks (document d runs on rank
// d % ranks) to rank 0, and with `everyone` back to every rank.
void share_rows(FitRun& run, std::span<const RowField> fields, bool everyone) {
  const int ND = run.n_docs(), ranks = run.ranks, rank = run.rank;
  std::vector<uint8_t> mine;
  for (int di = rank; di < ND; di += ranks)
    for (RowField f : fields) put_doubles(mine, run.rows[di].*f);
  const std::vector<std::vector<uint8_t>> parts = run.o.comm->gather(mine);
  std::vector<uint8_t> all;
  if (rank == 0) {
    for (int r = 1; r < ranks; ++r) {
      size_t at = 0;
      for (int di = r; di < ND; di += ranks)
        for (RowField f : fields) take_doubles(parts[size_t(r)], at, run.rows[di].*f);
    }
    if (everyone)
      for (int di = 0; di < ND; ++di)
        for (RowField f : fields) put_doubles(all, run.rows[di].*f);
  }
  if (!everyone) return;
  all = run.o.comm->broadcast(all);
  if (rank != 0) {
    size_t at = 0;
    for (int di = 0; di < ND; ++di)
      for (RowField f : fields) take_doubles(all, at, run.rows[di].*f);
  }
}

// One pass over the documents (this rank's share of them), the model running with
// `hooks`: pass 1 fills the rows' k_eps (then shared with every rank), pass 2 their
// errors (then gathered on rank 0). Before each document's forward, run.current names it
// and `begin_document` prepares the hooks for it.
void forward_pass(FitRun& run, int pass, AttentionHooks& hooks, const std::function<void()>& begin_document) {
  const Dims& dims = run.dims;
  const int ND = run.n_docs();
  for (int di = 0; di < ND; ++di) {
    const DocPlan& doc = run.docs[di];
    DocRows& rows = run.rows[di];
    const size_t cells_all = size_t(dims.L) * dims.H * doc.pos.size();
    if (pass == 1) rows.k.assign(cells_all * dims.E, NAN);
    else rows.err.assign(cells_all * kFitRules, NAN), rows.rel = rows.err, rows.tau = rows.err;
    if (di % run.ranks != run.rank) continue;
    run.say(fmt::format("pass {}/2 ({}): document {}/{} ({} tokens, {} sampled rows per head)", pass,
                        pass == 1 ? "k_eps" : "budget errors", di + 1, ND, doc.tokens.size(), doc.pos.size()));
    run.current = di;
    begin_document();
    KVCache cache = run.model->make_cache(int64_t(doc.tokens.size()));
    ForwardOptions fo;
    fo.no_logits = true;
    fo.hooks = &hooks;
    std::vector<float> logits;
    run.model->forward(doc.tokens, cache, fo, logits);
  }
  if (run.ranks > 1) {
    static const RowField k_field[] = {&DocRows::k};
    static const RowField error_fields[] = {&DocRows::err, &DocRows::rel, &DocRows::tau};
    if (pass == 1) share_rows(run, k_field, true);
    else share_rows(run, error_fields, false);
  }
}

// Pass 1 with the k_eps observers on every layer.
void k_eps_pass(FitRun& run) {
  std::vector<KEpsObserver> layers(run.dims.L);
  for (int l = 0; l < run.dims.L; ++l) {
    layers[l].layer = l;
    layers[l].dims = &run.dims;
    layers[l].opt = &run.o;
    layers[l].by_level = &run.by_level;
  }
  KEpsHooks hooks(layers);
  forward_pass(run, 1, hooks, [&] {
    for (auto& lo : layers) lo.doc = &run.docs[run.current], lo.out = &run.rows[run.current];
  });
}

// The sampled rows of one head, per eps and bin: (document, n, k_eps).
std::vector<BinData> head_bins(const FitRun& run, int l, int h) {
  const Dims& dims = run.dims;
  std::vector<BinData> bd(dims.E);
  for (auto& b : bd) b.rows.resize(run.n_bins);
  for (int di = 0; di < run.n_docs(); ++di) {
    const auto& d = run.docs[di];
    const size_t S = d.pos.size();
    for (size_t s = 0; s < S; ++s) {
      const int64_t n = run.row_length(l, d.pos[s]);
      const int b = run.bin_of(n);
      if (b < 0) continue;  // a window shorter than min_n
      const size_t row = (size_t(l) * dims.H + h) * S + s;
      for (size_t e = 0; e < dims.E; ++e) bd[e].rows[b].push_back({di, double(n), run.rows[di].k[row * dims.E + e]});
    }
  }
  return bd;
}

// The head's bins with rows: lower edge, mean n, rows, and per eps the mean k_eps.
void bin_means(const FitRun& run, const std::vector<BinData>& bd, HeadFit& hf) {
  hf.bin_k.resize(run.dims.E);
  for (int b = 0; b < run.n_bins; ++b) {
    const auto& r0 = bd[0].rows[b];
    if (r0.empty()) continue;
    double sn = 0;
    for (const auto& r : r0) sn += r.n;
    hf.bin_lo.push_back(run.o.min_n << b);
    hf.bin_n.push_back(sn / double(r0.size()));
    hf.bin_rows.push_back(int64_t(r0.size()));
    for (size_t e = 0; e < run.dims.E; ++e) {
      double sk = 0;
      for (const auto& r : bd[e].rows[b]) sk += r.k;
      hf.bin_k[e].push_back(sk / double(r0.size()));
    }
  }
}

// The head's budgets: dynamic from its own fit (at the smallest eps); fixed of equal mean
// cost over every analysed position of the documents.
HeadBudget head_budget(const FitRun& run, int l, const PowerFit& fit) {
  HeadBudget hb;
  if (!std::isfinite(fit.C)) return hb;
  hb.C = std::clamp(fit.C, 0.0, 1.0);
  hb.alpha = std::exp(fit.log_A);
  double cost = 0, count = 0;
  for (const auto& d : run.docs)
    for (int64_t n = run.o.min_n; n <= int64_t(d.tokens.size()); ++n) {
      const int64_t v = run.row_length(l, n - 1);
      if (v < run.o.min_n) continue;
      cost += double(hb.dynamic(v)), count += 1;
    }
  hb.k_fixed = count > 0 ? std::max<int64_t>(1, std::llround(cost / count)) : 1;
  return hb;
}

// One head after pass 1: bin means, a fit and verdict per eps, and its budgets.
HeadFit fit_one_head(FitRun& run, int l, int h, size_t e_min, bool by_docs) {
  const FitOptions& o = run.o;
  HeadFit hf;
  hf.layer = l, hf.head = h, hf.kv_head = h / (run.dims.H / run.dims.KVH), hf.window = run.kinds[size_t(l)].window;
  const std::vector<BinData> bd = head_bins(run, l, h);
  bin_means(run, bd, hf);
  for (size_t e = 0; e < run.dims.E; ++e) {
    size_t used = 0;
    hf.fits.push_back(fit_head(bd[e], run.n_docs(), o, stream_key(o.seed, uint64_t(l), uint64_t(h), e), by_docs, &used));
    hf.verdict.push_back(fit_verdict(hf.fits.back(), used, o));
  }
  const HeadBudget hb = head_budget(run, l, hf.fits[e_min]);
  run.budget(l, h) = hb;
  hf.dyn_alpha = hb.alpha, hf.dyn_C = hb.C, hf.k_fixed = hb.k_fixed;
  return hf;
}

// The fits of every layer and head from pass 1's rows (layer-major).
void fit_heads(FitRun& run, FitResult& res) {
  const bool by_docs = run.n_docs() >= 3;
  res.bootstrap_unit = by_docs ? "documents" : "rows";
  size_t e_min = 0;
  for (size_t e = 0; e < run.dims.E; ++e)
    if (run.o.eps[e] < run.o.eps[e_min]) e_min = e;
  for (int l = 0; l < run.dims.L; ++l)
    for (int h = 0; h < run.dims.H; ++h) res.heads.push_back(fit_one_head(run, l, h, e_min, by_docs));
}

// Pass 2's hooks: eval-policy's oracle with one policy map per rule (each head its own
// budget), dense attention in the model, every map's key sets applied to the same q/k/v;
// the sampled rows' errors land in the current document's rows.
std::unique_ptr<policies::OracleHooks> oracle_hooks(FitRun& run) {
  const Dims& dims = run.dims;
  std::vector<policies::PolicyMap> maps;
  for (int r = 0; r < kFitRules; ++r) {
    policies::PolicyMap map;
    for (int l = 0; l < dims.L; ++l)
      for (int h = 0; h < dims.H; ++h) map.set(l, h, run.budget(l, h).rule(r));
    maps.push_back(std::move(map));
  }
  auto oracle = std::make_unique<policies::OracleHooks>(run.model->config(), std::move(maps));
  oracle->report_rows(
      [&run](int64_t q) {
        const DocPlan& doc = run.docs[run.current];
        return q >= 0 && q < int64_t(doc.sample_of.size()) && doc.sample_of[q] >= 0;
      },
      [&run](const policies::OracleRow& r) {
        const DocPlan& doc = run.docs[run.current];
        DocRows& rows = run.rows[run.current];
        const size_t S = doc.pos.size();
        const size_t at = ((size_t(r.layer) * run.dims.H + r.head) * S + doc.sample_of[r.query]) * kFitRules + r.map;
        if (!run.budget(r.layer, r.head).usable()) return;  // stays NaN
        rows.err[at] = std::sqrt(r.diff2);
        rows.rel[at] = r.ref2 > 0 ? std::sqrt(r.diff2 / r.ref2) : NAN;
        rows.tau[at] = r.tau;
      },
      /*only_chosen=*/true);
  return oracle;
}

// Pass 2: errors of the budget rules on the same sampled rows.
void error_pass(FitRun& run) {
  const std::unique_ptr<policies::OracleHooks> oracle = oracle_hooks(run);
  forward_pass(run, 2, *oracle, [&] { oracle->reset(); });
}

// One head's mean errors of one rule: per bin of its fit and over all its sampled rows.
void rule_errors(const FitRun& run, HeadFit& hf, int r) {
  const int n_bins = run.n_bins;
  std::vector<double> se(n_bins, 0), sr(n_bins, 0), st(n_bins, 0), cnt(n_bins, 0);
  double ae = 0, ar = 0, at = 0, ac = 0;
  for (int di = 0; di < run.n_docs(); ++di) {
    const auto& d = run.docs[di];
    const auto& rows = run.rows[di];
    const size_t S = d.pos.size();
    for (size_t s = 0; s < S; ++s) {
      const size_t row = ((size_t(hf.layer) * run.dims.H + hf.head) * S + s) * kFitRules + r;
      const double e = rows.err[row], rl = rows.rel[row], t = rows.tau[row];
      if (!std::isfinite(e)) continue;
      const int b = run.bin_of(run.row_length(hf.layer, d.pos[s]));
      if (b < 0) continue;
      se[b] += e, sr[b] += std::isfinite(rl) ? rl : 0, st[b] += t, cnt[b] += 1;
      ae += e, ar += std::isfinite(rl) ? rl : 0, at += t, ac += 1;
    }
  }
  for (int b = 0; b < n_bins; ++b) {
    if (std::find(hf.bin_lo.begin(), hf.bin_lo.end(), run.o.min_n << b) == hf.bin_lo.end()) continue;
    hf.err[r].push_back(cnt[b] > 0 ? se[b] / cnt[b] : NAN);
    hf.rel[r].push_back(cnt[b] > 0 ? sr[b] / cnt[b] : NAN);
    hf.tau[r].push_back(cnt[b] > 0 ? st[b] / cnt[b] : NAN);
  }
  if (ac > 0) hf.err_all[r] = ae / ac, hf.rel_all[r] = ar / ac, hf.tau_all[r] = at / ac;
}

// Every head's errors of every rule from pass 2's rows.
void head_errors(const FitRun& run, FitResult& res) {
  for (auto& hf : res.heads) {
    hf.err.assign(kFitRules, {});
    hf.rel.assign(kFitRules, {});
    hf.tau.assign(kFitRules, {});
    hf.err_all.assign(kFitRules, NAN);
    hf.rel_all.assign(kFitRules, NAN);
    hf.tau_all.assign(kFitRules, NAN);
    for (int r = 0; r < kFitRules; ++r) rule_errors(run, hf, r);
  }
}

}  // namespace

FitResult fit_model(const FitOptions& o) {
  validate(o);
  FitRun run(o);
  FitResult res;
  open_model(run, res);
  plan_documents(run, res);
  k_eps_pass(run);       // pass 1: k_eps of the sampled rows
  fit_heads(run, res);   // fits and budgets per layer and head
  error_pass(run);       // pass 2: the budget rules' errors on the same rows
  head_errors(run, res);
  return res;
}

}  // namespace attnsparse::theory
