#include "model/profile.h"

#include <fmt/format.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace attnsparse::profile {
namespace {
std::atomic<double> g_seconds[kNumOps];
const char* kNames[kNumOps] = {"embed",      "norm", "matmul", "rope", "attention", "hooks (around attention)",
                               "activation", "logits (output matmul)", "other"};
}  // namespace

bool enabled() {
  static const bool on = [] {
    const char* e = std::getenv("ATTNSPARSE_PROFILE");
    return e != nullptr && *e != '\0' && std::strcmp(e, "0") != 0;
  }();
  return on;
}

void add(Op op, double seconds) {
  double cur = g_seconds[op].load(std::memory_order_relaxed);
  while (!g_seconds[op].compare_exchange_weak(cur, cur + seconds)) {
  }
}

void reset() {
  for (auto& s : g_seconds) s.store(0);
}

std::string report() {
  if (!enabled()) return "";
  double total = 0;
  for (auto& s : g_seconds) total += s.load();
  std::string out = fmt::format("profile (ATTNSPARSE_PROFILE): {:.3f} s in forward ops\n", total);
  for (int i = 0; i < kNumOps; ++i) {
    const double s = g_seconds[i].load();
    out += fmt::format("  {:<24} {:9.4f} s  {:5.1f} %\n", kNames[i], s,
                       total > 0 ? 100.0 * s / total : 0.0);
  }
  return out;
}

}  // namespace attnsparse::profile
