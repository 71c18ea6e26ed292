// GGUF reader + model config + GGUF tokenizer on arbitrary bytes.
#include <cstdint>

#include "fuzz_util.h"
#include "io/gguf.h"
#include "model/config.h"
#include "model/config_validate.h"
#include "model/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace attnsparse;
  const std::string path = fuzz::write_scratch("model.gguf", data, size);
  fuzz::expect_clean([&] {
    GgufFile f(path);
    for (const auto& [key, value] : f.metadata()) (void)value.to_display(8);
    fuzz::expect_clean([&] {
      ModelConfig c = config_from_gguf(f);
      validate_config(c, path);
    });
    auto tok = Tokenizer::from_gguf(f);
    if (tok) {
      const auto ids = tok->encode("Hello world, 12345 \xE2\x96\x81 <s>", false);
      (void)tok->decode(ids);
    }
  });
  return 0;
}
