// Per-op wall-clock breakdown of the forward pass, enabled by ATTNSPARSE_PROFILE=1 in the
// environment (perf is not available everywhere). Costs one branch per op when off.
#pragma once
#include <chrono>
#include <string>

namespace attnsparse::profile {

// Hooks: the forward's hooks around attention (plan, observer, after_attention), e.g.
// the analysis collector's per-layer reductions between micro-batches.
enum Op { Embed, Norm, Matmul, Rope, Attention, Hooks, Activation, Logits, Other, kNumOps };

bool enabled();
void add(Op op, double seconds);
void reset();
// One line per op with seconds and share of the total; "" when profiling is off.
std::string report();

class Scope {
 public:
  explicit Scope(Op op) : op_(op), on_(enabled()) {
    if (on_) start_ = std::chrono::steady_clock::now();
  }
  ~Scope() {
    if (on_) add(op_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  Op op_;
  bool on_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace attnsparse::profile
