#include <cstdlib>
#include <string>

#include "dist/world.h"

namespace attnsparse::dist {

namespace {
int int_of(const char* text) {
  if (!text || !*text) return 0;
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  return end && *end == 0 && v > 0 && v < (1L << 30) ? int(v) : 0;
}
}  // namespace

Launch detect_launch() {
  Launch l;
  // A process started by an MPI program (inheriting its environment) is not a rank.
  if (const char* off = std::getenv("ATTNSPARSE_NO_MPI"); off && *off && std::string(off) != "0") return l;
  auto set = [&l](const char* var, int size, const char* size_from = nullptr) {
    l.launched = true;
    l.variable = var;
    l.size = size;
    l.size_from = size > 0 ? (size_from ? size_from : var) : "";
  };
  // A Slurm job step's task count (srun sets SLURM_STEP_ID and SLURM_STEP_NUM_TASKS for the
  // tasks it starts; a batch script or an salloc shell has no step of its own).
  const int slurm_tasks = std::getenv("SLURM_STEP_ID") ? int_of(std::getenv("SLURM_STEP_NUM_TASKS")) : 0;
  if (const char* s = std::getenv("OMPI_COMM_WORLD_SIZE")) {
    set("OMPI_COMM_WORLD_SIZE", int_of(s));
  } else if (std::getenv("PMIX_RANK")) {
    // PMIx states no size in the environment; when Slurm's PMIx plug-in started the task
    // (srun --mpi=pmix: namespace "slurm.pmix.JOB.STEP"), the step's task count is it.
    const char* ns = std::getenv("PMIX_NAMESPACE");
    const bool from_srun = ns && std::string(ns).rfind("slurm.pmix.", 0) == 0;
    set("PMIX_RANK", from_srun ? slurm_tasks : 0, "SLURM_STEP_NUM_TASKS");
  } else if (std::getenv("PMI_SIZE") || std::getenv("PMI_RANK")) {
    set(std::getenv("PMI_SIZE") ? "PMI_SIZE" : "PMI_RANK", int_of(std::getenv("PMI_SIZE")));
  } else if (slurm_tasks > 1) {
    set("SLURM_STEP_NUM_TASKS", slurm_tasks);
  }
  return l;
}

}  // namespace attnsparse::dist
