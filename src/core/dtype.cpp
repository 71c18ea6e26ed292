#include "core/dtype.h"

#include <fmt/format.h>

#include <array>
#include <cctype>

namespace attnsparse {

namespace {

struct Row {
  DType type;
  DTypeTraits traits;
};

// One row per type: GGML id (the enum value), name, elements and bytes per block
// (ggml-common.h's block structs).
constexpr Row kRows[] = {
    {DType::F32, {"f32", 1, 4}},
    {DType::F16, {"f16", 1, 2}},
    {DType::Q4_0, {"q4_0", 32, 18}},
    {DType::Q4_1, {"q4_1", 32, 20}},
    {DType::Q5_0, {"q5_0", 32, 22}},
    {DType::Q5_1, {"q5_1", 32, 24}},
    {DType::Q8_0, {"q8_0", 32, 34}},
    {DType::Q2_K, {"q2_k", 256, 84}},
    {DType::Q3_K, {"q3_k", 256, 110}},
    {DType::Q4_K, {"q4_k", 256, 144}},
    {DType::Q5_K, {"q5_k", 256, 176}},
    {DType::Q6_K, {"q6_k", 256, 210}},
    {DType::IQ4_NL, {"iq4_nl", 32, 18}},
    {DType::IQ3_S, {"iq3_s", 256, 110}},
    {DType::IQ4_XS, {"iq4_xs", 256, 136}},
    {DType::BF16, {"bf16", 1, 2}},
    {DType::TQ2_0, {"tq2_0", 256, 66}},
    {DType::MXFP4, {"mxfp4", 32, 17}},
};

constexpr std::array<DType, std::size(kRows)> kAll = [] {
  std::array<DType, std::size(kRows)> a{};
  for (size_t i = 0; i < std::size(kRows); ++i) a[i] = kRows[i].type;
  return a;
}();

// GGML id -> index into kRows (-1: not a DType); row_bytes() asks for every weight row.
constexpr std::array<int8_t, kGgmlTypeSlots> kIndex = [] {
  std::array<int8_t, kGgmlTypeSlots> a{};
  a.fill(-1);
  for (size_t i = 0; i < std::size(kRows); ++i) a[static_cast<uint32_t>(kRows[i].type)] = static_cast<int8_t>(i);
  return a;
}();

const Row* find_row(uint32_t id) {
  if (id >= kGgmlTypeSlots || kIndex[id] < 0) return nullptr;
  return &kRows[kIndex[id]];
}

}  // namespace

std::optional<DType> dtype_from_ggml(uint32_t ggml_type) {
  if (const Row* r = find_row(ggml_type)) return r->type;
  return std::nullopt;
}

const DTypeTraits& dtype_traits(DType type) {
  if (const Row* r = find_row(static_cast<uint32_t>(type))) return r->traits;
  return kRows[0].traits;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const Row& r : kRows)
    if (lower == r.traits.name) return r.type;
  return std::nullopt;
}

std::span<const DType> all_dtypes() { return kAll; }

std::string ggml_type_name(uint32_t ggml_type) {
  static const char* names[] = {
      "f32",    "f16",     "q4_0",    "q4_1",    "type 4",   "type 5",  "q5_0",   "q5_1",
      "q8_0",   "q8_1",    "q2_k",    "q3_k",    "q4_k",     "q5_k",    "q6_k",   "q8_k",
      "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s",   "iq4_nl",   "iq3_s",   "iq2_s",  "iq4_xs",
      "i8",     "i16",     "i32",     "i64",     "f64",      "iq1_m",   "bf16",   "q4_0_4_4",
      "q4_0_4_8", "q4_0_8_8", "tq1_0", "tq2_0",  "iq4_nl_4_4", "iq4_nl_4_8", "iq4_nl_8_8",
      "mxfp4",  "nvfp4",   "q1_0"};
  if (ggml_type < sizeof(names) / sizeof(names[0])) return names[ggml_type];
  return fmt::format("type {}", ggml_type);
}

}  // namespace attnsparse
