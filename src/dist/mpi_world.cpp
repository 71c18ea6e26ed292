// The MPI communicator (MPI_COMM_WORLD; byte messages with MPI_Gatherv / MPI_Bcast), built
// as the plug-in libattnsparse_mpi.so: the executable loads it (and with it libmpi) only
// when an MPI launcher started the process, so ordinary runs do not even load libmpi.
#include <mpi.h>

#include <climits>
#include <cstdlib>
#include <memory>
#include <vector>

#include "core/error.h"
#include "dist/world.h"

namespace attnsparse::dist {

namespace {

void finalize_at_exit() {
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (initialised && !finalised) MPI_Finalize();
}

int checked_count(size_t n) {
  if (n > size_t(INT_MAX)) fail("a message of {} bytes is over MPI's 2 GiB limit per message", n);
  return int(n);
}

class MpiWorld : public analysis::ShardComm {
 public:
  MpiWorld() {
    int provided = 0;
    // Only the main thread calls MPI; OpenMP threads never do.
    if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      fail("MPI_Init failed");
    std::atexit(finalize_at_exit);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &local_size_);
    MPI_Comm_free(&node);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_size() const override { return local_size_; }

  std::vector<std::vector<uint8_t>> gather(const std::vector<uint8_t>& mine) override {
    int n = checked_count(mine.size());
    std::vector<int> counts(rank_ == 0 ? size_ : 0), offsets(rank_ == 0 ? size_ : 0);
    MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
    std::vector<uint8_t> all;
    if (rank_ == 0) {
      size_t total = 0;
      for (int r = 0; r < size_; ++r) {
        offsets[r] = checked_count(total);
        total += size_t(counts[r]);
      }
      checked_count(total);
      all.resize(total);
    }
    MPI_Gatherv(mine.data(), n, MPI_BYTE, all.data(), counts.data(), offsets.data(), MPI_BYTE, 0,
                MPI_COMM_WORLD);
    std::vector<std::vector<uint8_t>> parts;
    if (rank_ == 0)
      for (int r = 0; r < size_; ++r)
        parts.emplace_back(all.begin() + offsets[r], all.begin() + offsets[r] + counts[r]);
    return parts;
  }

  std::vector<uint8_t> broadcast(const std::vector<uint8_t>& bytes) override {
    int n = rank_ == 0 ? checked_count(bytes.size()) : 0;
    MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
    std::vector<uint8_t> out = rank_ == 0 ? bytes : std::vector<uint8_t>(size_t(n));
    MPI_Bcast(out.data(), n, MPI_BYTE, 0, MPI_COMM_WORLD);
    return out;
  }

 private:
  int rank_ = 0, size_ = 1, local_size_ = 1;
};

}  // namespace

}  // namespace attnsparse::dist

// Initialises MPI; called once by dist::world().
extern "C" __attribute__((visibility("default"))) attnsparse::analysis::ShardComm* attnsparse_mpi_world() {
  static std::unique_ptr<attnsparse::dist::MpiWorld> w;
  if (!w) w = std::make_unique<attnsparse::dist::MpiWorld>();
  return w.get();
}
