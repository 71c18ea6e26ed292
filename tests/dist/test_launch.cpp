// Launcher detection (dist::detect_launch) from the environments that mpirun and Slurm give
// their tasks, faked here variable by variable: which environments are an MPI launch (and
// with how many processes) and which are an ordinary run (a batch script, an salloc shell,
// a one-task step, ATTNSPARSE_NO_MPI). Built with or without MPI: nothing is initialised.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dist/world.h"

namespace attnsparse::dist {
namespace {

// Every variable detect_launch reads or that a launcher sets beside them.
const std::vector<std::string> kVariables = {
    "ATTNSPARSE_NO_MPI", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMIX_NAMESPACE",
    "PMI_RANK", "PMI_SIZE", "PMI_FD", "SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_STEPID", "SLURM_STEP_NUM_TASKS",
    "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"};

// Clears those variables, sets `env`, and restores the process's own values afterwards.
class Environment {
 public:
  explicit Environment(const std::map<std::string, std::string>& env) {
    for (const std::string& v : kVariables) {
      const char* old = std::getenv(v.c_str());
      saved_[v] = old ? std::optional<std::string>(old) : std::nullopt;
      unsetenv(v.c_str());
    }
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
  }
  ~Environment() {
    for (const auto& [k, v] : saved_) {
      if (v) setenv(k.c_str(), v->c_str(), 1);
      else unsetenv(k.c_str());
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

Launch detect(const std::map<std::string, std::string>& env) {
  Environment e(env);
  return detect_launch();
}

TEST(LaunchDetection, AnOrdinaryRunIsNoLaunch) {
  EXPECT_FALSE(detect({}).launched);
}

TEST(LaunchDetection, OpenMpiMpirun) {
  // mpirun -np 3 (Open MPI 4 sets PMIx variables too; its own size wins).
  const Launch l = detect({{"OMPI_COMM_WORLD_SIZE", "3"}, {"OMPI_COMM_WORLD_RANK", "1"}, {"PMIX_RANK", "1"},
                           {"PMIX_NAMESPACE", "2183593985"}});
  EXPECT_TRUE(l.launched);
  EXPECT_EQ(l.size, 3);
  EXPECT_EQ(l.variable, "OMPI_COMM_WORLD_SIZE");
  EXPECT_EQ(l.size_from, "OMPI_COMM_WORLD_SIZE");
}

// What srun gives every task of `srun -n 64` in a job: the job's and the step's variables.
std::map<std::string, std::string> srun_task(std::map<std::string, std::string> extra) {
  std::map<std::string, std::string> env = {{"SLURM_JOB_ID", "4242"}, {"SLURM_STEP_ID", "0"}, {"SLURM_STEPID", "0"},
                                            {"SLURM_STEP_NUM_TASKS", "64"}, {"SLURM_NTASKS", "64"},
                                            {"SLURM_PROCID", "17"}, {"SLURM_LOCALID", "0"}};
  for (const auto& [k, v] : extra) env[k] = v;
  return env;
}

TEST(LaunchDetection, SrunWithPmix) {
  // srun --mpi=pmix: PMIx names the namespace after the job step; the size is the step's.
  const Launch l = detect(srun_task({{"PMIX_RANK", "17"}, {"PMIX_NAMESPACE", "slurm.pmix.4242.0"}}));
  EXPECT_TRUE(l.launched);
  EXPECT_EQ(l.variable, "PMIX_RANK");
  EXPECT_EQ(l.size, 64);
  EXPECT_EQ(l.size_from, "SLURM_STEP_NUM_TASKS");
  // Another PMIx launcher inside a Slurm step: its size is not the step's, so none is assumed.
  const Launch other = detect(srun_task({{"PMIX_RANK", "2"}, {"PMIX_NAMESPACE", "prterun-host-1234@1"}}));
  EXPECT_TRUE(other.launched);
  EXPECT_EQ(other.size, 0);
  EXPECT_EQ(other.size_from, "");
}

TEST(LaunchDetection, SrunWithPmi2AndMpichHydra) {
  const Launch l = detect(srun_task({{"PMI_RANK", "17"}, {"PMI_SIZE", "64"}, {"PMI_FD", "5"}}));
  EXPECT_TRUE(l.launched);
  EXPECT_EQ(l.variable, "PMI_SIZE");
  EXPECT_EQ(l.size, 64);
  const Launch rank_only = detect({{"PMI_RANK", "0"}});
  EXPECT_TRUE(rank_only.launched);
  EXPECT_EQ(rank_only.variable, "PMI_RANK");
  EXPECT_EQ(rank_only.size, 0);
}

TEST(LaunchDetection, SrunWithoutAnMpiPlugin) {
  // srun --mpi=none -n 64: only Slurm's variables; a launch of 64 (world() then refuses it
  // when MPI does not see the 64 processes).
  const Launch l = detect(srun_task({}));
  EXPECT_TRUE(l.launched);
  EXPECT_EQ(l.variable, "SLURM_STEP_NUM_TASKS");
  EXPECT_EQ(l.size, 64);
}

TEST(LaunchDetection, SlurmEnvironmentsThatAreNoLaunch) {
  // A batch script (sbatch -n 64): the job's variables, no step of its own.
  EXPECT_FALSE(detect({{"SLURM_JOB_ID", "4242"}, {"SLURM_NTASKS", "64"}, {"SLURM_PROCID", "0"}}).launched);
  // `srun -n 1 attnsparse ...`: a step of one task runs as one process.
  EXPECT_FALSE(detect(srun_task({{"SLURM_STEP_NUM_TASKS", "1"}, {"SLURM_NTASKS", "1"}})).launched);
  // A malformed count is no count.
  EXPECT_FALSE(detect(srun_task({{"SLURM_STEP_NUM_TASKS", "64x"}})).launched);
}

TEST(LaunchDetection, NoMpiTurnsDetectionOff) {
  EXPECT_FALSE(detect({{"ATTNSPARSE_NO_MPI", "1"}, {"OMPI_COMM_WORLD_SIZE", "4"}}).launched);
  EXPECT_FALSE(detect(srun_task({{"ATTNSPARSE_NO_MPI", "yes"}, {"PMIX_RANK", "3"}})).launched);
  // "0" or empty: detection stays on.
  EXPECT_TRUE(detect({{"ATTNSPARSE_NO_MPI", "0"}, {"OMPI_COMM_WORLD_SIZE", "4"}}).launched);
  EXPECT_TRUE(detect({{"ATTNSPARSE_NO_MPI", ""}, {"OMPI_COMM_WORLD_SIZE", "4"}}).launched);
}

}  // namespace
}  // namespace attnsparse::dist
