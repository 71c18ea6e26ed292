// The one list of instruction-set levels (core/cpu.h): names, ordering, the override.
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/cpu.h"
#include "core/error.h"

using namespace attnsparse;

TEST(CpuLevel, NamesRoundTripAndAreOrdered) {
  for (size_t i = 0; i < cpu::kLevelNames.size(); ++i) {
    const auto l = cpu::parse_level(cpu::kLevelNames[i]);
    ASSERT_TRUE(l.has_value()) << cpu::kLevelNames[i];
    EXPECT_EQ(static_cast<size_t>(*l), i);
    EXPECT_STREQ(cpu::name(*l), cpu::kLevelNames[i]);
  }
  EXPECT_EQ(cpu::parse_level("sse2"), cpu::Level::Portable);
  EXPECT_FALSE(cpu::parse_level("avx9000").has_value());
  EXPECT_FALSE(cpu::parse_level("").has_value());
}

TEST(CpuLevel, OverrideLowersButNeverRaises) {
  const cpu::Level top = cpu::supported();
  EXPECT_EQ(cpu::active(), top);  // the test environment sets no ATTNSPARSE_SIMD
  {
    cpu::ScopedLevel portable(cpu::Level::Portable);
    EXPECT_EQ(cpu::active(), cpu::Level::Portable);
    EXPECT_FALSE(cpu::active_at_least(cpu::Level::Avx2));
    {
      cpu::ScopedLevel highest(cpu::Level::Avx512Bf16);
      EXPECT_EQ(cpu::active(), top);  // clamped to what the CPU runs
    }
    EXPECT_EQ(cpu::active(), cpu::Level::Portable);
  }
  EXPECT_EQ(cpu::active(), top);
  cpu::set_override(cpu::Level::Portable);
  EXPECT_EQ(cpu::active(), cpu::Level::Portable);
  cpu::set_override(std::nullopt);
  EXPECT_EQ(cpu::active(), top);
}

TEST(CpuLevel, AnUnknownEnvironmentNameIsAUsageError) {
  setenv("ATTNSPARSE_SIMD", "sse9", 1);
  try {
    cpu::set_override(std::nullopt);  // re-reads the environment
    ADD_FAILURE() << "accepted ATTNSPARSE_SIMD=sse9";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("ATTNSPARSE_SIMD=sse9"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("avx512vnni"), std::string::npos) << e.what();
  }
  setenv("ATTNSPARSE_SIMD", "avx2", 1);
  cpu::set_override(std::nullopt);
  EXPECT_LE(static_cast<int>(cpu::active()), static_cast<int>(cpu::Level::Avx2));
  unsetenv("ATTNSPARSE_SIMD");
  cpu::set_override(std::nullopt);
  EXPECT_EQ(cpu::active(), cpu::supported());
}
