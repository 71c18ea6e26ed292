#include "core/cpu.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace attnsparse::cpu {

namespace {

Level detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
#if defined(__clang__) && __clang_major__ < 15  // clang 14 (fuzz builds) lacks "f16c"; AVX2 CPUs have it
  const bool f16c = true;
#else
  const bool f16c = __builtin_cpu_supports("f16c");
#endif
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c)) return Level::Portable;
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")))
    return Level::Avx2;
  if (!__builtin_cpu_supports("avx512vnni")) return Level::Avx512;
  if (!__builtin_cpu_supports("avx512bf16")) return Level::Avx512Vnni;
  return Level::Avx512Bf16;
#else
  return Level::Portable;
#endif
}

constexpr int kNone = -1, kUnread = -2;
std::atomic<int> g_override{kUnread};

int environment_level() {
  const char* env = std::getenv("ATTNSPARSE_SIMD");
  if (env == nullptr || *env == '\0') return kNone;
  const auto l = parse_level(env);
  if (!l) {
    std::string names;
    for (const char* n : kLevelNames) names += names.empty() ? n : std::string(", ") + n;
    fail_usage("ATTNSPARSE_SIMD={}: expected one of {}", env, names);
  }
  return static_cast<int>(*l);
}

}  // namespace

const char* name(Level level) { return kLevelNames[static_cast<size_t>(level)]; }

std::optional<Level> parse_level(std::string_view n) {
  for (size_t i = 0; i < kLevelNames.size(); ++i)
    if (n == kLevelNames[i]) return static_cast<Level>(i);
  if (n == "sse2") return Level::Portable;
  return std::nullopt;
}

Level supported() {
  static const Level l = detect();
  return l;
}

Level active() {
  int o = g_override.load(std::memory_order_relaxed);
  if (o == kUnread) {
    o = environment_level();
    int expected = kUnread;
    g_override.compare_exchange_strong(expected, o);
    o = g_override.load(std::memory_order_relaxed);
  }
  const int s = static_cast<int>(supported());
  return static_cast<Level>(o == kNone ? s : std::min(s, o));
}

void set_override(std::optional<Level> level) {
  g_override.store(level ? static_cast<int>(*level) : environment_level());
}

ScopedLevel::ScopedLevel(Level level) : prev_(g_override.load()) {
  g_override.store(static_cast<int>(level));
}
ScopedLevel::~ScopedLevel() { g_override.store(prev_); }

}  // namespace attnsparse::cpu
