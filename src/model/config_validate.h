// Sanity limits on a model's hyper-parameters, checked once when a model is loaded (after
// config_from_gguf / config_from_hf_json), so that no later size computation overflows and
// no value that would silently produce NaN (a negative epsilon, a zero RoPE base) is used.
#pragma once
#include <string>

#include "core/model_limits.h"  // kMaxLayers, kMaxHeads
#include "model/config.h"

namespace attnsparse {

// (kMaxLayers: per-layer tables are sized by it, so readers check it as soon as they read
// the count.)

// FormatError "<path>: <field> ..." naming the first value that is out of range.
void validate_config(const ModelConfig& config, const std::string& path);

}  // namespace attnsparse
