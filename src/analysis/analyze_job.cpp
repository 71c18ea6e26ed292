#include "analysis/analyze_job.h"

#include <fmt/format.h>
#include <omp.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "analysis/plan.h"
#include "analysis/report_json.h"
#include "core/error.h"
#include "io/corpus.h"
#include "model/arch.h"
#include "model/documents.h"
#include "model/model.h"
#include "ops/attention.h"

namespace attnsparse::analysis {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct Settings {
  std::map<std::string, double*> reals;
  std::map<std::string, int*> ints;
};

Settings settings_of(AnalysisParams& p) {
  VerdictParams& v = p.verdict;
  PersistenceParams& q = p.persistence;
  return Settings{
      {{"c1_rho", &v.c1_rho}, {"c1_p", &v.c1_p}, {"c2_silhouette_supported", &v.c2_silhouette_supported},
       {"c2_ari_supported", &v.c2_ari_supported}, {"c2_silhouette_partial", &v.c2_silhouette_partial},
       {"c34_ratio", &v.c34_ratio}, {"c34_p", &v.c34_p}, {"c34_supported_share", &v.c34_supported_share},
       {"c34_partial_share", &v.c34_partial_share}, {"c5_supported", &v.c5_supported},
       {"c5_partial", &v.c5_partial}, {"alpha", &v.alpha}},
      {{"bootstrap_resamples", &v.bootstrap_resamples}, {"reservoir", &v.reservoir},
       {"kmeans_min_k", &v.kmeans_min_k}, {"kmeans_max_k", &v.kmeans_max_k},
       {"kmeans_restarts", &v.kmeans_restarts}, {"recency_window", &v.recency_window},
       {"c5_gap", &v.c5_gap}, {"c5_k", &v.c5_k}, {"anchors", &q.anchors},
       {"feature_gap", &q.feature_gap}}};
}

}  // namespace

std::vector<std::string> setting_names() {
  AnalysisParams p;
  const Settings s = settings_of(p);
  std::vector<std::string> names{"min_anchor"};
  for (const auto& [k, _] : s.reals) names.push_back(k);
  for (const auto& [k, _] : s.ints) names.push_back(k);
  return names;
}

void apply_setting(AnalysisParams& p, const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos) fail_usage("--set: '{}' is not NAME=VALUE", text);
  const std::string name = text.substr(0, eq), value = text.substr(eq + 1);
  double x = 0;
  try {
    size_t used = 0;
    x = std::stod(value, &used);
    if (used != value.size()) throw std::invalid_argument("trailing");
  } catch (const std::exception&) {
    fail_usage("--set {}: '{}' is not a number", name, value);
  }
  if (!std::isfinite(x)) fail_usage("--set {}: '{}' is not a finite number", name, value);
  // Integers are converted only inside their type's range (validate() then applies each
  // parameter's own bounds).
  auto integer = [&](double lo, double hi) {
    if (x != std::floor(x)) fail_usage("--set {}: '{}' is not an integer", name, value);
    if (x < lo || x > hi) fail_usage("--set {}: {} is out of range [{}, {}]", name, value, lo, hi);
    return x;
  };
  const Settings s = settings_of(p);
  if (auto it = s.reals.find(name); it != s.reals.end()) {
    *it->second = x;
  } else if (auto jt = s.ints.find(name); jt != s.ints.end()) {
    *jt->second = static_cast<int>(integer(0, 2147483647.0));
  } else if (name == "min_anchor") {
    p.persistence.min_anchor = static_cast<int64_t>(integer(0, 9007199254740992.0));  // 2^53
  } else {
    std::string known;
    for (const std::string& k : setting_names()) known += (known.empty() ? "" : " ") + k;
    fail_usage("--set: unknown parameter '{}' (known: {})", name, known);
  }
}

RowKind parse_row_kind(const std::string& text) {
  if (text == "prefill") return RowKind::Prefill;
  if (text == "decode") return RowKind::Decode;
  if (text == "both") return RowKind::Both;
  fail_usage("--rows must be prefill, decode or both (got '{}')", text);
}

std::string checkpoint_path(const std::string& out_dir) {
  return (fs::path(out_dir) / "checkpoint.cbor").string();
}

json run_analysis(const Model& model, AnalysisParams params, const AnalyzeJob& job) {
  validate(params);
  const ModelConfig& cfg = model.config();
  const SamplingParams& s = params.sampling;
  const int64_t window = s.max_tokens > 0 ? s.max_tokens : cfg.n_ctx;
  if (window < 2) {
    if (s.max_tokens > 0) fail_usage("--max-tokens {}: a document needs at least 2 tokens", s.max_tokens);
    fail_usage("the model does not state its context length ({}); give --max-tokens", cfg.n_ctx);
  }
  if (s.rows == RowKind::Prefill && window <= s.min_query)
    fail_usage("--max-tokens {}: rows start at query position --min-query {}, so the window must be longer", window,
               s.min_query);
  if (arch_info(cfg.arch).learned_positions && window > cfg.n_ctx)
    fail_usage("--max-tokens {}: {} has learned positions for {} tokens only", window, cfg.arch, cfg.n_ctx);
  params.sampling.max_tokens = window;

  // Documents -> tokens (BOS as the model's vocabulary says; .tok files as they are).
  std::vector<Document> raw = job.data.empty() ? std::vector<Document>{} : read_documents(job.data);
  raw.insert(raw.end(), job.documents.begin(), job.documents.end());
  std::vector<RunDocument> docs;
  json skipped = json::array();
  int64_t truncated = 0;
  const int64_t needed = s.rows == RowKind::Prefill ? s.min_query + 1 : 2;
  for (const Document& d : raw) {
    PreparedDocument pd = prepare_document(model, d, window);
    std::vector<int32_t>& tokens = pd.tokens;
    RunDocument rd;
    rd.info.id = d.id;
    rd.info.source = d.source;
    rd.info.dataset = d.dataset;
    rd.info.original_tokens = pd.original_tokens;
    truncated += pd.truncated;
    if (int64_t(tokens.size()) < needed) {
      skipped.push_back({{"id", d.id}, {"tokens", tokens.size()}, {"reason", fmt::format("fewer than {} tokens", needed)}});
      continue;
    }
    rd.tokens = std::move(tokens);
    docs.push_back(std::move(rd));
  }
  if (docs.empty())
    fail_usage("no document has enough tokens to analyse ({} read, all shorter than {} tokens)", raw.size(), needed);
  if (!skipped.empty() && job.notice)
    job.notice(fmt::format("skipped {} documents shorter than {} tokens", skipped.size(), needed));

  RunControl control;
  if (!job.out_dir.empty()) {
    std::error_code ec;
    fs::create_directories(job.out_dir, ec);
    if (ec || !fs::is_directory(job.out_dir)) fail_file(job.out_dir, "cannot create the output directory");
    control.checkpoint_path = checkpoint_path(job.out_dir);
  }

  // What the run is: a resumed run must match it exactly.
  uint64_t token_hash = 0;
  for (const RunDocument& d : docs)
    for (int32_t t : d.tokens) token_hash = hash_combine(token_hash, uint64_t(uint32_t(t)));
  const json fingerprint{{"model", fs::absolute(job.model_path).string()},
                         {"model_bytes", fs::is_regular_file(job.model_path) ? int64_t(fs::file_size(job.model_path)) : 0},
                         {"documents", docs.size()}, {"tokens", token_hash},
                         {"dump_rows", job.dump_rows}, {"parameters", to_json(params)}};
  control.resume = job.resume;
  control.fingerprint = fingerprint.dump();
  control.dump_path = job.dump_rows;
  control.progress = job.progress;
  control.comm = job.comm;
  if (job.resume && !control.checkpoint_path.empty() && !fs::exists(control.checkpoint_path) && job.notice)
    job.notice(fmt::format("--resume: no checkpoint in {}; starting from the beginning", job.out_dir));

  ModelRowSource source(model);
  const RunOutcome outcome = analyze_documents(source, docs, params, control);
  if (job.comm && job.comm->rank() != 0) return json();
  if (outcome.docs_resumed > 0 && job.notice)
    job.notice(fmt::format("resumed after {} documents from the checkpoint", outcome.docs_resumed));

  json meta;
  meta["model"] = {{"path", job.model_path},
                   {"name", cfg.name.empty() ? fs::path(job.model_path).filename().string() : cfg.name},
                   {"arch", cfg.arch}, {"n_layer", cfg.n_layer}, {"n_head", cfg.n_head},
                   {"n_kv_heads", cfg.n_kv_head}, {"head_dim", cfg.head_dim}, {"n_ctx", cfg.n_ctx},
                   {"n_vocab", cfg.n_vocab}, {"format", cfg.source_format}};
  json layers = json::array();  // as `attnsparse info --json`, with the window applied
  for (const LayerKind& k : source.layer_kinds())
    layers.push_back({{"kind", k.windowed() ? "windowed" : "global"}, {"window", k.window},
                      {"rope_base", std::isfinite(k.rope_base) ? json(k.rope_base) : json(nullptr)}});
  meta["model"]["layers"] = layers;
  meta["data"] = {{"paths", job.data}, {"documents_read", raw.size()}, {"documents_truncated", truncated},
                  {"documents_skipped", skipped}, {"max_tokens", window}};
  meta["run"] = {{"threads", omp_get_max_threads()}, {"attention_isa", ops::attention_isa()}, {"ubatch", default_ubatch()}, {"kv_type", dtype_name(default_kv_type())},
                 {"seconds", outcome.seconds}, {"rows_this_invocation", outcome.rows_this_run},
                 {"rows_per_second", outcome.seconds > 0 ? double(outcome.rows_this_run) / outcome.seconds : 0.0},
                 {"documents_resumed", outcome.docs_resumed}};
  if (job.comm) {
    meta["run"]["ranks"] = job.comm->size();
    meta["run"]["bytes_merged"] = outcome.bytes_merged;
  }
  return build_report(outcome.acc, params, meta, source.layer_kinds());
}

}  // namespace attnsparse::analysis
