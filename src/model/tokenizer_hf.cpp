// Tokenizer::from_hf_dir: a Hugging Face tokenizer.json (+ tokenizer_config.json).
#include "core/error.h"
#include "model/tokenizer_impl.h"

namespace attnsparse {

std::unique_ptr<Tokenizer> Tokenizer::from_hf_dir(const std::string& dir) {
  fail_file(dir, "tokenizer.json support is not implemented yet");
}

}  // namespace attnsparse
