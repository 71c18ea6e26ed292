// Sweeps in policy specs: lists, geometric and arithmetic ranges, the swept field's name,
// and errors that name the spec and the field.
#include <gtest/gtest.h>

#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "policies/evaluate.h"
#include "policies/sweep.h"

namespace attnsparse::policies {
namespace {

std::vector<std::string> texts(const std::string& spec) {
  std::vector<std::string> out;
  for (const SweepItem& i : expand_sweep(spec)) out.push_back(i.text);
  return out;
}

std::string field(const std::string& spec) {
  const auto items = expand_sweep(spec);
  EXPECT_TRUE(items.at(0).sweep.has_value()) << spec;
  return items.at(0).sweep ? items.at(0).sweep->field : "";
}

using V = std::vector<std::string>;

TEST(PolicySweep, ListsAndRangesExpandToOneSpecPerValue) {
  EXPECT_EQ(texts("topk={8,16,32,64}"), (V{"topk=8", "topk=16", "topk=32", "topk=64"}));
  EXPECT_EQ(texts("h2o=budget:{64,128,256,512},recent:16"),
            (V{"h2o=budget:64,recent:16", "h2o=budget:128,recent:16", "h2o=budget:256,recent:16",
               "h2o=budget:512,recent:16"}));
  // Geometric: 32 * 2^i up to and including the end.
  EXPECT_EQ(texts("sink=4,window=32..1024*2"),
            (V{"sink=4,window=32", "sink=4,window=64", "sink=4,window=128", "sink=4,window=256", "sink=4,window=512",
               "sink=4,window=1024"}));
  // The end need not be reached exactly: the last value <= the end.
  EXPECT_EQ(texts("window=10..100*3"), (V{"window=10", "window=30", "window=90"}));
  // Integer ends with a real factor: 3, 4.5, 6.75 rounded (half away from zero), 10.125 > 10.
  EXPECT_EQ(texts("window=3..10*1.5"), (V{"window=3", "window=5", "window=7"}));
  // Arithmetic.
  EXPECT_EQ(texts("quest=page:16,pages:2..16+2"),
            (V{"quest=page:16,pages:2", "quest=page:16,pages:4", "quest=page:16,pages:6", "quest=page:16,pages:8",
               "quest=page:16,pages:10", "quest=page:16,pages:12", "quest=page:16,pages:14", "quest=page:16,pages:16"}));
  EXPECT_EQ(texts("topp=0.5..0.9+0.1"), (V{"topp=0.5", "topp=0.6", "topp=0.7", "topp=0.8", "topp=0.9"}));
  EXPECT_EQ(texts("dyntopk=alpha:{0.5,1,2},C:0.5"),
            (V{"dyntopk=alpha:0.5,C:0.5", "dyntopk=alpha:1,C:0.5", "dyntopk=alpha:2,C:0.5"}));
  EXPECT_EQ(texts("dilated=8:{1,2,4}"), (V{"dilated=8:1", "dilated=8:2", "dilated=8:4"}));
  // Inside a per-layer map.
  EXPECT_EQ(texts("L0-1:dense;default:topk={8,16}"), (V{"L0-1:dense;default:topk=8", "L0-1:dense;default:topk=16"}));
  // No sweep: the text as it is; JSON map paths are never expanded.
  EXPECT_EQ(texts("sink=4,window=60"), (V{"sink=4,window=60"}));
  EXPECT_EQ(texts("@../maps/x{1}.json"), (V{"@../maps/x{1}.json"}));
  EXPECT_EQ(texts("../maps/a..b.json"), (V{"../maps/a..b.json"}));
}

TEST(PolicySweep, TheSweptFieldHasTheParsersName) {
  EXPECT_EQ(field("topk={8,16}"), "k");
  EXPECT_EQ(field("topp={0.8,0.9}"), "p");
  EXPECT_EQ(field("window={8,16}"), "window");
  EXPECT_EQ(field("sink={0,4},window=64"), "sink");
  EXPECT_EQ(field("sink=4,window=32..1024*2"), "window");
  EXPECT_EQ(field("strided={4,8}"), "stride");
  EXPECT_EQ(field("block={4,8}"), "block");
  EXPECT_EQ(field("dilated={4,8}:2"), "dilated");
  EXPECT_EQ(field("dilated=8:{1,2}"), "rate");
  EXPECT_EQ(field("h2o=budget:{64,128},recent:16"), "budget");
  EXPECT_EQ(field("h2o=budget:128,recent:{8,16}"), "recent");
  EXPECT_EQ(field("snapkv=budget:64,window:16,pool:{1,3,5}"), "pool");
  EXPECT_EQ(field("bigbird=global:4,window:{16,32},random:8"), "window");
  EXPECT_EQ(field("L2H0-3:quest=page:{8,16},pages:4;dense"), "page");
  const auto items = expand_sweep("tova=budget:{64,128}");
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[1].sweep->spec, "tova=budget:{64,128}");
  EXPECT_EQ(items[1].sweep->value, "128");
  EXPECT_EQ(items[1].sweep->number, 128.0);
  EXPECT_EQ(items[1].sweep->index, 1u);
}

TEST(PolicySweep, MalformedSweepsNameTheSpec) {
  struct Case {
    const char* spec;
    const char* needle;
  };
  const Case cases[] = {
      {"topk={8,16", "closing"},
      {"topk=8}", "opening"},
      {"topk={}", "empty value"},
      {"topk={8,,16}", "empty value"},
      {"topk={8,8}", "listed twice"},
      {"topk={8,{16}}", "nested"},
      {"window=32..1024", "needs a step"},
      {"window=1024..32*2", "start > end"},
      {"window=0..64*2", "start above 0"},
      {"window=8..64*1", "factor > 1"},
      {"window=8..64+0", "step > 0"},
      {"window=a..64*2", "not a non-negative number"},
      {"window=-8..64*2", "not a non-negative number"},
      {"window=8..1e99*2", "not a non-negative number"},
      {"window=8..99999999999999999999*2", "too large"},
      {"window=1..100000*1.01", "more than 64 values"},
      {"window=1..1000+1", "more than 64 values"},
      {"h2o=budget:{64,128},recent:{8,16}", "more than one swept field"},
      {"{window=8,topk=8}", "value of a field"},
  };
  for (const Case& c : cases) {
    try {
      expand_sweep(c.spec);
      ADD_FAILURE() << "accepted " << c.spec;
    } catch (const UsageError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(std::string("policy '") + c.spec + "'"), std::string::npos) << m;
      EXPECT_NE(m.find(c.needle), std::string::npos) << c.spec << ": " << m;
    }
  }
}

TEST(PolicySweep, BadValuesNameTheSpecTheFieldAndTheValue) {
  struct Case {
    const char* spec;
    const char* needle;
  };
  const Case cases[] = {
      {"topk={0,8}", "policy 'topk={0,8}', k = 0: k must be >= 1"},
      {"h2o=budget:{8,16},recent:8", "policy 'h2o=budget:{8,16},recent:8', budget = 8: recent must be smaller than budget"},
      {"topp=0.5..1.5+0.5", "p = 1.5: p must be in (0, 1]"},
      {"window={8,x}", "window = x: window 'x' is not a non-negative integer"},
      {"quest=page:{16,9999999999},pages:2", "page = 9999999999: page must be at most 2147483647"},
  };
  for (const Case& c : cases) {
    try {
      parse_eval_policies(c.spec);
      ADD_FAILURE() << "accepted " << c.spec;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(c.needle), std::string::npos) << e.what();
    }
  }
  // Good values parse into their maps, with the sweep attached.
  const auto p = parse_eval_policies("sink=4,window=16..64*2");
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[2].map.spec(), "sink=4,window=64");
  ASSERT_TRUE(p[2].sweep.has_value());
  EXPECT_EQ(p[2].sweep->field, "window");
  EXPECT_FALSE(parse_eval_policies("window=8")[0].sweep.has_value());
}

}  // namespace
}  // namespace attnsparse::policies

namespace attnsparse::policies {
namespace {

// Mutations of valid specs (characters replaced, inserted, deleted; pieces of sweep
// syntax spliced in): parsing either succeeds or throws UsageError with the text in the
// message, never anything else, and never more than 64 values per sweep.
TEST(PolicySweep, MutatedSpecsAreParsedOrRejectedCleanly) {
  const std::vector<std::string> seeds = {"topk={8,16,32,64}", "h2o=budget:{64,128},recent:16",
                                          "sink=4,window=32..1024*2", "quest=page:16,pages:2..16+2",
                                          "L0-1:dense;default:topk={8,16}", "dilated=8:{1,2,4}", "topp=0.5..0.9+0.1"};
  const std::string alphabet = "{},.:;=*+-0123456789eLHx ";
  std::mt19937 rng(3);
  int accepted = 0, rejected = 0;
  for (int it = 0; it < 20000; ++it) {
    std::string s = seeds[rng() % seeds.size()];
    for (int m = 0, n = 1 + int(rng() % 4); m < n; ++m) {
      const size_t at = s.empty() ? 0 : rng() % (s.size() + 1);
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 4) {
        case 0: if (at < s.size()) s[at] = c; break;
        case 1: s.insert(s.begin() + at, c); break;
        case 2: if (at < s.size()) s.erase(at, 1); break;
        default: s.insert(at, rng() % 2 ? ".." : "{"); break;
      }
    }
    try {
      const auto items = parse_eval_policies(s);
      EXPECT_LE(items.size(), kMaxSweepValues) << s;
      ++accepted;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("policy"), std::string::npos) << s << ": " << e.what();
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << s << ": not a UsageError: " << e.what();
    }
  }
  EXPECT_GT(accepted, 100);
  EXPECT_GT(rejected, 100);
}

TEST(Sweep, EvalPolicyTextsExpandInOrderOrGiveTheDefaultSet) {
  // Several --policy texts: each expanded where it stands, in the order given.
  const auto p = eval_policies_from({"topk={8,16}", "sink=4,window=32", "window=16..32*2"});
  const char* want[] = {"topk=8", "topk=16", "sink=4,window=32", "window=16", "window=32"};
  ASSERT_EQ(p.size(), std::size(want));
  for (size_t i = 0; i < p.size(); ++i) EXPECT_EQ(p[i].map.spec(), want[i]) << i;
  EXPECT_TRUE(p[0].sweep.has_value());
  EXPECT_FALSE(p[2].sweep.has_value());
  // None: the default set (docs/policies.md: eleven policies at budgets of 64 keys).
  const auto d = eval_policies_from({});
  ASSERT_EQ(d.size(), 11u);
  EXPECT_EQ(d[0].map.spec(), "window=64");
  EXPECT_EQ(d[4].map.spec(), "topk=64");
  for (const auto& e : d) EXPECT_FALSE(e.sweep.has_value());
  // A bad text fails as parse_eval_policies does, naming it.
  try {
    eval_policies_from({"window=8", "topk=0"});
    ADD_FAILURE() << "accepted topk=0";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("k must be >= 1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace attnsparse::policies
