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

}  // namespace attnsparse::theory
