// Overhead of `analyze`'s statistics over plain prefill, measured in the same process:
// for each context length n, the median wall time of R prefills of n random tokens
//   plain     — a KV cache for the document, and Model::forward with no hooks (no
//               logits); the cache is made and freed inside the timing, as in the other
//               two (before 2026-12-07 23:30 UTC it was made outside, which charged its
//               page faults to the analysed and observed passes alone: ~1 point at 4K),
//   observed  — the analysis collector attached, but no row analysed (the observer path),
//   analysed  — every row from t = 16 analysed (the default), persistence included,
// and the ratios analysed / plain and observed / plain, with rows per second and the
// tokens per second of wall time of plain and analysed prefill. Times are
// process CPU seconds (all threads; robust when other work shares the machine) with the
// wall-clock ratio beside them. One untimed plain pass comes first (the first pass of a
// process was 7-10% slower). Each repetition runs the three passes in a rotated order;
// `paired a/p` is the median over repetitions of that repetition's analysed / plain, less
// disturbed by the machine's drift than the ratio of the medians.
//
//   analysis_overhead MODEL.gguf [n ...] [--reps R] [--threads T] [--stride S] [--anchors A]
//
// --anchors A: persistence anchors of the analysed pass (default 16, analyze's default;
// 0 = no persistence), to see the persistence statistics' share.
//
// With ATTNSPARSE_PROFILE=1 in the environment, each pass also prints the forward pass's
// wall time per op (matmul, attention, ...): the statistics show up inside `attention`.
//
// Example (the numbers in bench/results/analysis.md):
//   build/attnsparse synth --preset tinyllama-1.1b --layers 2 --out /tmp/tl2.gguf
//   build/analysis_overhead /tmp/tl2.gguf 1024 2048 4096 --reps 3 --threads 2
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "analysis/runner.h"
#include "core/error.h"
#include "model/model.h"
#include "ops/attention.h"
#include "model/profile.h"

using namespace attnsparse;
using namespace attnsparse::analysis;

namespace {

struct Clock {
  double wall, cpu;
  static Clock now() {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return {std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(),
            double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec)};
  }
  Clock since() const {
    const Clock t = now();
    return {t.wall - wall, t.cpu - cpu};
  }
};

// With ATTNSPARSE_PROFILE=1: the forward pass's wall time per op since the last call.
void print_profile(const char* pass) {
  if (!profile::enabled()) return;
  std::printf("  [%s] %s\n", pass, profile::report().c_str());
  profile::reset();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) {
      std::fprintf(stderr, "usage: analysis_overhead MODEL.gguf [n ...] [--reps R] [--threads T] [--stride S] [--anchors A]\n");
      return 1;
    }
    std::string model_path = argv[1];
    std::vector<int64_t> lengths;
    int reps = 3, threads = 0;
    int64_t stride = 1;
    int anchors = -1;
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
      else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
      else if (a == "--stride" && i + 1 < argc) stride = std::atoll(argv[++i]);
      else if (a == "--anchors" && i + 1 < argc) anchors = std::atoi(argv[++i]);
      else lengths.push_back(std::atoll(a.c_str()));
    }
    if (lengths.empty()) lengths = {1024, 2048, 4096};
    if (threads > 0) omp_set_num_threads(threads);
    const auto model = Model::load(model_path);
    const ModelConfig& c = model->config();
    std::printf("model %s: %s, %lld layers, %lld heads (%lld KV), n_embd %lld; threads %d; attention %s\n",
                model_path.c_str(), c.arch.c_str(), (long long)c.n_layer, (long long)c.n_head,
                (long long)c.n_kv_head, (long long)c.n_embd, omp_get_max_threads(), ops::attention_isa());
    std::printf("%6s %10s %10s %10s %9s %9s %10s %10s %12s %12s %11s %11s\n", "n", "plain cpu", "obs cpu", "ana cpu",
                "obs/plain", "ana/plain", "paired a/p", "wall a/p", "rows", "rows/cpu-s", "plain tok/s", "ana tok/s");
    ModelRowSource source(*model);
    for (const int64_t n : lengths) {
      std::mt19937 rng{static_cast<uint32_t>(n)};
      RunDocument doc;
      doc.info.id = "random";
      doc.info.dataset = "random";
      for (int64_t i = 0; i < n; ++i) doc.tokens.push_back(int32_t(3 + rng() % uint32_t(c.n_vocab - 3)));
      doc.info.original_tokens = n;
      const std::vector<RunDocument> docs = {doc};

      AnalysisParams analysed;
      analysed.sampling.stride = stride;
      analysed.verdict.bootstrap_resamples = 10;
      if (anchors >= 0) analysed.persistence.anchors = anchors;
      AnalysisParams observed = analysed;
      observed.sampling.min_query = n - 1;  // one query position only ...
      observed.persistence.anchors = 0;  // ... and no persistence
      std::vector<double> t_plain, t_observed, t_analysed, w_plain, w_analysed;
      int64_t rows = 0;
      auto run_plain = [&] {
        // The cache is made and freed inside the timing, as analyze_documents does.
        const Clock t0 = Clock::now();
        {
          KVCache cache = model->make_cache(n);
          ForwardOptions opts;
          opts.no_logits = true;
          std::vector<float> logits;
          model->forward(doc.tokens, cache, opts, logits);
        }
        const Clock d = t0.since();
        t_plain.push_back(d.cpu);
        w_plain.push_back(d.wall);
        print_profile("plain");
      };
      auto run_observed = [&] {
        // analyze_documents with no rows still runs the model with the collector's observer.
        const Clock t0 = Clock::now();
        analyze_documents(source, docs, observed, RunControl{});
        t_observed.push_back(t0.since().cpu);
        print_profile("observed");
      };
      auto run_analysed = [&] {
        const Clock t0 = Clock::now();
        rows = analyze_documents(source, docs, analysed, RunControl{}).rows_this_run;
        const Clock d = t0.since();
        t_analysed.push_back(d.cpu);
        w_analysed.push_back(d.wall);
        print_profile("analysed");
      };
      // The machine's speed drifts (shared hosts): each repetition runs the three passes in
      // a rotated order, and the ratio of each repetition's analysed and plain passes (run
      // within seconds of each other) is kept besides the ratio of the medians.
      std::vector<double> paired;
      // One untimed plain pass first: the first pass of a process also pays for faulting
      // in the weights and the allocator's first pages.
      run_plain();
      t_plain.clear();
      w_plain.clear();
      for (int r = 0; r < reps; ++r) {
        for (int k = 0; k < 3; ++k) {
          switch ((r + k) % 3) {
            case 0: run_plain(); break;
            case 1: run_observed(); break;
            default: run_analysed(); break;
          }
        }
        paired.push_back(t_analysed.back() / t_plain.back());
      }
      const double p = median(t_plain), o = median(t_observed), a = median(t_analysed);
      // Tokens per second of wall time (medians): plain prefill and the whole analysis of the
      // same document (report included).
      std::printf("%6lld %10.3f %10.3f %10.3f %9.3f %9.3f %10.3f %10.3f %12lld %12.0f %11.1f %11.1f\n", (long long)n, p,
                  o, a, o / p, a / p, median(paired), median(w_analysed) / median(w_plain), (long long)rows,
                  double(rows) / a, double(n) / median(w_plain), double(n) / median(w_analysed));
      std::printf("%6s paired a/p of each repetition:", "");
      for (double x : paired) std::printf(" %.3f", x);
      std::printf("\n");
      std::fflush(stdout);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "analysis_overhead: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
