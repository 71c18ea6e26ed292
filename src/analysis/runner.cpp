#include "analysis/runner.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>

#include "analysis/collector.h"
#include "analysis/plan.h"
#include "analysis/row_dump.h"
#include "core/error.h"
#include "core/files.h"
#include "model/model_util.h"

namespace attnsparse::analysis {

namespace {

using json = nlohmann::json;
constexpr const char* kCheckpointFormat = "attnsparse.checkpoint/1";

struct Checkpoint {
  int64_t next_doc = 0;
  int64_t seen = 0, chosen = 0;  // RowSampler state
  int64_t dump_bytes = 0;
  Accumulator acc;
};

void write_checkpoint(const std::string& path, const std::string& fingerprint, int64_t next_doc,
                      const RowSampler& sampler, int64_t dump_bytes, const Accumulator& acc) {
  json j{{"format", kCheckpointFormat}, {"fingerprint", fingerprint}, {"next_doc", next_doc},
         {"sampler_seen", sampler.seen}, {"sampler_chosen", sampler.chosen}, {"dump_bytes", dump_bytes},
         {"accumulator", acc.to_json()}};
  const std::vector<uint8_t> bytes = json::to_cbor(j);
  write_file_atomic(path, bytes.data(), bytes.size());
}

Checkpoint read_checkpoint(const std::string& path, const std::string& fingerprint) {
  const std::string raw = read_input_file(path);  // a regular file of bounded size
  const std::vector<uint8_t> bytes(raw.begin(), raw.end());
  Checkpoint c;
  try {
    const json j = json::from_cbor(bytes);
    if (j.at("format") != kCheckpointFormat) fail_file(path, "not an attnsparse checkpoint");
    if (j.at("fingerprint") != fingerprint)
      fail_file(path,
                "the checkpoint belongs to a run with a different model, data or options; rerun "
                "with the same arguments, or without --resume to start over");
    c.next_doc = j.at("next_doc").get<int64_t>();
    c.seen = j.at("sampler_seen").get<int64_t>();
    c.chosen = j.at("sampler_chosen").get<int64_t>();
    c.dump_bytes = j.at("dump_bytes").get<int64_t>();
    c.acc = Accumulator::from_json(j.at("accumulator"));
  } catch (const json::exception& e) {
    fail_file(path, "damaged checkpoint ({})", e.what());
  } catch (const FormatError& e) {
    if (std::string(e.what()).starts_with(path)) throw;
    fail_file(path, "damaged checkpoint ({})", e.what());
  }
  return c;
}

}  // namespace

int64_t candidate_rows(const std::vector<RunDocument>& docs, int n_layers, int n_heads,
                       const AnalysisParams& params) {
  int64_t total = 0;
  for (size_t d = 0; d < docs.size(); ++d)
    total += plan_document(int64_t(d), int64_t(docs[d].tokens.size()), n_layers, n_heads, params).candidates();
  return total;
}

RunOutcome analyze_documents(RowSource& source, const std::vector<RunDocument>& docs,
                             const AnalysisParams& params, const RunControl& control) {
  validate(params);
  const auto start = std::chrono::steady_clock::now();
  const int L = source.n_layers(), H = source.n_heads();
  RowSampler sampler;
  sampler.total = candidate_rows(docs, L, H, params);
  sampler.target = params.sampling.max_rows > 0 ? params.sampling.max_rows : sampler.total;
  sampler.seed = hash_combine(params.sampling.seed, 0x5e1ec7);

  RunOutcome out;
  out.acc = Accumulator(L, H, params.verdict.reservoir);
  int64_t first_doc = 0, dump_bytes = 0;
  const bool have_checkpoint =
      !control.checkpoint_path.empty() && std::filesystem::exists(control.checkpoint_path);
  if (control.resume && have_checkpoint) {
    Checkpoint c = read_checkpoint(control.checkpoint_path, control.fingerprint);
    if (c.next_doc > int64_t(docs.size()) || c.acc.n_layers != L || c.acc.n_heads != H)
      fail_file(control.checkpoint_path, "the checkpoint does not fit this run");
    first_doc = c.next_doc;
    sampler.seen = c.seen;
    sampler.chosen = c.chosen;
    dump_bytes = c.dump_bytes;
    out.acc = std::move(c.acc);
    out.docs_resumed = first_doc;
  }
  std::unique_ptr<RowDumpFile> dump;
  if (!control.dump_path.empty()) dump = std::make_unique<RowDumpFile>(control.dump_path, dump_bytes, !control.checkpoint_path.empty());

  const int64_t rows_total = std::min(sampler.target, sampler.total) - sampler.chosen;
  RunProgress progress;
  progress.rows_total = rows_total;
  progress.n_docs = int64_t(docs.size());
  progress.docs_resumed = first_doc;
  auto report = [&](int64_t rows) {
    if (!control.progress) return;
    progress.rows_done = rows;
    progress.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    control.progress(progress);
  };

  for (int64_t d = first_doc; d < int64_t(docs.size()); ++d) {
    DocumentPlan plan = plan_document(d, int64_t(docs[d].tokens.size()), L, H, params);
    sampler.apply(plan);
    Accumulator doc_acc(L, H, params.verdict.reservoir);
    DocumentInfo info = docs[d].info;
    info.tokens = int64_t(docs[d].tokens.size());
    info.half = int(d % 2);
    info.prefill_rows = info.decode_rows = 0;
    const int64_t slot = doc_acc.begin_document(info);
    RowDumpSink sink;
    if (dump) sink = [&dump](const std::string& lines) { dump->write(lines); };
    DocumentCollector collector(plan, params, doc_acc, slot, sink);
    const int64_t before = out.rows_this_run;
    progress.doc = d;
    collector.on_progress = [&](int64_t rows) { report(before + rows); };
    if (plan.selected_rows > 0 || !plan.anchors.empty())
      source.run_document(docs[d].tokens, plan.prefill_len, collector);
    out.rows_this_run += collector.rows_done();
    out.acc.merge(doc_acc);
    if (dump) dump_bytes = dump->end_document();
    if (!control.checkpoint_path.empty()) {
      write_checkpoint(control.checkpoint_path, control.fingerprint, d + 1, sampler, dump_bytes, out.acc);
      if (control.after_checkpoint) control.after_checkpoint(d);
    }
  }
  if (dump) dump->finish();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  progress.finished = true;
  report(out.rows_this_run);
  return out;
}

}  // namespace attnsparse::analysis
