// world(): loads the MPI plug-in (libattnsparse_mpi.so, next to the executable) when an MPI
// launcher started this process.
#include <dlfcn.h>
#include <unistd.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include <filesystem>

#include "core/error.h"
#include "dist/world.h"

namespace attnsparse::dist {

bool built_with_mpi() {
#ifdef ATTNSPARSE_HAVE_MPI
  return true;
#else
  return false;
#endif
}

analysis::ShardComm* world() {
  static analysis::ShardComm* w = nullptr;
  if (w) return w;
  const Launch l = detect_launch();
  if (!l.launched) return nullptr;
  if (!built_with_mpi())
    fail_usage("started by an MPI launcher ({} is set) but this attnsparse was built without MPI "
               "(install libopenmpi-dev and rebuild, or run it without mpirun/srun)",
               l.variable);
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  const std::string plugin = (exe.parent_path() / "libattnsparse_mpi.so").string();
  // RTLD_GLOBAL: Open MPI's own components resolve libmpi's symbols through it.
  void* handle = dlopen(plugin.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!handle) fail_file(plugin, "cannot load the MPI plug-in ({})", dlerror());
  using Make = analysis::ShardComm* (*)();
  const auto make = reinterpret_cast<Make>(dlsym(handle, "attnsparse_mpi_world"));
  if (!make) fail_file(plugin, "not an attnsparse MPI plug-in");
  w = make();
  // srun without an MPI plug-in (--mpi=none), or a launcher this MPI library does not speak
  // to: every task comes up as an MPI job of its own and would run the whole job.
  if (l.size > 0 && w->size() != l.size)
    fail_usage("started as one of {} processes ({} = {}) but MPI sees {}: the launcher and the MPI library did not "
               "connect (with srun give --mpi=pmix, see `srun --mpi=list`; or run one process without the launcher)",
               l.size, l.size_from, l.size, w->size());
  return w;
}

void default_threads(const analysis::ShardComm* comm, int threads) {
  if (!comm || threads > 0) return;
  const int cores = omp_get_num_procs();  // this rank's affinity mask (mpirun --bind-to, srun -c)
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  const int local = std::max(1, comm->local_size());
  // Bound to a subset of the node by the launcher: that subset is this rank's. Unbound:
  // share the node's cores.
  const bool bound = online > 0 && cores < online;
  omp_set_num_threads(bound ? cores : std::max(1, cores / local));
}

void run_on_world(const std::function<void(analysis::ShardComm*)>& job) {
  analysis::ShardComm* comm = world();
  if (!comm) return job(nullptr);
  try {
    job(comm);
  } catch (const std::exception& e) {
    std::exception_ptr error = std::current_exception();
    if (!comm->settled && !comm->closed) {
      try {
        comm->agree(analysis::ShardComm::failure_of(e));
      } catch (...) {
        error = std::current_exception();
      }
    }
    if (comm->rank() != 0) {
      std::fflush(stdout);
      std::exit(1);
    }
    std::rethrow_exception(error);
  }
}

}  // namespace attnsparse::dist
