// Shared pieces of the Python bindings (src/python/*.cpp): the wrapped model, the
// interrupt check for long calls, array conversion helpers.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/model.h"

namespace attnsparse::python {

namespace py = pybind11;

// A loaded model and the thread count its calls use.
struct PyModel {
  std::string path;
  std::unique_ptr<Model> model;
  int threads = 0;  // 0: the default of the process (all cores unless OMP_NUM_THREADS says)
  void apply_threads() const;  // omp_set_num_threads for this call
};

// Long calls run with the GIL released and call this between steps (a layer, a window,
// a token): it re-acquires the GIL, raises KeyboardInterrupt (or whatever the progress
// callback raised) by throwing py::error_already_set, and calls the callback when given.
class Checkpoint {
 public:
  explicit Checkpoint(py::object progress = py::none()) : progress_(std::move(progress)) {}
  // done / total: what the callback receives (progress(done, total)).
  void operator()(int64_t done, int64_t total) const;
  void check() const;  // signals only
  bool has_progress() const { return !progress_.is_none(); }

 private:
  py::object progress_;
};

// Token ids from a Python sequence or array, checked against the vocabulary (ValueError
// with the CLI's message).
std::vector<int32_t> token_ids(const py::handle& ids, int64_t n_vocab, const char* what = "ids");

// A Python str from bytes that may not be valid UTF-8 (invalid bytes become U+FFFD).
py::str utf8_str(const std::string& bytes);

void bind_model(py::module_& m);
void bind_analysis(py::module_& m);
void bind_misc(py::module_& m);
void bind_policies(py::module_& m);

}  // namespace attnsparse::python
