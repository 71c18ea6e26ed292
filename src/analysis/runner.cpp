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
#include "io/json_file.h"
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
    fail_file(path, "damaged checkpoint ({})", json_error_text(e));
  } catch (const FormatError& e) {
    if (std::string(e.what()).starts_with(path)) throw;
    fail_file(path, "damaged checkpoint ({})", e.what());
  }
  return c;
}

// One document's statistics (its own accumulator, slot 0) and its rows.
Accumulator analyze_one(RowSource& source, const RunDocument& doc, const DocumentPlan& plan,
                        const AnalysisParams& params, const RowDumpSink& sink, int64_t& rows,
                        const std::function<void(int64_t)>& on_progress) {
  Accumulator doc_acc(source.n_layers(), source.n_heads(), params.verdict.reservoir);
  DocumentInfo info = doc.info;
  info.tokens = int64_t(doc.tokens.size());
  info.half = int(plan.doc % 2);
  info.prefill_rows = info.decode_rows = 0;
  const int64_t slot = doc_acc.begin_document(info);
  DocumentCollector collector(plan, params, doc_acc, slot, sink, source.layer_kinds());
  collector.on_progress = on_progress;
  if (plan.selected_rows > 0 || !plan.anchors.empty())
    source.run_document(doc.tokens, plan.prefill_len, collector);
  rows = collector.rows_done();
  return doc_acc;
}

}  // namespace

int64_t candidate_rows(const std::vector<RunDocument>& docs, int n_layers, int n_heads,
                       const AnalysisParams& params) {
  int64_t total = 0;
  for (size_t d = 0; d < docs.size(); ++d)
    total += plan_document(int64_t(d), int64_t(docs[d].tokens.size()), n_layers, n_heads, params).candidates();
  return total;
}

namespace {

std::vector<uint8_t> cbor_of(const json& j) { return json::to_cbor(j); }

// RunControl::comm with several ranks: rounds of size() documents, document d on rank
// d % size(); rank 0 merges the round's per-document accumulators in document order (the
// order one process merges them in, so the sums are bit-identical) and writes the dump and
// the checkpoint (the same file one process writes, so either can resume the other).
RunOutcome analyze_sharded(RowSource& source, const std::vector<RunDocument>& docs,
                           const AnalysisParams& params, const RunControl& control) {
  ShardComm& comm = *control.comm;
  const int R = comm.rank(), N = comm.size();
  const bool root = R == 0;
  const auto start = std::chrono::steady_clock::now();
  const int L = source.n_layers(), H = source.n_heads();
  const int64_t n_docs = int64_t(docs.size());
  RowSampler sampler;
  RunOutcome out;
  out.ranks = N;
  out.acc = Accumulator(L, H, params.verdict.reservoir);
  int64_t first_doc = 0, dump_bytes = 0;
  std::unique_ptr<RowDumpFile> dump;
  // The sampler is two counters advanced document by document: every rank replays it.
  auto replay = [&](RowSampler& smp, int64_t until) {
    for (int64_t d = 0; d < until; ++d) {
      DocumentPlan plan = plan_document(d, int64_t(docs[d].tokens.size()), L, H, params);
      smp.apply(plan);
    }
  };

  // Set-up on rank 0 (the checkpoint, the dump file), agreed by all.
  ShardComm::Failure failure;
  Checkpoint c;
  try {
    validate(params);
    sampler.total = candidate_rows(docs, L, H, params);
    sampler.target = params.sampling.max_rows > 0 ? params.sampling.max_rows : sampler.total;
    sampler.seed = hash_combine(params.sampling.seed, 0x5e1ec7);
    if (root) {
      const bool have_checkpoint =
          !control.checkpoint_path.empty() && std::filesystem::exists(control.checkpoint_path);
      if (control.resume && have_checkpoint) {
        c = read_checkpoint(control.checkpoint_path, control.fingerprint);
        if (c.next_doc > n_docs || c.acc.n_layers != L || c.acc.n_heads != H)
          fail_file(control.checkpoint_path, "the checkpoint does not fit this run");
        first_doc = c.next_doc;
        dump_bytes = c.dump_bytes;
        replay(sampler, first_doc);
        if (c.seen != sampler.seen || c.chosen != sampler.chosen)
          fail_file(control.checkpoint_path, "the checkpoint does not fit this run");
        out.acc = std::move(c.acc);
        out.docs_resumed = first_doc;
      }
      if (!control.dump_path.empty()) dump = std::make_unique<RowDumpFile>(control.dump_path, dump_bytes, !control.checkpoint_path.empty());
    }
  } catch (const std::exception& e) {
    failure = ShardComm::failure_of(e);
  }
  comm.agree(failure);
  // Rank 0's control decides (the other ranks' paths are not used).
  bool dumping = !control.dump_path.empty();
  {
    const json j = json::from_cbor(comm.broadcast(cbor_of(json{{"first_doc", first_doc}, {"dump", dumping}})));
    first_doc = j.at("first_doc").get<int64_t>();
    dumping = j.at("dump").get<bool>();
  }
  if (!root) replay(sampler, first_doc);

  RunProgress progress;
  progress.rows_total = std::min(sampler.target, sampler.total) - sampler.chosen;
  progress.n_docs = n_docs;
  progress.docs_resumed = first_doc;
  auto report = [&](int64_t rows) {
    if (!root || !control.progress) return;
    progress.rows_done = std::min(rows, progress.rows_total);
    progress.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    control.progress(progress);
  };

  for (int64_t base = first_doc; base < n_docs; base += N) {
    const int64_t end = std::min<int64_t>(base + N, n_docs), mine = base + R;
    DocumentPlan my_plan;
    for (int64_t d = base; d < end; ++d) {
      DocumentPlan plan = plan_document(d, int64_t(docs[d].tokens.size()), L, H, params);
      sampler.apply(plan);
      if (d == mine) my_plan = std::move(plan);
    }
    // This rank's document of the round.
    json message = json::object();
    if (mine < end) {
      try {
        std::string lines;
        RowDumpSink sink;
        if (dumping) sink = [&lines](const std::string& l) { lines += l; };
        const int64_t before = out.rows_this_run, active = end - base;
        progress.doc = end - 1;
        int64_t rows = 0;
        const Accumulator doc_acc = analyze_one(source, docs[mine], my_plan, params, sink, rows,
                                                [&](int64_t r) { report(before + r * active); });
        message = {{"rows", rows}, {"acc", doc_acc.to_json()}, {"dump", std::move(lines)}};
      } catch (const std::exception& e) {
        const ShardComm::Failure f = ShardComm::failure_of(e);
        message = {{"error", f.message}, {"kind", f.kind}};
      }
    }
    const std::vector<std::vector<uint8_t>> parts = comm.gather(cbor_of(message));
    // Rank 0 merges in document order; the first failing document (as one process would
    // meet it), or a failure to merge or checkpoint, stops every rank.
    failure = {};
    if (root) {
      try {
        for (int64_t d = base; d < end; ++d) {
          const std::vector<uint8_t>& part = parts[size_t(d - base)];
          out.bytes_merged += int64_t(part.size());
          const json m = json::from_cbor(part);
          if (m.contains("error")) {
            failure = {true, m.at("kind").get<int>(), m.at("error").get<std::string>()};
            break;
          }
          out.rows_this_run += m.at("rows").get<int64_t>();
          out.acc.merge(Accumulator::from_json(m.at("acc")));
          if (dump) {
            dump->write(m.at("dump").get<std::string>());
            dump_bytes = dump->end_document();
          }
        }
        if (!failure.failed) {
          report(out.rows_this_run);
          if (!control.checkpoint_path.empty()) {
            write_checkpoint(control.checkpoint_path, control.fingerprint, end, sampler, dump_bytes, out.acc);
            if (control.after_checkpoint) control.after_checkpoint(end - 1);
          }
        }
      } catch (const std::exception& e) {
        failure = ShardComm::failure_of(e);
      }
    }
    comm.agree(failure);
  }
  comm.closed = true;  // no collective follows: later errors are rank 0's own
  if (dump) dump->finish();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  progress.finished = true;
  report(out.rows_this_run);
  return out;
}

}  // namespace

RunOutcome analyze_documents(RowSource& source, const std::vector<RunDocument>& docs,
                             const AnalysisParams& params, const RunControl& control) {
  if (control.comm && control.comm->size() > 1) return analyze_sharded(source, docs, params, control);
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
    RowDumpSink sink;
    if (dump) sink = [&dump](const std::string& lines) { dump->write(lines); };
    const int64_t before = out.rows_this_run;
    progress.doc = d;
    int64_t rows = 0;
    const Accumulator doc_acc = analyze_one(source, docs[d], plan, params, sink, rows,
                                            [&](int64_t r) { report(before + r); });
    out.rows_this_run += rows;
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
