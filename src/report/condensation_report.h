// The attention-condensation experiment's results.json (scripts/condensation_experiment.sh)
// as a self-contained HTML page: perplexity of each trained model with dense attention
// and with oracle top-k / dynamic top-k at inference, attention mass and sparse-row share,
// the attention width per layer, and the table.
#pragma once
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace attnsparse::report {

// {"setup": {...}, "runs": [{"name", "reg", "val_ppl", "mean_topk_mass", ...}, ...]}
bool is_condensation_results(const nlohmann::json& results);
std::string condensation_html(const nlohmann::json& results);

}  // namespace attnsparse::report
