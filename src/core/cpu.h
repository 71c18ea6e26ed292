// The CPU's instruction-set level, one list for every kernel family (matmul, packed
// integer GEMM, attention, row statistics): each level includes the ones before it, a
// kernel family uses the best variant the active level allows. The level is detected
// once (CPUID); ATTNSPARSE_SIMD=<name> in the environment (read at first use) or
// cpu::set_override (tests, benchmarks) lowers it, never raises it past what the CPU runs.
#pragma once
#include <array>
#include <optional>
#include <string_view>

namespace attnsparse::cpu {

enum class Level : int {
  Portable = 0,    // baseline x86-64 (SSE2) or any other CPU: scalar / SSE2 kernels
  Avx2 = 1,        // AVX2, FMA, F16C
  Avx512 = 2,      // + AVX-512 F, BW, VL, DQ
  Avx512Vnni = 3,  // + AVX512-VNNI (integer dot products: quantised GEMM)
  Avx512Bf16 = 4,  // + AVX512-BF16 (BF16 dot products)
};
inline constexpr std::array<const char*, 5> kLevelNames = {"portable", "avx2", "avx512", "avx512vnni",
                                                           "avx512bf16"};

const char* name(Level level);
// A name of kLevelNames (also "sse2" for portable, as the attention kernel calls it).
std::optional<Level> parse_level(std::string_view name);

// The best level this CPU runs.
Level supported();
// min(supported(), override). Throws UsageError, once, for an unknown ATTNSPARSE_SIMD.
Level active();
inline bool active_at_least(Level l) { return static_cast<int>(active()) >= static_cast<int>(l); }

// Overrides ATTNSPARSE_SIMD for the whole process (nullopt: back to the environment's).
void set_override(std::optional<Level> level);

// set_override for a scope (tests).
class ScopedLevel {
 public:
  explicit ScopedLevel(Level level);
  ~ScopedLevel();
  ScopedLevel(const ScopedLevel&) = delete;
  ScopedLevel& operator=(const ScopedLevel&) = delete;

 private:
  int prev_;
};

}  // namespace attnsparse::cpu
