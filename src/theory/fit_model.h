// `theory fit`: the n^C-sparsity measurements on a model's real attention rows
// (docs/methods.md §8, "the same measurements apply to real attention rows").
//
// Each document (its first max_tokens tokens, prepared as analyze and eval-policy prepare
// theirs: model/documents.h) runs through the model once as one causal batch; the
// attention core's RowObserver sees every probability row (never an n x n matrix). The
// row of query position t has n = t+1 keys, or n = min(t+1, W) in a layer with a native
// sliding window W (the keys it lets the query see). Query positions are sampled per bin
// of t+1, [m, 2m) with m = min_n * 2^b, a fixed number per bin and document (evenly
// spaced; the same positions for every layer and head); rows are binned by their n.
//
// Per layer and head and per eps: the mean k_eps (= W_{1-eps} of analysis' row metrics)
// of the sampled rows in each bin against their mean n, fitted as ln k = ln A + C ln n
// (least squares over bins), with
// a percentile bootstrap interval (documents resampled when there are at least 3, else
// rows within bins). A verdict says whether the head is n^C-sparse (C clearly inside
// (0, 1) with a good fit), dense (C near 1: k grows like n), collapsed (C near 0: O(1)
// entries carry the mass), or follows no clean power law.
//
// Budget rules (a second pass over the same documents, once every head has its fit):
// the dynamic budget k(n) = ceil(alpha n^C) with (alpha, C) = (A, C) of the head's fit at
// the smallest eps, against a fixed budget of equal mean cost (the mean of k(n) over
// every analysed position of the documents). Each budget is used with two selections:
// oracle top-k (the best k-set for this row) and a StreamingLLM window (min(4, k/2) sink
// keys + the most recent rest) — the policies dyntopk, topk, dynwindow and sink+window,
// one budget per head, run by eval-policy's oracle (policies/oracle.h) on the same
// q/k/v as the dense pass: ||o - o_G|| with o the dense output and o_G the output over
// G (= tau * ||mu_tail - mu_G||, docs/methods.md §2), and tau the dense mass outside G.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "analysis/shard.h"
#include "model/model.h"
#include "theory/sparsity.h"

namespace attnsparse::theory {

// The most tokens per document (--max-tokens): the model runs once over them.
constexpr int64_t kFitMaxTokens = int64_t{1} << 24;

struct FitOptions {
  std::string model_path;
  ModelLoadOptions model_options;  // --tokenizer
  std::vector<std::string> data;  // files or directories (read_documents)
  std::vector<double> eps{0.01, 0.05};
  int64_t max_tokens = 2048;  // per document: its first max_tokens tokens
  int64_t min_n = 16;         // the smallest row length analysed (first bin [min_n, 2 min_n))
  int max_docs = 0;           // 0 = all
  int rows_per_bin = 32;      // sampled query positions per bin and document; 0 = every row
  int bootstrap = 500;
  double level = 0.95;
  uint64_t seed = 1;
  // Verdict thresholds on the fitted C (and its interval) at each eps.
  double collapsed_below = 0.15;  // C_hi below this: collapsed onto O(1) entries
  double dense_above = 0.9;       // C above this: dense (k grows like n)
  double min_r2 = 0.9;            // a power law needs at least this R^2
  int min_bins = 3;               // and at least this many lengths
  std::function<void(const std::string&)> progress;
  // Several processes (analysis/shard.h): document d runs on rank d % size(); the rows'
  // k_eps reach every rank (for the fits), their errors rank 0, whose result then equals
  // one process's exactly. Only rank 0 should write its result.
  analysis::ShardComm* comm = nullptr;
};

// Throws UsageError for out-of-range options.
void validate(const FitOptions& opt);

// Budget rules of the second pass, in this order.
enum FitRule { kTopkDynamic = 0, kTopkFixed, kWindowDynamic, kWindowFixed, kFitRules };
const char* fit_rule_name(int rule);  // "topk-dyn", "topk-fixed", "window-dyn", "window-fixed"

struct HeadFit {
  int layer = 0, head = 0, kv_head = 0;
  int64_t window = 0;                      // the layer's native sliding window (0 = global)
  // Per bin (only bins with rows): lower edge, mean n, rows; per eps the mean k_eps.
  std::vector<int64_t> bin_lo;
  std::vector<double> bin_n;
  std::vector<int64_t> bin_rows;
  std::vector<std::vector<double>> bin_k;  // [eps][bin]
  std::vector<PowerFit> fits;              // per eps (C = NaN: too few bins)
  std::vector<std::string> verdict;        // per eps
  // Budget rules (errors NaN when the head has no usable fit).
  double dyn_alpha = NAN, dyn_C = NAN;
  int64_t k_fixed = 0;
  std::vector<std::vector<double>> err, rel, tau;  // [rule][bin] means over sampled rows
  std::vector<double> err_all, rel_all, tau_all;    // [rule] means over all sampled rows
};

struct FitResult {
  std::string model, arch;
  int n_layer = 0, n_head = 0, n_kv_head = 0, head_dim = 0;
  int64_t window = 0;  // tokens per document actually used (max_tokens capped at the model's context)
  int64_t documents = 0, tokens = 0, rows = 0, skipped_short = 0, cut = 0;
  std::string bootstrap_unit;  // "documents" or "rows"
  std::vector<int64_t> windows;  // per layer: native sliding window (0 = global)
  std::vector<HeadFit> heads;  // layer-major
};

FitResult fit_model(const FitOptions& opt);

// Verdict for one fit (public for tests).
std::string fit_verdict(const PowerFit& f, size_t bins, const FitOptions& opt);

// Output (fit_report.cpp).
nlohmann::json fit_json(const FitOptions& opt, const FitResult& res);
std::string fit_table(const FitOptions& opt, const FitResult& res);
std::string fit_html(const FitOptions& opt, const FitResult& res);

}  // namespace attnsparse::theory
