// Per-layer/head policy maps in their JSON-file form (--policy @map.json, map.json) on
// arbitrary bytes: PolicyMap::parse of the file, validate for a small model, and the map's
// canonical text form parsed back to the same rules. Errors quote the file's content, so
// they must be one printable line.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "fuzz_util.h"
#include "policies/policy_map.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace attnsparse;
  using namespace attnsparse::policies;
  const std::string path = fuzz::write_scratch("map.json", data, size);
  // The first byte picks the spelling: "@path" or the bare path ending in .json.
  const std::string arg = size > 0 && (data[0] & 1) ? "@" + path : path;
  fuzz::expect_clean([&] {
    const PolicyMap map = PolicyMap::parse(arg);
    const std::string spec = map.spec();
    const PolicyMap again = PolicyMap::parse(spec);
    for (int l = 0; l < 6; ++l)
      for (int h = 0; h < 4; ++h)
        if (!(again.at(l, h) == map.at(l, h))) {
          std::fprintf(stderr, "map %s: canonical text selects another policy at layer %d head %d\n",
                       spec.c_str(), l, h);
          std::abort();
        }
    map.validate(6, 4);
  });
  return 0;
}
