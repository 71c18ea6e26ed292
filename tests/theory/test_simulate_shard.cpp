// theory simulate shared by several ranks (SimOptions::comm), the ranks as threads with an
// in-memory communicator: rank 0's report equals one process's exactly (every k_eps, fit,
// bootstrap interval and error), for 2, 3 and 5 ranks (5 > trials / 2, and 7 trials do
// not divide evenly).
#include <gtest/gtest.h>
#include <omp.h>

#include <thread>

#include "analysis/thread_comm.h"
#include "theory/simulate.h"
#include "theory/theory_report.h"

namespace attnsparse::theory {
namespace {

SimOptions small_options() {
  SimOptions o;
  o.n_lo = 1 << 10;
  o.n_hi = 1 << 13;
  Setting g;
  g.regime = Regime::Gaussian;
  g.d = 32;
  g.sigma = 1.5;
  Setting c;
  c.regime = Regime::LogitC;
  c.d = 32;
  c.c = 0.5;
  o.settings = {g, c};
  o.trials = 7;
  o.bootstrap = 100;
  return o;
}

TEST(SimulateSharded, RankZeroReportEqualsOneProcess) {
  const SimOptions one = small_options();
  const std::string want = simulation_json(one, simulate(one)).dump();
  for (int ranks : {2, 3, 5}) {
    SCOPED_TRACE("ranks " + std::to_string(ranks));
    analysis::testing::Hub hub(ranks);
    std::vector<std::string> got(static_cast<size_t>(ranks));
    std::vector<std::thread> threads;
    for (int r = 0; r < ranks; ++r)
      threads.emplace_back([&, r] {
        omp_set_num_threads(1);
        analysis::testing::ThreadComm comm(hub, r);
        SimOptions o = small_options();
        o.comm = &comm;
        got[size_t(r)] = simulation_json(o, simulate(o)).dump();
      });
    for (auto& t : threads) t.join();
    EXPECT_EQ(got[0], want);
    EXPECT_NE(got[1], want);  // the other ranks hold only their own trials' errors
  }
}

}  // namespace
}  // namespace attnsparse::theory
