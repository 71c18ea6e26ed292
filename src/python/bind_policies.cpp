// attnsparse.eval_policy: the eval-policy verb's engine (policies/evaluate.h) from Python —
// the same documents, policies (specs, per-layer maps, sweeps) and report as the CLI.
#include <omp.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/corpus.h"
#include "policies/evaluate.h"
#include "python/common.h"
#include "report/policy_report.h"

namespace attnsparse::python {

using namespace pybind11::literals;

namespace {

// (report.json text, report.html text) of an evaluation. Policies: spec / map texts as
// --policy takes them (empty: the verb's default set).
py::tuple eval_policy_json(PyModel& pm, const std::vector<std::string>& paths, const std::vector<std::string>& specs,
                           int64_t max_tokens, int64_t max_docs, int64_t chunk, int64_t decode_tokens,
                           py::object progress) {
  if (max_tokens < 2) throw UsageError(fmt::format("max_tokens must be at least 2, got {}", max_tokens));
  if (chunk < 1) throw UsageError(fmt::format("chunk must be positive, got {}", chunk));
  if (decode_tokens < 0) throw UsageError(fmt::format("decode_tokens must not be negative, got {}", decode_tokens));
  if (paths.empty()) throw UsageError("eval_policy: no data (give files or directories)");
  std::vector<policies::EvalPolicy> pols = specs.empty() ? policies::default_eval_policies()
                                                         : std::vector<policies::EvalPolicy>{};
  for (const auto& s : specs)
    for (auto& e : policies::parse_eval_policies(s)) pols.push_back(std::move(e));
  const Checkpoint cp(std::move(progress));
  std::string json_text, html;
  {
    py::gil_scoped_release release;
    pm.apply_threads();
    std::vector<Document> docs = read_documents(paths);
    if (max_docs > 0 && static_cast<int64_t>(docs.size()) > max_docs) docs.resize(size_t(max_docs));
    const auto documents = policies::prepare_evaluation(*pm.model, pols, docs, max_tokens, paths);
    const int64_t limit = policies::document_token_limit(*pm.model, max_tokens);
    policies::EvalOptions opts;
    opts.chunk = chunk;
    opts.decode_tokens = decode_tokens;
    opts.model_path = pm.path;
    opts.data_paths = paths;
    opts.max_tokens = limit;
    opts.threads = omp_get_max_threads();
    const int64_t steps = static_cast<int64_t>(documents.size() * (pols.size() + 2));
    int64_t done = 0;
    const auto on_progress = [&](const policies::EvalProgress& e) {
      if (e.stage != policies::EvalProgress::Stage::DocumentDone) ++done;
      cp(std::min(done, steps), steps);  // Ctrl-C and the callback
    };
    const auto result = policies::evaluate_policies(*pm.model, documents, pols, opts, on_progress);
    const nlohmann::json report = policies::to_json(result);
    json_text = report.dump(2) + "\n";
    html = report::policy_html(report);
  }
  return py::make_tuple(json_text, html);
}

}  // namespace

void bind_policies(py::module_& m) {
  m.def("eval_policy_json", &eval_policy_json, "model"_a, "paths"_a, "policies"_a, "max_tokens"_a, "max_docs"_a,
        "chunk"_a, "decode_tokens"_a, "progress"_a = py::none());
}

}  // namespace attnsparse::python
