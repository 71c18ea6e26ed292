// Output of the theory verbs: JSON, a human-readable table, and a self-contained HTML
// page with inline SVG plots (no scripts, no external resources).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "theory/simulate.h"

namespace attnsparse::theory {

nlohmann::json simulation_json(const SimOptions& opt, const std::vector<SettingResult>& res);
std::string simulation_table(const SimOptions& opt, const std::vector<SettingResult>& res);
std::string simulation_html(const SimOptions& opt, const std::vector<SettingResult>& res);

// The same pages drawn from the JSON the verbs wrote (attnsparse report): the options and
// results are read back, then drawn by simulation_html / fit_html. Throws Error or
// nlohmann::json::exception for a file that does not have the expected fields.
std::string simulation_html_from_json(const nlohmann::json& j);
std::string fit_html_from_json(const nlohmann::json& j);

}  // namespace attnsparse::theory
