#include "core/dtype.h"

#include <fmt/format.h>

namespace attnsparse {

namespace {
constexpr DTypeTraits kF32{"f32", 1, 4};
constexpr DTypeTraits kF16{"f16", 1, 2};
constexpr DTypeTraits kBF16{"bf16", 1, 2};
constexpr DTypeTraits kQ4_0{"q4_0", 32, 18};
constexpr DTypeTraits kQ8_0{"q8_0", 32, 34};
constexpr DTypeTraits kQ4_K{"q4_k", 256, 144};
constexpr DTypeTraits kQ6_K{"q6_k", 256, 210};
}  // namespace

std::optional<DType> dtype_from_ggml(uint32_t ggml_type) {
  switch (ggml_type) {
    case 0: return DType::F32;
    case 1: return DType::F16;
    case 2: return DType::Q4_0;
    case 8: return DType::Q8_0;
    case 12: return DType::Q4_K;
    case 14: return DType::Q6_K;
    case 30: return DType::BF16;
    default: return std::nullopt;
  }
}

const DTypeTraits& dtype_traits(DType type) {
  switch (type) {
    case DType::F32: return kF32;
    case DType::F16: return kF16;
    case DType::BF16: return kBF16;
    case DType::Q4_0: return kQ4_0;
    case DType::Q8_0: return kQ8_0;
    case DType::Q4_K: return kQ4_K;
    case DType::Q6_K: return kQ6_K;
  }
  return kF32;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q8_0, DType::Q4_K,
                  DType::Q6_K}) {
    if (name == dtype_traits(t).name) return t;
  }
  return std::nullopt;
}

std::string ggml_type_name(uint32_t ggml_type) {
  static const char* names[] = {"f32",  "f16",  "q4_0", "q4_1", "type 4", "type 5", "q5_0",
                                "q5_1", "q8_0", "q8_1", "q2_k", "q3_k",   "q4_k",   "q5_k",
                                "q6_k", "q8_k", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s",
                                "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "i8", "i16", "i32",
                                "i64", "f64", "iq1_m", "bf16"};
  if (ggml_type < sizeof(names) / sizeof(names[0])) return names[ggml_type];
  return fmt::format("type {}", ggml_type);
}

}  // namespace attnsparse
