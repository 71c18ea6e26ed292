// world(): loads the MPI plug-in (libattnsparse_mpi.so, next to the executable) when an MPI
// launcher started this process.
#include <dlfcn.h>

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
  return w;
}

}  // namespace attnsparse::dist
