// attnsparse report FILE.json [-o report.html]: (re)draws the HTML page of any result
// file the tool writes, with the kind detected from the JSON: analyze's report.json,
// eval-policy's report, theory simulate / fit, the condensation experiment's results.
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "cli/verb.h"
#include "core/error.h"
#include "core/files.h"
#include "core/text.h"
#include "io/json_file.h"
#include "model/model_util.h"
#include "report/analysis_report.h"
#include "report/condensation_report.h"
#include "report/policy_report.h"
#include "theory/theory_report.h"

namespace attnsparse::cli {
namespace {

using json = nlohmann::json;

struct Kind {
  const char* name;
  std::string (*html)(const json&);
};

// The kind of a result file, from its fields; nullptr when none matches.
const Kind* detect(const json& j) {
  static const Kind analysis{"analyze report", report::analysis_html};
  static const Kind policy{"eval-policy report", report::policy_html};
  static const Kind simulate{"theory simulate result", theory::simulation_html_from_json};
  static const Kind fit{"theory fit result", theory::fit_html_from_json};
  static const Kind condensation{"condensation experiment results", report::condensation_html};
  if (!j.is_object()) return nullptr;
  const std::string tool = j.contains("tool") && j["tool"].is_string() ? j["tool"].get<std::string>() : "";
  if (tool == "attnsparse theory simulate") return &simulate;
  if (tool == "attnsparse theory fit") return &fit;
  if (j.contains("conjectures") && j.contains("per_layer") && j.contains("counts")) return &analysis;
  if (report::is_policy_report(j)) return &policy;
  if (report::is_condensation_results(j)) return &condensation;
  return nullptr;
}

struct ReportOptions {
  std::string in_path, out_path;
};

void run_report(const ReportOptions& o) {
  // A regular file of bounded size only (a FIFO or a device is refused, not read or
  // waited on), duplicate keys refused, errors as one line naming the file.
  const json j = read_json_file(o.in_path);
  const Kind* kind = detect(j);
  if (!kind)
    fail_file(o.in_path,
              "not a result file of attnsparse (expected analyze's or eval-policy's report.json, theory simulate's "
              "or fit's JSON, or the condensation experiment's results.json)");
  std::string html;
  try {
    html = kind->html(j);
  } catch (const json::exception& e) {
    fail_file(o.in_path, "malformed {}: {}", kind->name, json_error_text(e));
  } catch (const Error& e) {  // may quote names from the file: one printable line
    fail_file(o.in_path, "malformed {}: {}", kind->name, printable(e.what(), 400));
  }
  std::string out = o.out_path;
  if (out.empty()) {
    out = o.in_path;
    if (out.size() > 5 && out.compare(out.size() - 5, 5, ".json") == 0) out.resize(out.size() - 5);
    out += ".html";
  }
  refuse_output_over_inputs(out, {o.in_path}, "-o");
  write_file_atomic(out, html.data(), html.size());
  fmt::print("{} -> {}\n", kind->name, out);
}

void register_report(CLI::App& app) {
  auto* sub = app.add_subcommand("report", "Draw the HTML page of a result file (analyze, eval-policy, theory, condensation)");
  sub->footer(
      "The kind of result is read from the JSON: analyze's report.json, eval-policy's report\n"
      "(--out DIR/report.json or --out FILE.json), theory simulate's and theory fit's JSON, and\n"
      "scripts/condensation_experiment.sh's results.json. The page is self-contained (inline SVG,\n"
      "no network) and is written next to the input (FILE.html) unless -o is given.\n"
      "Example: attnsparse report out/policies/report.json -o frontier.html");
  auto o = std::make_shared<ReportOptions>();
  sub->add_option("FILE", o->in_path, "result file (.json)")->required();
  sub->add_option("-o,--out", o->out_path, "HTML file to write (default: FILE with .html instead of .json)");
  sub->callback([o] { run_report(*o); });
}
ATTNSPARSE_VERB(register_report);

}  // namespace
}  // namespace attnsparse::cli
