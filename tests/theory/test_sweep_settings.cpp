// theory::sweep_settings, the settings of `theory simulate` and attnsparse.theory.simulate:
// every head dimension with every regime value, in a fixed order.
#include <gtest/gtest.h>

#include <vector>

#include "theory/simulate.h"

namespace attnsparse::theory {
namespace {

TEST(SweepSettings, EveryDimensionWithEveryRegimeValueInOrder) {
  const std::vector<Setting> s = sweep_settings({8, 16}, {1.0, 2.0}, {1.5}, {4.0, 8.0}, {0.5});
  ASSERT_EQ(s.size(), 2u * (2 + 1 * 2 + 1));
  for (size_t block = 0; block < 2; ++block) {
    const Setting* x = &s[block * 5];
    const int d = block == 0 ? 8 : 16;
    for (int i = 0; i < 5; ++i) EXPECT_EQ(x[i].d, d);
    EXPECT_EQ(x[0].regime, Regime::Gaussian);
    EXPECT_EQ(x[0].sigma, 1.0);
    EXPECT_EQ(x[1].regime, Regime::Gaussian);
    EXPECT_EQ(x[1].sigma, 2.0);
    EXPECT_EQ(x[2].regime, Regime::NormBound);
    EXPECT_EQ(x[2].B, 1.5);
    EXPECT_EQ(x[2].F, 4.0);
    EXPECT_EQ(x[3].regime, Regime::NormBound);
    EXPECT_EQ(x[3].F, 8.0);
    EXPECT_EQ(x[4].regime, Regime::LogitC);
    EXPECT_EQ(x[4].c, 0.5);
  }
  // An empty list adds none of its regime; B without F pairs with nothing.
  EXPECT_EQ(sweep_settings({8}, {}, {1.0}, {}, {}).size(), 0u);
  EXPECT_EQ(sweep_settings({8}, {}, {}, {}, {0.25, 0.75}).size(), 2u);
}

}  // namespace
}  // namespace attnsparse::theory
