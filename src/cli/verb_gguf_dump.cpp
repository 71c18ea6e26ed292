// attnsparse gguf-dump FILE: every metadata key and tensor of a GGUF file. Keys, names and
// strings from the file are printed through printable() (no raw control characters).
#include <fmt/format.h>

#include <memory>

#include "cli/verb.h"
#include "core/text.h"
#include "io/gguf.h"

namespace attnsparse::cli {
namespace {

struct GgufDumpOptions {
  std::string path;
  bool all = false;
};

void run_gguf_dump(const GgufDumpOptions& o) {
  GgufFile f(o.path);
  fmt::print("GGUF v{}  alignment {}  {} metadata keys  {} tensors\n", f.version(), f.alignment(),
             f.metadata().size(), f.tensors().size());
  for (const auto& [key, value] : f.metadata())
    fmt::print("  {:<44} {}\n", printable(key, 1000), value.to_display(o.all ? SIZE_MAX : 8));
  for (const auto& t : f.tensors()) {
    std::string dims;
    for (size_t i = 0; i < t.shape.size(); ++i) dims += (i ? " x " : "") + std::to_string(t.shape[i]);
    fmt::print("  {:<44} {:<6} [{}]\n", printable(t.name, 1000), dtype_name(t.dtype), dims);
  }
}

void register_gguf_dump(CLI::App& app) {
  auto* sub = app.add_subcommand("gguf-dump", "List the metadata and tensors of a GGUF file");
  sub->footer("Example: attnsparse gguf-dump model.gguf");
  auto o = std::make_shared<GgufDumpOptions>();
  sub->add_option("FILE", o->path, "GGUF file")->required();
  sub->add_flag("--all", o->all, "print whole arrays");
  sub->callback([o] { run_gguf_dump(*o); });
}
ATTNSPARSE_VERB(register_gguf_dump);

}  // namespace
}  // namespace attnsparse::cli
