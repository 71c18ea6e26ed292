// The MPI job this process belongs to, if any. MPI is initialised only when the
// environment says the process was started by an MPI launcher (mpirun / mpiexec, Slurm's
// srun, MPICH's hydra): an ordinary run of attnsparse never touches MPI.
#pragma once
#include <functional>
#include <string>

#include "analysis/shard.h"

namespace attnsparse::dist {

struct Launch {
  bool launched = false;
  int size = 0;           // processes, from the environment; 0 = not stated there
  std::string variable;   // the variable that told, e.g. "OMPI_COMM_WORLD_SIZE"
  std::string size_from;  // the variable that stated `size` ("" when size is 0)
};
// Reads OMPI_COMM_WORLD_SIZE (Open MPI's mpirun), PMIX_RANK (PMIx: Open MPI, srun
// --mpi=pmix; the size from SLURM_STEP_NUM_TASKS when PMIX_NAMESPACE is Slurm's),
// PMI_SIZE / PMI_RANK (MPICH, srun --mpi=pmi2) and, under Slurm, a job step of several
// tasks (SLURM_STEP_ID with SLURM_STEP_NUM_TASKS > 1: srun --mpi=none). A batch script, an
// salloc shell or a one-task step is not a launch. ATTNSPARSE_NO_MPI=1 turns the
// detection off.
Launch detect_launch();

// Whether this attnsparse was built with MPI.
bool built_with_mpi();

// The world communicator, MPI initialised on first call (MPI_Finalize at exit); nullptr
// when not launched by MPI. Launched but built without MPI, or MPI's process count differs
// from the one the environment states (srun without an MPI plug-in): UsageError (every
// rank would otherwise run the whole job).
analysis::ShardComm* world();

// --threads 0 under MPI: the cores this rank may use (its affinity mask) shared by the
// ranks of its node, at least 1; so N ranks on one node do not each start a thread per
// core. Sets OpenMP's thread count; does nothing without MPI or when threads > 0.
void default_threads(const analysis::ShardComm* comm, int threads);

// Runs `job` with world() (nullptr without a launcher). Under MPI, an exception on one
// rank stops every rank with the same error: the ranks agree on it, rank 0 rethrows it
// (main prints it once) and the other ranks exit with status 1.
void run_on_world(const std::function<void(analysis::ShardComm*)>& job);

}  // namespace attnsparse::dist
