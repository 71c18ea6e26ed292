// From accumulated statistics to report.json (schema: docs/report-schema.md): per-layer
// means with bootstrap intervals, per-head features and clusters, persistence, and the
// verdicts of the five conjectures (docs/methods.md §7).
#pragma once
#include <nlohmann/json.hpp>

#include <vector>

#include "analysis/accumulator.h"
#include "analysis/layer_kind.h"
#include "analysis/params.h"

namespace attnsparse::analysis {

inline constexpr const char* kReportSchema = "attnsparse.analysis/1";

// `meta` supplies "model" (with "n_kv_heads" for the KV group of each head), "data" and
// "run" objects, copied into the report as they are. `kinds`: each layer's window and
// RoPE base; when empty, meta's model.layers ([{kind, window, rope_base}] per layer, as
// analyze and `attnsparse info --json` write it) if it has one entry per layer, else every
// layer global without RoPE. Deterministic: the same accumulator, parameters and layers
// give the same report.
nlohmann::json build_report(const Accumulator& acc, const AnalysisParams& params,
                            const nlohmann::json& meta, const std::vector<LayerKind>& kinds = {});

}  // namespace attnsparse::analysis
