#include "theory/fit_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <numeric>
#include <random>

#include "core/error.h"
#include "io/corpus.h"
#include "model/model.h"
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
  if (o.min_n < 2) fail_usage("--min-n {} must be at least 2", o.min_n);
  if (o.max_tokens < 4 * o.min_n)
    fail_usage("--max-tokens {} must be at least 4 x --min-n ({}) so that rows span three lengths", o.max_tokens,
               o.min_n);
  if (o.max_docs < 0) fail_usage("--docs {} must be >= 0", o.max_docs);
  if (o.rows_per_bin < 0) fail_usage("--rows-per-bin {} must be >= 0 (0 = every row)", o.rows_per_bin);
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

// The budgets of the second pass for one head.
struct HeadBudget {
  double alpha = NAN, C = NAN;
  int64_t k_fixed = 0;
  bool usable() const { return std::isfinite(C) && std::isfinite(alpha); }
  int64_t dynamic(int64_t n) const {
    const double k = std::ceil(alpha * std::pow(double(n), C) - 1e-9);
    return std::clamp<int64_t>(std::isfinite(k) ? int64_t(std::min(k, 1e15)) : n, 1, n);
  }
};

class LayerObserver final : public ops::RowObserver {
 public:
  int layer = 0;
  int pass = 1;
  const Dims* dims = nullptr;
  const FitOptions* opt = nullptr;
  const DocPlan* doc = nullptr;
  DocRows* out = nullptr;
  const std::vector<HeadBudget>* budgets = nullptr;  // [layer * H + head]
  ops::AttentionShape shape;
  ops::AttentionArgs args;

  void on_row(int head, int64_t query_pos, const float* probs, const int32_t* keys, int64_t n) override {
    if (query_pos < 0 || query_pos >= int64_t(doc->sample_of.size())) return;
    const int s = doc->sample_of[query_pos];
    if (s < 0 || n < 1) return;
    const size_t S = doc->pos.size();
    const size_t row = (size_t(layer) * dims->H + head) * S + s;
    thread_local std::vector<double> w, work;
    w.resize(n);
    double total = 0;
    for (int64_t j = 0; j < n; ++j) total += w[j] = probs[j];
    for (auto& x : w) x /= total;
    if (pass == 1) {
      for (size_t e = 0; e < dims->E; ++e) {
        work.assign(w.begin(), w.end());
        out->k[row * dims->E + e] = double(k_eps_inplace(work, opt->eps[e]));
      }
      return;
    }
    const HeadBudget& hb = (*budgets)[size_t(layer) * dims->H + head];
    double* err = &out->err[row * kFitRules];
    double* rel = &out->rel[row * kFitRules];
    double* tau = &out->tau[row * kFitRules];
    if (!hb.usable()) {
      std::fill_n(err, kFitRules, NAN), std::fill_n(rel, kFitRules, NAN), std::fill_n(tau, kFitRules, NAN);
      return;
    }
    // Values of this head's KV group for the row's keys.
    const int D = dims->D;
    const int kvh = head / (dims->H / dims->KVH);
    auto value = [&](int64_t j) {
      const int64_t slot = keys ? keys[j] : j;
      return args.v + slot * args.v_stride + int64_t(kvh) * D;
    };
    thread_local std::vector<double> o, og;
    o.assign(D, 0.0);
    for (int64_t j = 0; j < n; ++j) {
      const float* v = value(j);
      const double a = w[j];
      for (int c = 0; c < D; ++c) o[c] += a * v[c];
    }
    double o2 = 0;
    for (int c = 0; c < D; ++c) o2 += o[c] * o[c];
    for (int r = 0; r < kFitRules; ++r) {
      const bool dynamic = r == kTopkDynamic || r == kWindowDynamic;
      const int64_t k = std::clamp<int64_t>(dynamic ? hb.dynamic(n) : hb.k_fixed, 1, n);
      og.assign(D, 0.0);
      double kept = 0;
      auto keep = [&](size_t j) {
        kept += w[j];
        const float* v = value(int64_t(j));
        const double a = w[j];
        for (int c = 0; c < D; ++c) og[c] += a * v[c];
      };
      if (r == kTopkDynamic || r == kTopkFixed) {
        work.assign(w.begin(), w.end());
        const double t = kth_largest_inplace(work, k);
        for_each_topk(w, k, t, keep);
      } else {
        // StreamingLLM: min(4, k/2) sink keys and the most recent rest (row order is
        // increasing key position).
        const int64_t sink = std::min<int64_t>(4, k / 2);
        for (int64_t j = 0; j < sink; ++j) keep(size_t(j));
        for (int64_t j = std::max(sink, n - (k - sink)); j < n; ++j) keep(size_t(j));
      }
      double e2 = 0;
      for (int c = 0; c < D; ++c) {
        const double diff = o[c] - og[c] / kept;
        e2 += diff * diff;
      }
      err[r] = std::sqrt(e2);
      rel[r] = o2 > 0 ? std::sqrt(e2 / o2) : NAN;
      tau[r] = std::max(0.0, 1.0 - kept);
    }
  }
};

class FitHooks final : public AttentionHooks {
 public:
  explicit FitHooks(std::vector<LayerObserver>& layers) : layers_(layers) {}
  const ops::KeySet* plan(int layer, const ops::AttentionShape& shape, const ops::AttentionArgs& args) override {
    layers_[layer].shape = shape;  // the values the observer needs for the error pass
    layers_[layer].args = args;
    return nullptr;  // dense attention
  }
  ops::RowObserver* observer(int layer) override { return &layers_[layer]; }

 private:
  std::vector<LayerObserver>& layers_;
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

}  // namespace

FitResult fit_model(const FitOptions& o) {
  validate(o);
  auto say = [&](const std::string& s) {
    if (o.progress) o.progress(s);
  };
  const auto model = Model::load(o.model_path, o.model_options);
  const ModelConfig& cfg = model->config();
  Dims dims{int(cfg.n_layer), int(cfg.n_head), int(cfg.n_kv_head), int(cfg.head_dim), o.eps.size()};
  if (dims.KVH < 1 || dims.H % dims.KVH != 0)
    fail_file(o.model_path, "n_head {} is not a multiple of n_kv_head {}", dims.H, dims.KVH);
  int64_t window = o.max_tokens;
  if (cfg.n_ctx > 0 && window > cfg.n_ctx) {
    say(fmt::format("--max-tokens {} is above the model's context {}; using {}", window, cfg.n_ctx, cfg.n_ctx));
    window = cfg.n_ctx;
  }
  if (window < 4 * o.min_n)
    fail_usage("the model's context {} is shorter than 4 x --min-n ({}); lower --min-n", window, o.min_n);

  FitResult res;
  res.model = o.model_path;
  res.arch = cfg.arch;
  res.window = window;
  res.n_layer = dims.L, res.n_head = dims.H, res.n_kv_head = dims.KVH, res.head_dim = dims.D;

  // Documents -> prefixes of at most `window` tokens, at least 4 min_n long (>= 3 bins).
  std::vector<DocPlan> docs;
  for (const Document& d : read_documents(o.data)) {
    if (o.max_docs > 0 && int(docs.size()) >= o.max_docs) break;
    std::vector<int32_t> tokens = d.tokens ? *d.tokens : model->tokenizer().encode(d.text, true);
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] < 0 || tokens[i] >= cfg.n_vocab)
        fail_file(d.source, "token id {} at index {} is out of range (vocabulary size {})", tokens[i], i, cfg.n_vocab);
    if (int64_t(tokens.size()) > window) tokens.resize(window), ++res.cut;
    if (int64_t(tokens.size()) < 4 * o.min_n) {
      ++res.skipped_short;
      continue;
    }
    docs.push_back(plan_document(std::move(tokens), o));
  }
  if (docs.empty())
    fail_usage("no document has at least {} tokens (4 x --min-n); {} were shorter", 4 * o.min_n, res.skipped_short);
  const int ND = int(docs.size());
  res.documents = ND;
  for (const auto& d : docs) res.tokens += int64_t(d.tokens.size()), res.rows += int64_t(d.pos.size());
  res.rows *= int64_t(dims.L) * dims.H;

  std::vector<DocRows> rows(ND);
  std::vector<LayerObserver> layers(dims.L);
  std::vector<HeadBudget> budgets(size_t(dims.L) * dims.H);
  for (int l = 0; l < dims.L; ++l) {
    layers[l].layer = l;
    layers[l].dims = &dims;
    layers[l].opt = &o;
    layers[l].budgets = &budgets;
  }
  FitHooks hooks(layers);
  const int ranks = o.comm ? o.comm->size() : 1, rank = o.comm ? o.comm->rank() : 0;
  // After a pass: the documents' rows of `field` from their ranks to rank 0 (and with
  // `everyone` back to every rank), as raw doubles (NaN included, bit for bit).
  auto share = [&](std::vector<double> DocRows::*const* fields, size_t n_fields, bool everyone) {
    std::vector<uint8_t> mine;
    auto put = [](std::vector<uint8_t>& out, const std::vector<double>& v) {
      const size_t at = out.size();
      out.resize(at + v.size() * sizeof(double));
      if (!v.empty()) std::memcpy(out.data() + at, v.data(), v.size() * sizeof(double));
    };
    auto take = [](const std::vector<uint8_t>& in, size_t& at, std::vector<double>& v) {
      if (at + v.size() * sizeof(double) > in.size()) fail("internal: short message from a rank");
      if (!v.empty()) std::memcpy(v.data(), in.data() + at, v.size() * sizeof(double));
      at += v.size() * sizeof(double);
    };
    for (int di = rank; di < ND; di += ranks)
      for (size_t f = 0; f < n_fields; ++f) put(mine, rows[di].*fields[f]);
    const std::vector<std::vector<uint8_t>> parts = o.comm->gather(mine);
    std::vector<uint8_t> all;
    if (rank == 0) {
      for (int r = 1; r < ranks; ++r) {
        size_t at = 0;
        for (int di = r; di < ND; di += ranks)
          for (size_t f = 0; f < n_fields; ++f) take(parts[size_t(r)], at, rows[di].*fields[f]);
      }
      if (everyone)
        for (int di = 0; di < ND; ++di)
          for (size_t f = 0; f < n_fields; ++f) put(all, rows[di].*fields[f]);
    }
    if (!everyone) return;
    all = o.comm->broadcast(all);
    if (rank != 0) {
      size_t at = 0;
      for (int di = 0; di < ND; ++di)
        for (size_t f = 0; f < n_fields; ++f) take(all, at, rows[di].*fields[f]);
    }
  };
  auto run_pass = [&](int pass) {
    for (int di = 0; di < ND; ++di) {
      const size_t cells_all = size_t(dims.L) * dims.H * docs[di].pos.size();
      if (pass == 1) rows[di].k.assign(cells_all * dims.E, NAN);
      else rows[di].err.assign(cells_all * kFitRules, NAN), rows[di].rel = rows[di].err, rows[di].tau = rows[di].err;
      if (di % ranks != rank) continue;
      say(fmt::format("pass {}/2 ({}): document {}/{} ({} tokens, {} sampled rows per head)", pass,
                      pass == 1 ? "k_eps" : "budget errors", di + 1, ND, docs[di].tokens.size(), docs[di].pos.size()));
      for (auto& lo : layers) lo.pass = pass, lo.doc = &docs[di], lo.out = &rows[di];
      KVCache cache = model->make_cache(int64_t(docs[di].tokens.size()));
      ForwardOptions fo;
      fo.no_logits = true;
      fo.hooks = &hooks;
      std::vector<float> logits;
      model->forward(docs[di].tokens, cache, fo, logits);
    }
    if (ranks > 1) {
      static std::vector<double> DocRows::*const k_field[] = {&DocRows::k};
      static std::vector<double> DocRows::*const error_fields[] = {&DocRows::err, &DocRows::rel, &DocRows::tau};
      if (pass == 1) share(k_field, 1, true);
      else share(error_fields, 3, false);
    }
  };

  // Pass 1: k_eps of the sampled rows; fits per layer and head.
  run_pass(1);
  const bool by_docs = ND >= 3;
  res.bootstrap_unit = by_docs ? "documents" : "rows";
  const int n_bins = [&] {
    int b = 0;
    for (const auto& d : docs)
      for (int x : d.bin) b = std::max(b, x + 1);
    return b;
  }();
  size_t e_min = 0;
  for (size_t e = 0; e < dims.E; ++e)
    if (o.eps[e] < o.eps[e_min]) e_min = e;
  for (int l = 0; l < dims.L; ++l)
    for (int h = 0; h < dims.H; ++h) {
      HeadFit hf;
      hf.layer = l, hf.head = h, hf.kv_head = h / (dims.H / dims.KVH);
      std::vector<BinData> bd(dims.E);
      for (auto& b : bd) b.rows.resize(n_bins);
      for (int di = 0; di < ND; ++di) {
        const auto& d = docs[di];
        const size_t S = d.pos.size();
        for (size_t s = 0; s < S; ++s) {
          const size_t row = (size_t(l) * dims.H + h) * S + s;
          for (size_t e = 0; e < dims.E; ++e)
            bd[e].rows[d.bin[s]].push_back({di, double(d.pos[s] + 1), rows[di].k[row * dims.E + e]});
        }
      }
      hf.bin_k.resize(dims.E);
      for (int b = 0; b < n_bins; ++b) {
        const auto& r0 = bd[0].rows[b];
        if (r0.empty()) continue;
        double sn = 0;
        for (const auto& r : r0) sn += r.n;
        hf.bin_lo.push_back(o.min_n << b);
        hf.bin_n.push_back(sn / double(r0.size()));
        hf.bin_rows.push_back(int64_t(r0.size()));
        for (size_t e = 0; e < dims.E; ++e) {
          double sk = 0;
          for (const auto& r : bd[e].rows[b]) sk += r.k;
          hf.bin_k[e].push_back(sk / double(r0.size()));
        }
      }
      for (size_t e = 0; e < dims.E; ++e) {
        size_t used = 0;
        hf.fits.push_back(fit_head(bd[e], ND, o, stream_key(o.seed, uint64_t(l), uint64_t(h), e), by_docs, &used));
        hf.verdict.push_back(fit_verdict(hf.fits.back(), used, o));
      }
      // The head's budgets: dynamic from its own fit at the smallest eps; fixed of equal
      // mean cost over every analysed position of the documents.
      HeadBudget& hb = budgets[size_t(l) * dims.H + h];
      if (std::isfinite(hf.fits[e_min].C)) {
        hb.C = std::clamp(hf.fits[e_min].C, 0.0, 1.0);
        hb.alpha = std::exp(hf.fits[e_min].log_A);
        double cost = 0, count = 0;
        for (const auto& d : docs)
          for (int64_t n = o.min_n; n <= int64_t(d.tokens.size()); ++n) cost += double(hb.dynamic(n)), count += 1;
        hb.k_fixed = std::max<int64_t>(1, std::llround(cost / count));
      }
      hf.dyn_alpha = hb.alpha, hf.dyn_C = hb.C, hf.k_fixed = hb.k_fixed;
      res.heads.push_back(std::move(hf));
    }

  // Pass 2: errors of the budget rules on the same sampled rows.
  run_pass(2);
  for (auto& hf : res.heads) {
    hf.err.assign(kFitRules, {});
    hf.rel.assign(kFitRules, {});
    hf.tau.assign(kFitRules, {});
    hf.err_all.assign(kFitRules, NAN);
    hf.rel_all.assign(kFitRules, NAN);
    hf.tau_all.assign(kFitRules, NAN);
    for (int r = 0; r < kFitRules; ++r) {
      std::vector<double> se(n_bins, 0), sr(n_bins, 0), st(n_bins, 0), cnt(n_bins, 0);
      double ae = 0, ar = 0, at = 0, ac = 0;
      for (int di = 0; di < ND; ++di) {
        const auto& d = docs[di];
        const size_t S = d.pos.size();
        for (size_t s = 0; s < S; ++s) {
          const size_t row = ((size_t(hf.layer) * dims.H + hf.head) * S + s) * kFitRules + r;
          const double e = rows[di].err[row], rl = rows[di].rel[row], t = rows[di].tau[row];
          if (!std::isfinite(e)) continue;
          const int b = d.bin[s];
          se[b] += e, sr[b] += std::isfinite(rl) ? rl : 0, st[b] += t, cnt[b] += 1;
          ae += e, ar += std::isfinite(rl) ? rl : 0, at += t, ac += 1;
        }
      }
      for (int b = 0; b < n_bins; ++b) {
        if (std::find(hf.bin_lo.begin(), hf.bin_lo.end(), o.min_n << b) == hf.bin_lo.end()) continue;
        hf.err[r].push_back(cnt[b] > 0 ? se[b] / cnt[b] : NAN);
        hf.rel[r].push_back(cnt[b] > 0 ? sr[b] / cnt[b] : NAN);
        hf.tau[r].push_back(cnt[b] > 0 ? st[b] / cnt[b] : NAN);
      }
      if (ac > 0) hf.err_all[r] = ae / ac, hf.rel_all[r] = ar / ac, hf.tau_all[r] = at / ac;
    }
  }
  return res;
}

}  // namespace attnsparse::theory
