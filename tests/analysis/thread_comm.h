// An in-memory ShardComm for tests: N ranks as threads of one process, the collectives
// meeting at a generation-counting barrier.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

#include "analysis/shard.h"

namespace attnsparse::analysis::testing {

class Hub {
 public:
  explicit Hub(int n) : slots_(size_t(n)), n_(n) {}
  int size() const { return n_; }
  void barrier() {
    std::unique_lock lock(m_);
    const uint64_t gen = gen_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return gen_ != gen; });
    }
  }
  std::vector<std::vector<uint8_t>> slots_;
  std::vector<uint8_t> shared_;

 private:
  int n_;
  std::mutex m_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t gen_ = 0;
};

class ThreadComm : public ShardComm {
 public:
  ThreadComm(Hub& hub, int rank) : hub_(hub), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return hub_.size(); }
  std::vector<std::vector<uint8_t>> gather(const std::vector<uint8_t>& mine) override {
    hub_.slots_[size_t(rank_)] = mine;
    hub_.barrier();
    std::vector<std::vector<uint8_t>> all;
    if (rank_ == 0) all = hub_.slots_;
    hub_.barrier();
    return all;
  }
  std::vector<uint8_t> broadcast(const std::vector<uint8_t>& bytes) override {
    if (rank_ == 0) hub_.shared_ = bytes;
    hub_.barrier();
    std::vector<uint8_t> out = hub_.shared_;
    hub_.barrier();
    return out;
  }

 private:
  Hub& hub_;
  int rank_;
};

}  // namespace attnsparse::analysis::testing
