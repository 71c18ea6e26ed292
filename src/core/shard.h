// Work shared by several processes (MPI ranks): the communication a sharded run needs
// (analyze, theory, eval-policy), as an interface, so that the engines do not depend on
// MPI. The MPI implementation is src/dist/; a run without one is a plain single-process run.
//
// Every collective is called by all ranks in the same order. gather() delivers every
// rank's bytes to rank 0 (in rank order); broadcast() sends rank 0's bytes to all.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace attnsparse {

// A rank's error, as agree() passes it on.
struct ShardFailure {
  bool failed = false;
  int kind = 0;  // 0 Error, 1 FormatError, 2 UsageError, 3 other
  std::string message;
};

class ShardComm {
 public:
  using Failure = ShardFailure;
  virtual ~ShardComm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Ranks on this rank's node (sharing its memory), for the default thread count.
  virtual int local_size() const { return 1; }
  // On rank 0: the bytes of ranks 0..size-1; elsewhere: empty.
  virtual std::vector<std::vector<uint8_t>> gather(const std::vector<uint8_t>& mine) = 0;
  // Rank 0's bytes on every rank (`bytes` is read on rank 0 only).
  virtual std::vector<uint8_t> broadcast(const std::vector<uint8_t>& bytes) = 0;

  // Error agreement. A rank that fails calls agree(its error); the others call agree() at
  // the same point; all then throw the error of the lowest failing rank (same type, same
  // message) or, if none failed, return. Once a failure has been agreed (settled) or the
  // job's last collective has run (closed), a later error is local and needs no agreement.
  void agree(const Failure& mine = {});
  static Failure failure_of(const std::exception& e);
  bool settled = false, closed = false;
};

}  // namespace attnsparse
