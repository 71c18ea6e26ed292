// Hugging Face tokenizer.json (+ encode/decode of a fixed text) on arbitrary bytes.
#include <cstdint>

#include "fuzz_util.h"
#include "model/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace attnsparse;
  fuzz::write_scratch("tokenizer.json", data, size);
  fuzz::expect_clean([&] {
    auto tok = Tokenizer::from_hf_dir(fuzz::scratch_dir());
    if (tok) {
      const auto ids = tok->encode("Hello world, 12345\n\t caf\xC3\xA9 \xE2\x96\x81x", true);
      (void)tok->decode(ids);
    }
  });
  return 0;
}
