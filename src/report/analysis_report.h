// The analysis report rendered from report.json (docs/report-schema.md): a self-contained
// HTML page with inline SVG charts, and the verdict table for the terminal.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace attnsparse::report {

// Verdict table first, then charts: width per layer (p = 0.5/0.9/0.99 with intervals),
// sink and recency per layer, the layer x head grid coloured by cluster, persistence
// against the gap, distributions; then clusters, parameters and documents. A small
// inline script marks the page as loaded (title suffix and <body data-report-ok>) once
// every SVG has parsed, so a headless browser can check it.
std::string analysis_html(const nlohmann::json& report);

// Plain-text verdict table (one line per conjecture) with the run's counts.
std::string verdict_table_text(const nlohmann::json& report);

// A layer x head grid of categorical cells (cluster labels; -1 or null = none), with a
// legend. Cells carry tooltips with `tooltips[layer][head]` when given.
std::string cluster_grid_svg(const std::vector<std::vector<int>>& labels,
                             const std::vector<std::vector<std::string>>& tooltips,
                             const std::string& title);

}  // namespace attnsparse::report
