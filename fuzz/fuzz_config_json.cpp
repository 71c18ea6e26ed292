// Hugging Face config.json -> ModelConfig -> validate_config on arbitrary bytes.
#include <cstdint>

#include "fuzz_util.h"
#include "model/config.h"
#include "model/config_validate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace attnsparse;
  const std::string path = fuzz::write_scratch("config.json", data, size);
  fuzz::expect_clean([&] {
    ModelConfig c = config_from_hf_json(path);
    validate_config(c, path);
  });
  return 0;
}
