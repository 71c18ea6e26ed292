#include "io/tensor_source.h"

#include "core/error.h"

namespace attnsparse {

const TensorInfo& TensorSource::require(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (t == nullptr) fail_file(path(), "missing tensor '{}'", name);
  return *t;
}

}  // namespace attnsparse
