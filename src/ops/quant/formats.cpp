#include "ops/quant/formats.h"

#include <array>

#include "core/error.h"
#include "ops/quant/blocks.h"
#include "ops/quant/format_list.h"

namespace attnsparse::ops::quant {

namespace {

// One row per type (its file in this folder defines it).
const Format* const kFormats[] = {
    &kFormatF32,  &kFormatF16,  &kFormatBF16,  &kFormatQ4_0,   &kFormatQ4_1,   &kFormatQ5_0,
    &kFormatQ5_1, &kFormatQ8_0, &kFormatQ2_K,  &kFormatQ3_K,   &kFormatQ4_K,   &kFormatQ5_K,
    &kFormatQ6_K, &kFormatIQ4_NL, &kFormatIQ4_XS, &kFormatIQ3_S, &kFormatTQ2_0, &kFormatMXFP4,
};

const ActFormat kActs[] = {
    {ActType::F32, "f32", 1, 4, nullptr},
    {ActType::F16, "f16", 1, 2, nullptr},
    {ActType::BF16, "bf16", 1, 2, nullptr},
    {ActType::Q8_0, "q8_0", kQK8_0, sizeof(BlockQ8_0), quantize_act_q8_0_bytes},
    {ActType::Q8_1, "q8_1", kQK8_0, sizeof(BlockQ8_1), quantize_act_q8_1_bytes},
    {ActType::Q8_K, "q8_k", kQK_K, sizeof(BlockQ8_K), quantize_act_q8_K_bytes},
};

}  // namespace

const Format& format(DType type) {
  // (Built on first use: the Format objects live in other translation units.)
  static const std::array<const Format*, kGgmlTypeSlots> by_id = [] {
    std::array<const Format*, kGgmlTypeSlots> a{};
    for (const Format* f : kFormats) a[static_cast<uint32_t>(f->type)] = f;
    return a;
  }();
  const uint32_t id = static_cast<uint32_t>(type);
  if (id >= kGgmlTypeSlots || by_id[id] == nullptr) fail("no weight format for GGML type {}", id);
  return *by_id[id];
}

std::string writable_type_names() {
  std::string s;
  for (DType t : all_dtypes())
    if (format(t).quantize != nullptr) s += std::string(s.empty() ? "" : ", ") + dtype_name(t);
  return s;
}

const ActFormat& act_format(ActType type) { return kActs[static_cast<int>(type)]; }

}  // namespace attnsparse::ops::quant
