// Data readers (src/io/corpus.cpp): .jsonl (LongBench v1 / RULER), .json (LongBench v2),
// .tok and .txt on arbitrary bytes; the first byte picks the format.
#include <cstdint>

#include "fuzz_util.h"
#include "io/corpus.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace attnsparse;
  if (size == 0) return 0;
  static const char* kNames[] = {"d.jsonl", "d.json", "d.tok", "d.txt"};
  const std::string path = fuzz::write_scratch(kNames[data[0] % 4], data + 1, size - 1);
  fuzz::expect_clean([&] {
    const auto docs = read_documents({path});
    for (const auto& d : docs)
      if (d.tokens) (void)truncate_middle(*d.tokens, 7);
  });
  return 0;
}
