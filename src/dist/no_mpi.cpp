// world() of a build without MPI.
#include "core/error.h"
#include "dist/world.h"

namespace attnsparse::dist {

bool built_with_mpi() { return false; }

analysis::ShardComm* world() {
  const Launch l = detect_launch();
  if (l.launched)
    fail_usage("started by an MPI launcher ({} is set) but this attnsparse was built without MPI "
               "(install libopenmpi-dev and rebuild, or run it without mpirun/srun)",
               l.variable);
  return nullptr;
}

}  // namespace attnsparse::dist
