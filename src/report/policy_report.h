// The eval-policy report rendered from its report.json (docs/policies.md): the
// quality-vs-memory frontier as charts, per-layer output error, time, and the table.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace attnsparse::report {

// A point of a frontier: smaller x is better (less kept), and y is better when smaller
// (`lower_is_better`) or larger. Returns, per point, whether no other point is at least
// as good in both and strictly better in one (Pareto-optimal). Non-finite points are
// never optimal and never dominate.
std::vector<bool> pareto_optimal(const std::vector<double>& x, const std::vector<double>& y, bool lower_is_better);

// Charts: perplexity relative to dense and top-1 agreement against the kept fraction and
// against the KV-cache bytes (one line per policy family, points labelled by the swept
// value, dense as the reference point, Pareto-optimal points ringed), relative output
// error per layer and policy, speed-up against the kept fraction with the ideal
// 1/kept line, then the table and the definitions. Self-contained (no external
// resources); a small script marks the page as loaded for headless checks.
std::string policy_html(const nlohmann::json& report);

// Whether a JSON document looks like an eval-policy report.
bool is_policy_report(const nlohmann::json& report);

}  // namespace attnsparse::report
