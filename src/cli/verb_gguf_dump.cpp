// attnsparse gguf-dump FILE: every metadata key and tensor of a GGUF file. Keys, names and
// strings from the file are printed through printable() (no raw control characters).
#include <fmt/format.h>

#include "cli/verb.h"
#include "core/text.h"
#include "io/gguf.h"

namespace attnsparse::cli {
namespace {

void register_gguf_dump(CLI::App& app) {
  auto* sub = app.add_subcommand("gguf-dump", "List the metadata and tensors of a GGUF file");
  sub->footer("Example: attnsparse gguf-dump model.gguf");
  static std::string path;
  static bool all = false;
  sub->add_option("FILE", path, "GGUF file")->required();
  sub->add_flag("--all", all, "print whole arrays");
  sub->callback([] {
    GgufFile f(path);
    fmt::print("GGUF v{}  alignment {}  {} metadata keys  {} tensors\n", f.version(), f.alignment(),
               f.metadata().size(), f.tensors().size());
    for (const auto& [key, value] : f.metadata())
      fmt::print("  {:<44} {}\n", printable(key, 1000), value.to_display(all ? SIZE_MAX : 8));
    for (const auto& t : f.tensors()) {
      std::string dims;
      for (size_t i = 0; i < t.shape.size(); ++i) dims += (i ? " x " : "") + std::to_string(t.shape[i]);
      fmt::print("  {:<44} {:<6} [{}]\n", printable(t.name, 1000), dtype_name(t.dtype), dims);
    }
  });
}
ATTNSPARSE_VERB(register_gguf_dump);

}  // namespace
}  // namespace attnsparse::cli
