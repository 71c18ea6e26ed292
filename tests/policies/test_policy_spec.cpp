// Policy spec strings and per-layer/per-head maps: parsing, canonical form, errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "policies/policy.h"
#include "policies/policy_map.h"

namespace attnsparse::policies {
namespace {

TEST(PolicySpec, EveryDocumentedFormParses) {
  struct Case {
    const char* text;
    Kind kind;
  };
  const Case cases[] = {
      {"dense", Kind::Dense},
      {"window=64", Kind::Window},
      {"sink=4,window=256", Kind::SinkWindow},
      {"dilated=32:4", Kind::Dilated},
      {"strided=16", Kind::Strided},
      {"block=64", Kind::Block},
      {"bigbird=global:2,window:32,random:8,seed:7", Kind::BigBird},
      {"topk=32", Kind::TopK},
      {"dyntopk=alpha:2.5,C:0.5", Kind::DynTopK},
      {"topp=0.9", Kind::TopP},
      {"h2o=budget:256,recent:32", Kind::H2O},
      {"tova=budget:128", Kind::Tova},
      {"snapkv=budget:256,window:16,pool:5", Kind::SnapKV},
      {"quest=page:16,pages:8", Kind::Quest},
  };
  for (const auto& c : cases) {
    const Policy p = Policy::parse(c.text);
    EXPECT_EQ(p.kind, c.kind) << c.text;
    EXPECT_EQ(Policy::parse(p.spec()), p) << c.text << " -> " << p.spec();
  }
  const Policy s = Policy::parse("sink=4,window=256");
  EXPECT_EQ(s.sink, 4);
  EXPECT_EQ(s.window, 256);
  const Policy d = Policy::parse("dilated=32:4");
  EXPECT_EQ(d.window, 32);
  EXPECT_EQ(d.rate, 4);
  const Policy b = Policy::parse("bigbird=global:2,window:32,random:8,seed:7");
  EXPECT_EQ(b.sink, 2);
  EXPECT_EQ(b.window, 32);
  EXPECT_EQ(b.random, 8);
  EXPECT_EQ(b.seed, 7u);
  const Policy dy = Policy::parse("dyntopk=alpha:2.5,C:0.5");
  EXPECT_DOUBLE_EQ(dy.alpha, 2.5);
  EXPECT_DOUBLE_EQ(dy.exponent, 0.5);
  const Policy h = Policy::parse("h2o=budget:256,recent:32");
  EXPECT_EQ(h.budget, 256);
  EXPECT_EQ(h.recent, 32);
  const Policy sn = Policy::parse("snapkv=budget:256,window:16,pool:5");
  EXPECT_EQ(sn.pool, 5);
  const Policy qu = Policy::parse("quest=page:16,pages:8");
  EXPECT_EQ(qu.page, 16);
  EXPECT_EQ(qu.pages, 8);
}

TEST(PolicySpec, DynamicTopKFollowsTheFormula) {
  const Policy p = Policy::parse("dyntopk=alpha:2,C:0.5");
  EXPECT_EQ(p.keep_count(100), 20);   // ceil(2 * 10)
  EXPECT_EQ(p.keep_count(101), 21);   // ceil(2 * 10.05)
  EXPECT_EQ(p.keep_count(3), 3);      // never more than n
  EXPECT_EQ(Policy::parse("topk=8").keep_count(5), 5);
}

TEST(PolicySpec, BadSpecsNameTheProblem) {
  const char* bad[] = {"", "windo=3", "window", "window=", "window=0", "window=-3", "window=3x",
                       "sink=4", "sink=4,win=3", "dilated=4", "dilated=4:0", "topk=0",
                       "topp=0", "topp=1.5", "dyntopk=alpha:1", "dyntopk=alpha:1,C:2",
                       "h2o=budget:10,recent:10", "h2o=budget:10", "snapkv=budget:8,window:8",
                       "quest=page:16", "bigbird=global:1,window:4", "dense=3",
                       "tova=budget:8,recent:2", "h2o=budget:10,budget:11,recent:2"};
  for (const char* text : bad) {
    try {
      Policy::parse(text);
      ADD_FAILURE() << "accepted '" << text << "'";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("policy '"), std::string::npos) << e.what();
    }
  }
}

TEST(PolicySpec, MayNeedMatchesTheSetsOfLaterQueries) {
  // A key may leave the cache exactly when no later query's set contains it.
  for (const char* text : {"window=5", "sink=2,window=4", "dilated=3:4", "block=6", "strided=3"}) {
    const Policy p = Policy::parse(text);
    const ops::KeySet ks = p.positional_keys();
    for (int64_t next = 0; next < 40; ++next)
      for (int64_t pos = 0; pos < next; ++pos) {
        bool later = false;
        for (int64_t t = next; t < next + 60; ++t) later |= ks.contains(0, 0, t, pos, pos);
        EXPECT_EQ(p.may_need(pos, next), later) << text << " pos " << pos << " next " << next;
      }
  }
}

TEST(PolicyMap, RulesSelectorsAndDefault) {
  const PolicyMap m = PolicyMap::parse("L0-1:window=8;H2:topk=4;L3H0,1:block=16;default:dense");
  EXPECT_EQ(m.at(0, 2).kind, Kind::Window);  // first match wins
  EXPECT_EQ(m.at(1, 0).kind, Kind::Window);
  EXPECT_EQ(m.at(2, 2).kind, Kind::TopK);
  EXPECT_EQ(m.at(3, 1).kind, Kind::Block);
  EXPECT_EQ(m.at(3, 3).kind, Kind::Dense);
  EXPECT_EQ(m.at(2, 0).kind, Kind::Dense);
  // Canonical text round-trips.
  const PolicyMap again = PolicyMap::parse(m.spec());
  for (int l = 0; l < 4; ++l)
    for (int h = 0; h < 4; ++h) EXPECT_EQ(again.at(l, h), m.at(l, h));
  // A bare policy is the default; policies with ':' are not mistaken for selectors.
  EXPECT_EQ(PolicyMap::parse("dilated=4:2").at(5, 5).kind, Kind::Dilated);
  EXPECT_EQ(PolicyMap::parse("L1:dilated=4:2;bigbird=global:1,window:4,random:2").at(0, 0).kind, Kind::BigBird);
}

TEST(PolicyMap, JsonFile) {
  const std::string path = ::testing::TempDir() + "/policy_map_test_" + std::to_string(::getpid()) + ".json";
  {
    std::ofstream out(path);
    out << R"({"default": "window=32", "rules": [{"layers": "0", "policy": "dense"},
              {"layers": [1, 2], "heads": "1-2", "policy": "topk=4"}]})";
  }
  const PolicyMap m = PolicyMap::parse(path);
  EXPECT_EQ(m.at(0, 3).kind, Kind::Dense);
  EXPECT_EQ(m.at(2, 1).kind, Kind::TopK);
  EXPECT_EQ(m.at(2, 0).kind, Kind::Window);
  EXPECT_EQ(PolicyMap::parse("@" + path).at(1, 2).kind, Kind::TopK);
  {
    std::ofstream out(path);
    out << R"({"default": "window=32", "rulez": []})";
  }
  EXPECT_THROW(PolicyMap::parse(path), FormatError);
  {
    std::ofstream out(path);
    out << R"({"rules": [{"layers": "0", "policy": "window=0"}]})";
  }
  try {
    PolicyMap::parse(path);
    ADD_FAILURE();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
  std::filesystem::remove(path);
  EXPECT_THROW(PolicyMap::parse("/nonexistent/map.json"), FormatError);
}

TEST(PolicyMap, ValidationRules) {
  EXPECT_THROW(PolicyMap::parse("L4:window=3").validate(4, 8), UsageError);   // no layer 4
  EXPECT_THROW(PolicyMap::parse("H8:window=3").validate(4, 8), UsageError);   // no head 8
  EXPECT_NO_THROW(PolicyMap::parse("L3H7:window=3").validate(4, 8));
  // Evicting policies: whole layers, every layer, one budget.
  EXPECT_NO_THROW(PolicyMap::parse("L0:tova=budget:64;h2o=budget:64,recent:8").validate(4, 8));
  EXPECT_THROW(PolicyMap::parse("L0:h2o=budget:64,recent:8").validate(4, 8), UsageError);
  EXPECT_THROW(PolicyMap::parse("H0:h2o=budget:64,recent:8;tova=budget:64").validate(4, 8), UsageError);
  EXPECT_THROW(PolicyMap::parse("L0:tova=budget:32;tova=budget:64").validate(4, 8), UsageError);
  EXPECT_THROW(PolicyMap::parse("window=3;window=4"), UsageError);
  EXPECT_THROW(PolicyMap::parse("L0-x:window=3"), UsageError);
  EXPECT_THROW(PolicyMap::parse("L3-1:window=3"), UsageError);
}

}  // namespace
}  // namespace attnsparse::policies

namespace attnsparse::policies {
namespace {

// Fuzzing found these read as negative numbers or overflowing later arithmetic: every
// size or position parameter is checked against [min, 2^31 - 1] (cache positions are
// int32), the seed against uint64, and the message names the spec and the field.
TEST(PolicySpec, OutOfRangeIntegersAreRejectedNamingSpecAndField) {
  struct Case {
    const char* spec;
    const char* needle;
  };
  const Case cases[] = {
      {"topk=9999999999999999999", "k must be at most 2147483647 (got 9999999999999999999)"},
      {"topk=99999999999999999999999", "k must be at most 2147483647"},
      {"dilated=1000000000000:1000000000000", "dilated window must be at most 2147483647"},
      {"dilated=4:1000000000000", "dilation rate must be at most 2147483647"},
      {"quest=page:9223372036854775807,pages:1", "page must be at most 2147483647"},
      {"sink=9223372036854775807,window=1", "sink must be at most 2147483647"},
      {"window=2147483648", "window must be at most 2147483647"},
      {"h2o=budget:18446744073709551616,recent:1", "budget must be at most 2147483647"},
      {"bigbird=global:1,window:4,random:2,seed:18446744073709551616", "seed '18446744073709551616' is out of range"},
  };
  for (const Case& c : cases) {
    try {
      Policy::parse(c.spec);
      ADD_FAILURE() << "accepted " << c.spec;
    } catch (const UsageError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(std::string("policy '") + c.spec + "'"), std::string::npos) << m;
      EXPECT_NE(m.find(c.needle), std::string::npos) << m;
    }
  }
  // The largest values are accepted and kept exactly.
  EXPECT_EQ(Policy::parse("window=2147483647").window, 2147483647);
  EXPECT_EQ(Policy::parse("bigbird=global:1,window:4,random:2,seed:18446744073709551615").seed,
            18446744073709551615ull);
  const Policy d = Policy::parse("dilated=2147483647:2147483647");
  // (2^31 - 1) * (2^31 - 2) fits int64: a key is needed while within the span.
  EXPECT_TRUE(d.may_need(0, 2147483647));
  EXPECT_TRUE(d.may_need(5, 4611686011984936967));  // distance (2^31-1)*(2^31-2): the last m
  EXPECT_FALSE(d.may_need(5, 4611686011984936968));
}

}  // namespace
}  // namespace attnsparse::policies
