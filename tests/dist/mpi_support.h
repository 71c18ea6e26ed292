// Shared by the tests that run `mpirun ... attnsparse`: the launcher as CI runs it and a
// small corpus for the bundled model (commands are run with support/run_process.h).
#pragma once
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "analysis/cli_support.h"

namespace attnsparse::mpi_testing {

using testing_support::shell_quote;

inline const std::string kModel = std::string(ATTNSPARSE_SOURCE_DIR) + "/models/kjv-llama.gguf";

// mpirun as CI runs it (as root, more ranks than cores).
inline std::string mpirun(int ranks) {
  return shell_quote(ATTNSPARSE_MPIEXEC) + " --oversubscribe --allow-run-as-root --bind-to none -np " +
         std::to_string(ranks) + " ";
}

// Seven short documents (the model is trained on the King James Bible) in DIR/data.
inline std::string write_corpus(const std::string& dir) {
  const std::vector<std::string> texts = {
      "In the beginning God created the heaven and the earth. And the earth was without form, and void; "
      "and darkness was upon the face of the deep.",
      "And God said, Let there be light: and there was light. And God saw the light, that it was good: "
      "and God divided the light from the darkness.",
      "Blessed are the poor in spirit: for theirs is the kingdom of heaven. Blessed are they that mourn: "
      "for they shall be comforted.",
      "The LORD is my shepherd; I shall not want. He maketh me to lie down in green pastures: he leadeth "
      "me beside the still waters.",
      "Charity suffereth long, and is kind; charity envieth not; charity vaunteth not itself, is not "
      "puffed up, doth not behave itself unseemly.",
      "Now faith is the substance of things hoped for, the evidence of things not seen. For by it the "
      "elders obtained a good report.",
      "To every thing there is a season, and a time to every purpose under the heaven: a time to be "
      "born, and a time to die.",
  };
  const std::string data = dir + "/data";
  std::filesystem::create_directories(data);
  for (size_t i = 0; i < texts.size(); ++i) std::ofstream(data + "/doc" + std::to_string(i) + ".txt") << texts[i];
  return data;
}

// How often `needle` occurs in `text`.
inline size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace attnsparse::mpi_testing
