// Accumulators (histograms, bottom-k reservoirs, exact serialisation, merge) and the row
// plan (candidates, anchors, the --max-rows sampler).
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "analysis/accumulator.h"
#include "analysis/plan.h"
#include "core/error.h"

namespace attnsparse::analysis {
namespace {

TEST(Histogram, LinearQuantilesOfAUniformGrid) {
  Histogram h(0, 1, 10, false);
  for (int i = 0; i < 1000; ++i) h.add((i + 0.5) / 1000);
  EXPECT_EQ(h.total(), 1000);
  for (int i = 1; i <= 10; ++i) EXPECT_EQ(h.counts[i], 100);
  EXPECT_NEAR(h.quantile(0.5), 0.5, 1e-12);
  EXPECT_NEAR(h.quantile(0.25), 0.25, 1e-12);
  h.add(1.0);   // the upper edge belongs to the last bin
  h.add(-0.1);  // underflow
  h.add(1.5);   // overflow
  h.add(NAN);   // underflow
  EXPECT_EQ(h.counts[10], 101);
  EXPECT_EQ(h.counts[0], 2);
  EXPECT_EQ(h.counts[11], 1);
}

TEST(Histogram, LogBinsGiveMedianToBinResolution) {
  Histogram h(-3, 3, 300, true);
  // Median of {1, 2, ..., 999} is 500.
  for (int i = 1; i < 1000; ++i) h.add(double(i));
  const double m = h.quantile(0.5);
  EXPECT_NEAR(std::log10(m), std::log10(500.0), 6.0 / 300);  // within one bin
  h.add(0.0);  // zero goes to underflow on a log axis
  EXPECT_EQ(h.counts[0], 1);
}

TEST(Reservoir, KeepsTheSmallestKeysWhateverTheOrder) {
  Reservoir a, b, all;
  a.capacity = b.capacity = all.capacity = 5;
  for (uint64_t k = 0; k < 100; ++k) {
    const uint64_t key = mix64(k);
    SampledRow r{key, float(k), 0, 0};
    (k % 2 ? a : b).add(r);
    all.add(r);
  }
  a.merge(b);
  a.finish();
  all.finish();
  ASSERT_EQ(a.rows.size(), 5u);
  std::vector<uint64_t> keys;
  for (uint64_t k = 0; k < 100; ++k) keys.push_back(mix64(k));
  std::sort(keys.begin(), keys.end());
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(a.rows[i].key, keys[i]);
    EXPECT_EQ(all.rows[i].key, keys[i]);
    EXPECT_EQ(a.rows[i].recent_diff, all.rows[i].recent_diff);
  }
}

Accumulator sample_accumulator(int docs, int seed) {
  Accumulator acc(3, 2, 4);
  for (int d = 0; d < docs; ++d) {
    DocumentInfo info;
    info.id = "doc" + std::to_string(seed * 100 + d);
    info.dataset = d % 2 ? "a" : "b";
    info.half = d % 2;
    const int64_t slot = acc.begin_document(info);
    const auto groups = acc.groups_of(info);
    for (int l = 0; l < 3; ++l)
      for (int h = 0; h < 2; ++h)
        for (int t = 0; t < 5; ++t) {
          RowMetrics m;
          m.query = 10 + t;
          m.n_keys = 11 + t;
          m.width = {1, 2 + d, 3, 4};
          m.entropy = 0.1 * (seed + l + t);
          m.sink_mass = 0.01 * (h + t + 1);
          m.recency = {0.1, 0.2, 0.3, 0.4, 0.5};
          const auto v = metric_values(m);
          acc.doc_layer[slot][l].add(v);
          for (int g : groups) acc.group_head[g][l * 2 + h].add(v);
          acc.histograms[l][kHistSinkMass].add(m.sink_mass);
          acc.reservoirs[l].add({mix64(uint64_t(seed * 1000 + d * 100 + l * 10 + t)), float(t), 0.f, 0.f});
        }
    acc.doc_persistence[slot][1].overlap[2][1] += 0.5 + d;
    acc.doc_persistence[slot][1].pairs[2] += 1;
  }
  return acc;
}

TEST(Accumulator, SerialisesExactly) {
  const Accumulator a = sample_accumulator(3, 1);
  const Accumulator b = Accumulator::from_json(a.to_json());
  EXPECT_EQ(a.to_json().dump(), b.to_json().dump());
  // Through CBOR too (what the checkpoint uses).
  const auto bytes = nlohmann::json::to_cbor(a.to_json());
  EXPECT_EQ(Accumulator::from_json(nlohmann::json::from_cbor(bytes)).to_json().dump(), a.to_json().dump());
}

TEST(Accumulator, MergeEqualsSequentialAccumulation) {
  Accumulator first = sample_accumulator(2, 1);
  const Accumulator second = sample_accumulator(3, 2);
  first.merge(second);
  EXPECT_EQ(first.documents.size(), 5u);
  EXPECT_EQ(first.total_rows(), 5 * 3 * 2 * 5);
  // Groups: all, dataset:b, half:0, dataset:a, half:1 (first seen order).
  ASSERT_EQ(first.group_names.size(), 5u);
  const int all = first.group_index("all");
  int64_t rows = 0;
  for (const MetricSums& s : first.group_head[all]) rows += s.rows;
  EXPECT_EQ(rows, first.total_rows());
  // Group sums equal the sums of the per-document sums.
  double sink = 0;
  for (const auto& d : first.doc_layer)
    for (const MetricSums& s : d) sink += s.sum[kSinkMass];
  double sink_heads = 0;
  for (const MetricSums& s : first.group_head[all]) sink_heads += s.sum[kSinkMass];
  EXPECT_NEAR(sink, sink_heads, 1e-12);
  EXPECT_EQ(first.reservoirs[0].rows.size(), 4u);
  EXPECT_THROW(first.merge(Accumulator(2, 2, 4)), Error);
}

TEST(Accumulator, RejectsInconsistentState) {
  nlohmann::json j = sample_accumulator(2, 1).to_json();
  j["doc_layer"].erase(0);
  EXPECT_THROW(Accumulator::from_json(j), FormatError);
}

TEST(Plan, CandidatesAnchorsAndDecodeSplit) {
  AnalysisParams p;
  p.sampling.min_query = 16;
  p.sampling.stride = 4;
  DocumentPlan plan = plan_document(0, 100, 2, 3, p);
  EXPECT_EQ(plan.prefill_len, 100);
  ASSERT_EQ(plan.queries.size(), 21u);  // 16, 20, ..., 96
  EXPECT_EQ(plan.queries.front(), 16);
  EXPECT_EQ(plan.queries.back(), 96);
  EXPECT_EQ(plan.candidates(), 21 * 2 * 3);
  // Anchors: 16 evenly spaced in [64, 98].
  ASSERT_FALSE(plan.anchors.empty());
  EXPECT_EQ(plan.anchors.front(), 64);
  EXPECT_EQ(plan.anchors.back(), 98);

  p.sampling.rows = RowKind::Both;
  p.sampling.decode_tokens = 10;
  plan = plan_document(0, 100, 2, 3, p);
  EXPECT_EQ(plan.prefill_len, 90);
  EXPECT_EQ(plan.queries.size(), 19u + 10u);  // 16..88 by 4, then 90..99
  EXPECT_EQ(plan.queries[19], 90);
  p.sampling.rows = RowKind::Decode;
  plan = plan_document(0, 100, 2, 3, p);
  EXPECT_EQ(plan.queries.size(), 10u);
  // Too short for anchors.
  EXPECT_TRUE(plan_document(0, 60, 2, 3, AnalysisParams{}).anchors.empty());
}

TEST(RowSampler, ExactCountAndUniformInclusion) {
  AnalysisParams p;
  p.sampling.min_query = 0;
  const int docs = 5;
  std::map<int64_t, int> included;  // global candidate -> times chosen
  const int trials = 400;
  int64_t total = 0;
  for (int d = 0; d < docs; ++d) total += plan_document(d, 20 + d, 2, 2, p).candidates();
  for (int trial = 0; trial < trials; ++trial) {
    RowSampler s;
    s.total = total;
    s.target = 37;
    s.seed = uint64_t(trial) + 1;
    int64_t chosen = 0, base = 0;
    for (int d = 0; d < docs; ++d) {
      DocumentPlan plan = plan_document(d, 20 + d, 2, 2, p);
      s.apply(plan);
      chosen += plan.selected_rows;
      int64_t i = 0;
      for (int l = 0; l < 2; ++l)
        for (int h = 0; h < 2; ++h)
          for (size_t c = 0; c < plan.queries.size(); ++c, ++i)
            if (plan.selected(l, h, int64_t(c))) ++included[base + i];
      base += plan.candidates();
    }
    EXPECT_EQ(chosen, 37);
  }
  // Each candidate is kept with probability 37/total: binomial(400, p) counts.
  const double pr = 37.0 / double(total), mean = trials * pr, sd = std::sqrt(trials * pr * (1 - pr));
  double chi2 = 0;
  for (int64_t c = 0; c < total; ++c) {
    const double k = included.count(c) ? included[c] : 0;
    EXPECT_LT(std::abs(k - mean), 5 * sd) << "candidate " << c;
    chi2 += (k - mean) * (k - mean) / (mean * (1 - pr));
  }
  // chi-square with ~total degrees of freedom: mean total, sd sqrt(2 total).
  EXPECT_LT(std::abs(chi2 - double(total)), 5 * std::sqrt(2.0 * double(total)));
  // Keeping everything when the target exceeds the total.
  RowSampler all;
  all.total = total;
  all.target = total + 5;
  DocumentPlan plan = plan_document(0, 20, 2, 2, p);
  all.apply(plan);
  EXPECT_TRUE(plan.selected_bits.empty());
  EXPECT_EQ(plan.selected_rows, plan.candidates());
}

}  // namespace
}  // namespace attnsparse::analysis
