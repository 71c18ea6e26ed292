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
  auto set = [&l](const char* var, int size) {
    l.launched = true;
    l.variable = var;
    l.size = size;
  };
  if (const char* s = std::getenv("OMPI_COMM_WORLD_SIZE")) {
    set("OMPI_COMM_WORLD_SIZE", int_of(s));
  } else if (std::getenv("PMIX_RANK")) {
    set("PMIX_RANK", 0);
  } else if (std::getenv("PMI_SIZE") || std::getenv("PMI_RANK")) {
    set(std::getenv("PMI_SIZE") ? "PMI_SIZE" : "PMI_RANK", int_of(std::getenv("PMI_SIZE")));
  } else if (std::getenv("SLURM_STEP_ID") && int_of(std::getenv("SLURM_STEP_NUM_TASKS")) > 1) {
    set("SLURM_STEP_NUM_TASKS", int_of(std::getenv("SLURM_STEP_NUM_TASKS")));
  }
  return l;
}

}  // namespace attnsparse::dist
