// attnsparse._core: the compiled part of the Python package (src/python/attnsparse/ is
// the rest). Errors: attnsparse::UsageError -> attnsparse.UsageError (a subclass of both
// attnsparse.Error and ValueError), FormatError -> attnsparse.FormatError, every other
// attnsparse::Error -> attnsparse.Error; the message is the CLI's one line.
#include <omp.h>

#include <cstdio>

#include "core/error.h"
#include "python/common.h"

namespace attnsparse::python {

namespace {
int g_default_threads = 1;
}

void PyModel::apply_threads() const { omp_set_num_threads(threads > 0 ? threads : g_default_threads); }

void Checkpoint::check() const {
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
}

void Checkpoint::operator()(int64_t done, int64_t total) const {
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  if (!progress_.is_none()) progress_(done, total);
}

std::vector<int32_t> token_ids(const py::handle& ids, int64_t n_vocab, const char* what) {
  if (py::isinstance<py::str>(ids) || py::isinstance<py::bytes>(ids))
    throw attnsparse::UsageError(fmt::format("{}: expected token ids (a list or array of int), got a string", what));
  std::vector<int32_t> out;
  py::array arr;
  try {
    arr = py::array::ensure(ids);
  } catch (const py::error_already_set&) {
    arr = py::array();
  }
  if (arr && arr.ndim() == 1 && arr.size() == 0) return out;
  if (!arr || arr.ndim() != 1 || !(arr.dtype().kind() == 'i' || arr.dtype().kind() == 'u'))
    throw attnsparse::UsageError(fmt::format("{}: expected a 1-D sequence of int token ids", what));
  const auto a = py::array_t<int64_t, py::array::forcecast>::ensure(arr);
  const auto r = a.unchecked<1>();
  out.reserve(size_t(r.shape(0)));
  for (py::ssize_t i = 0; i < r.shape(0); ++i) {
    const int64_t t = r(i);
    if (t < 0 || t >= n_vocab)
      throw attnsparse::UsageError(
          fmt::format("{}: token id {} at index {} is out of range (vocabulary size {})", what, t, i, n_vocab));
    out.push_back(int32_t(t));
  }
  return out;
}

py::str utf8_str(const std::string& bytes) {
  PyObject* s = PyUnicode_DecodeUTF8(bytes.data(), py::ssize_t(bytes.size()), "replace");
  if (!s) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(s);
}

}  // namespace attnsparse::python

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  using namespace attnsparse::python;
  m.doc() = "attnsparse: the compiled engine (use the attnsparse package, not this module)";
  g_default_threads = omp_get_max_threads();

  static PyObject* error = PyErr_NewExceptionWithDoc(
      "attnsparse.Error", "An error of attnsparse: bad input file, bad value, failed run (one-line message).",
      PyExc_RuntimeError, nullptr);
  py::tuple usage_bases = py::make_tuple(py::handle(error), py::handle(PyExc_ValueError));
  static PyObject* usage = PyErr_NewExceptionWithDoc(
      "attnsparse.UsageError", "A bad argument or option value (also a ValueError).", usage_bases.ptr(), nullptr);
  static PyObject* format = PyErr_NewExceptionWithDoc(
      "attnsparse.FormatError", "A malformed, truncated or unreadable file.", error, nullptr);
  m.attr("Error") = py::handle(error);
  m.attr("UsageError") = py::handle(usage);
  m.attr("FormatError") = py::handle(format);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const attnsparse::UsageError& e) {
      PyErr_SetString(usage, e.what());
    } catch (const attnsparse::FormatError& e) {
      PyErr_SetString(format, e.what());
    } catch (const attnsparse::Error& e) {
      PyErr_SetString(error, e.what());
    }
  });

  m.attr("default_threads") = g_default_threads;
  bind_model(m);
  bind_analysis(m);
  bind_misc(m);
  bind_policies(m);
}
