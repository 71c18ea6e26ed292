// Safetensors file (header + data) on arbitrary bytes.
#include <cstdint>

#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace attnsparse;
  const std::string path = fuzz::write_scratch("model.safetensors", data, size);
  fuzz::expect_clean([&] {
    SafetensorsSource s(path);
    for (const TensorInfo& t : s.tensors())
      if (t.nbytes > 0) (void)t.data[t.nbytes - 1];  // every span lies inside the file
  });
  return 0;
}
