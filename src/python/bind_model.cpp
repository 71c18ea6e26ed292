// attnsparse.Model: load a model, tokenize, logits, attention, generate, perplexity.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/dtype.h"
#include "core/error.h"
#include "model/dense_attention.h"
#include "model/generate.h"
#include "model/summary.h"
#include "python/common.h"

namespace attnsparse::python {

namespace {

using namespace pybind11::literals;

// The largest dense attention array Model.attention returns (bytes).
constexpr double kAttentionLimitBytes = 2147483648.0;  // 2 GiB

// A float32 numpy array that owns the vector's memory (no copy).
py::array_t<float> to_numpy(std::vector<float>&& v, std::vector<py::ssize_t> shape) {
  auto* owned = new std::vector<float>(std::move(v));
  py::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<float>*>(p); });
  return py::array_t<float>(shape, owned->data(), free_when_done);
}

// Checks for Ctrl-C after every layer of a forward pass.
class InterruptHooks : public AttentionHooks {
 public:
  explicit InterruptHooks(const Checkpoint& cp) : cp_(cp) {}
  void after_attention(int, const ops::AttentionShape&, const ops::AttentionArgs&) override { cp_.check(); }

 private:
  const Checkpoint& cp_;
};

// layers / heads: None = all, else a list of distinct indices in 0..count-1. Returns the
// chosen indices in the caller's order.
std::vector<int> pick(const py::object& sel, int64_t count, const char* what) {
  std::vector<int> out;
  if (sel.is_none()) {
    for (int i = 0; i < count; ++i) out.push_back(i);
    return out;
  }
  std::vector<int64_t> v;
  if (py::isinstance<py::int_>(sel)) {
    v.push_back(sel.cast<int64_t>());
  } else {
    try {
      v = sel.cast<std::vector<int64_t>>();
    } catch (const py::cast_error&) {
      fail_usage("{}: expected None, an int or a list of ints", what);
    }
  }
  std::vector<bool> seen(size_t(count), false);
  for (int64_t i : v) {
    if (i < 0 || i >= count) fail_usage("{}: {} is out of range (the model has {})", what, i, count);
    if (seen[size_t(i)]) fail_usage("{}: {} is given twice", what, i);
    seen[size_t(i)] = true;
    out.push_back(int(i));
  }
  if (out.empty()) fail_usage("{}: the list is empty", what);
  return out;
}

std::string text_bytes(const py::handle& text, const char* what) {
  if (py::isinstance<py::str>(text)) return text.cast<std::string>();
  if (py::isinstance<py::bytes>(text)) return std::string(text.cast<py::bytes>());
  fail_usage("{}: expected str or bytes", what);
}

py::dict model_info(const PyModel& pm) {
  const Model& model = *pm.model;
  const ModelConfig& c = model.config();
  py::dict d;
  d["path"] = pm.path;
  d["format"] = c.source_format;
  d["arch"] = c.arch;
  d["name"] = c.name;
  d["n_vocab"] = c.n_vocab;
  d["n_ctx"] = c.n_ctx;
  d["n_embd"] = c.n_embd;
  d["n_layer"] = c.n_layer;
  d["n_head"] = c.n_head;
  d["n_kv_head"] = c.n_kv_head;
  d["head_dim"] = c.head_dim;
  d["n_ff"] = c.n_ff;
  d["norm_eps"] = std::stod(fmt::format("{}", c.norm_eps));
  d["tied_output"] = c.tied_output;
  d["qkv_bias"] = c.qkv_bias;
  d["rope"] = py::dict("layout"_a = rope_layout_name(c.rope_layout), "dim"_a = c.rope_dim, "base"_a = c.rope_base,
                       "scaling"_a = c.rope_scaling.type.empty() ? "none" : c.rope_scaling.type,
                       "factor"_a = c.rope_scaling.factor);
  const WeightSummary weights = summarize_weights(model);
  d["parameters"] = weights.parameters;
  py::dict dt;
  for (const auto& [name, t] : weights.by_dtype)
    dt[py::str(name)] = py::dict("tensors"_a = t.tensors, "elements"_a = t.elements, "bytes"_a = t.bytes);
  d["tensor_dtypes"] = dt;
  const TokenizerSummary tok = summarize_tokenizer(model);
  if (tok.error.empty())
    d["tokenizer"] = py::dict("type"_a = tok.type, "n_vocab"_a = tok.n_vocab, "bos"_a = tok.bos, "eos"_a = tok.eos,
                              "add_bos"_a = tok.add_bos);
  else
    d["tokenizer"] = py::dict("error"_a = tok.error);
  return d;
}

}  // namespace

void bind_model(py::module_& m) {
  m.attr("ATTENTION_LIMIT_BYTES") = int64_t(kAttentionLimitBytes);
  py::class_<PyModel>(m, "Model", "A loaded model (.gguf file or Hugging Face directory), weights memory-mapped.")
      .def(py::init([](const std::string& path, py::object threads) {
             auto pm = std::make_unique<PyModel>();
             pm->path = path;
             if (!threads.is_none()) {
               const int64_t t = threads.cast<int64_t>();
               if (t < 0) fail_usage("threads must be 0 (all cores) or positive, got {}", t);
               pm->threads = int(t);
             }
             {
               py::gil_scoped_release nogil;
               pm->model = Model::load(path);
             }
             return pm;
           }),
           "path"_a, "threads"_a = py::none())
      .def_readonly("path", &PyModel::path)
      .def_property(
          "threads", [](const PyModel& pm) { return pm.threads; },
          [](PyModel& pm, int t) {
            if (t < 0) fail_usage("threads must be 0 (all cores) or positive, got {}", t);
            pm.threads = t;
          })
      .def_property_readonly("info", &model_info)
      .def_property_readonly("n_vocab", [](const PyModel& pm) { return pm.model->config().n_vocab; })
      .def_property_readonly("n_layer", [](const PyModel& pm) { return pm.model->config().n_layer; })
      .def_property_readonly("n_head", [](const PyModel& pm) { return pm.model->config().n_head; })
      .def_property_readonly("n_ctx", [](const PyModel& pm) { return pm.model->config().n_ctx; })
      .def(
          "tokenize",
          [](const PyModel& pm, const py::object& text, bool special) {
            const std::string bytes = text_bytes(text, "text");
            std::vector<int32_t> ids;
            {
              py::gil_scoped_release nogil;
              ids = pm.model->tokenizer().encode(bytes, special);
            }
            return ids;
          },
          "text"_a, "special"_a = true)
      .def(
          "detokenize",
          [](const PyModel& pm, const py::object& ids) {
            const std::vector<int32_t> t = token_ids(ids, pm.model->config().n_vocab);
            return utf8_str(pm.model->tokenizer().decode(t));
          },
          "ids"_a)
      .def(
          "logits",
          [](const PyModel& pm, const py::object& ids, const py::object& rows, const py::object& progress) {
            const std::vector<int32_t> tokens = token_ids(ids, pm.model->config().n_vocab);
            if (tokens.empty()) fail_usage("ids: give at least one token");
            std::vector<int64_t> logit_rows;
            if (!rows.is_none()) {
              std::vector<int64_t> r;
              if (py::isinstance<py::int_>(rows)) {
                r.push_back(rows.cast<int64_t>());
              } else {
                try {
                  r = rows.cast<std::vector<int64_t>>();
                } catch (const py::cast_error&) {
                  fail_usage("rows: expected None, an int or a list of ints");
                }
              }
              for (int64_t x : r)
                if (x < 0 || x >= int64_t(tokens.size()))
                  fail_usage("rows: row {} is out of range ({} tokens)", x, tokens.size());
              if (r.empty()) fail_usage("rows: the list is empty");
              logit_rows = r;
            }
            const Checkpoint cp(progress);
            std::vector<float> logits;
            {
              py::gil_scoped_release nogil;
              pm.apply_threads();
              InterruptHooks hooks(cp);
              logits = causal_logits(*pm.model, tokens, logit_rows, &hooks);
            }
            const py::ssize_t V = pm.model->config().n_vocab;
            return to_numpy(std::move(logits), {py::ssize_t(logits.size()) / V, V});
          },
          "ids"_a, "rows"_a = py::none(), "progress"_a = py::none())
      .def(
          "attention",
          [](const PyModel& pm, const py::object& ids, const py::object& layers, const py::object& heads,
             const py::object& progress) {
            const ModelConfig& c = pm.model->config();
            const std::vector<int32_t> tokens = token_ids(ids, c.n_vocab);
            if (tokens.empty()) fail_usage("ids: give at least one token");
            const std::vector<int> li = pick(layers, c.n_layer, "layers");
            const std::vector<int> hi = pick(heads, c.n_head, "heads");
            const int64_t n = int64_t(tokens.size());
            const double bytes = dense_attention_bytes(int64_t(li.size()), int64_t(hi.size()), n);
            if (bytes > kAttentionLimitBytes)
              fail_usage(
                  "attention: {} tokens x {} layers x {} heads need {:.2f} GB as a dense array (limit {:.0f} GB); "
                  "use attnsparse.analyze for streamed statistics, or fewer tokens, layers or heads",
                  n, li.size(), hi.size(), bytes / 1e9, kAttentionLimitBytes / 1e9 + 0.0);
            py::array_t<float> out({py::ssize_t(li.size()), py::ssize_t(hi.size()), py::ssize_t(n), py::ssize_t(n)});
            float* data = out.mutable_data();
            const Checkpoint cp(progress);
            {
              py::gil_scoped_release nogil;
              std::memset(data, 0, size_t(bytes));
              pm.apply_threads();
              dense_attention(*pm.model, tokens, li, hi, data,
                              [&](int layer) { cp(int64_t(layer) + 1, c.n_layer); });
            }
            return out;
          },
          "ids"_a, "layers"_a = py::none(), "heads"_a = py::none(), "progress"_a = py::none())
      .def(
          "generate",
          [](const PyModel& pm, const py::object& prompt, int64_t n_new, double temp, double top_p, uint64_t seed,
             const py::object& progress) {
            if (n_new < 0) fail_usage("n must not be negative, got {}", n_new);
            if (!(top_p > 0 && top_p <= 1)) fail_usage("top_p must be in (0, 1], got {}", top_p);
            const std::string text = text_bytes(prompt, "prompt");
            const Tokenizer& tok = pm.model->tokenizer();
            const std::vector<int32_t> prompt_ids = tok.encode(text, true);
            const int64_t n_ctx = pm.model->config().n_ctx;
            const int64_t n = generation_budget(pm.model->config(), int64_t(prompt_ids.size()), n_new);
            if (n < n_new) {
              const std::string w = fmt::format("n {} reduced to {} to stay within the context of {}", n_new, n, n_ctx);
              if (PyErr_WarnEx(PyExc_RuntimeWarning, w.c_str(), 1) != 0) throw py::error_already_set();
            }
            SamplingParams sp;
            sp.temperature = float(temp);
            sp.top_p = float(top_p);
            sp.seed = seed;
            const Checkpoint cp(progress);
            GenerateResult res;
            {
              py::gil_scoped_release nogil;
              pm.apply_threads();
              int64_t done = 0;
              res = generate(*pm.model, prompt_ids, n, sp, [&](int32_t) { cp(++done, n); });
            }
            // The continuation decoded with the prompt in front (as the CLI prints it), so
            // that the first token keeps its leading space.
            return utf8_str(ContinuationText::of(tok, prompt_ids, res.tokens));
          },
          "prompt"_a, "n"_a = 64, "temp"_a = 0.8, "top_p"_a = 0.95, "seed"_a = 1, "progress"_a = py::none())
      .def(
          "generate_ids",
          [](const PyModel& pm, const py::object& ids, int64_t n_new, double temp, double top_p, uint64_t seed,
             const py::object& progress) {
            if (n_new < 0) fail_usage("n must not be negative, got {}", n_new);
            if (!(top_p > 0 && top_p <= 1)) fail_usage("top_p must be in (0, 1], got {}", top_p);
            const std::vector<int32_t> prompt_ids = token_ids(ids, pm.model->config().n_vocab);
            if (prompt_ids.empty()) fail_usage("ids: give at least one token");
            const int64_t n_ctx = pm.model->config().n_ctx;
            if (int64_t(prompt_ids.size()) + n_new > n_ctx)
              fail_usage("{} prompt tokens + n {} exceed the model's context of {}", prompt_ids.size(), n_new, n_ctx);
            SamplingParams sp;
            sp.temperature = float(temp);
            sp.top_p = float(top_p);
            sp.seed = seed;
            const Checkpoint cp(progress);
            GenerateResult res;
            {
              py::gil_scoped_release nogil;
              pm.apply_threads();
              int64_t done = 0;
              res = generate(*pm.model, prompt_ids, n_new, sp, [&](int32_t) { cp(++done, n_new); });
            }
            return res.tokens;
          },
          "ids"_a, "n"_a = 64, "temp"_a = 0.8, "top_p"_a = 0.95, "seed"_a = 1, "progress"_a = py::none())
      .def(
          "perplexity",
          [](const PyModel& pm, const py::object& text, const py::object& ctx_arg, const py::object& stride_arg,
             const py::object& progress) {
            const ModelConfig& c = pm.model->config();
            int64_t ctx = ctx_arg.is_none() ? default_perplexity_ctx(c) : ctx_arg.cast<int64_t>();
            if (!ctx_arg.is_none() && ctx < 2) fail_usage("ctx must be at least 2, got {}", ctx);
            if (ctx > c.n_ctx) fail_usage("ctx {} exceeds the model's context of {}", ctx, c.n_ctx);
            const int64_t step = stride_arg.is_none() ? default_perplexity_stride(ctx) : stride_arg.cast<int64_t>();
            if (step < 1 || step > ctx) fail_usage("stride must be in 1..{} (ctx), got {}", ctx, step);
            const std::string bytes = text_bytes(text, "text");
            const std::vector<int32_t> tokens = pm.model->tokenizer().encode(bytes, true);
            if (tokens.size() < 2) fail_usage("the text has {} token(s); perplexity needs at least 2", tokens.size());
            const Checkpoint cp(progress);
            PerplexityResult r;
            const auto t0 = std::chrono::steady_clock::now();
            {
              py::gil_scoped_release nogil;
              pm.apply_threads();
              r = perplexity(*pm.model, tokens, ctx, step, [&](int64_t done, int64_t total) { cp(done, total); });
            }
            const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            return py::dict("perplexity"_a = std::exp(r.nll_per_token()), "nll_per_token"_a = r.nll_per_token(),
                            "tokens"_a = r.tokens, "scored"_a = r.scored, "bytes"_a = bytes.size(),
                            "bits_per_byte"_a = bits_per_byte(r, int64_t(bytes.size())), "ctx"_a = ctx,
                            "stride"_a = step, "windows"_a = r.windows, "seconds"_a = secs);
          },
          "text"_a, "ctx"_a = py::none(), "stride"_a = py::none(), "progress"_a = py::none())
      .def("__repr__", [](const PyModel& pm) {
        const ModelConfig& c = pm.model->config();
        return fmt::format("attnsparse.Model('{}': {}, {} layers x {} heads, vocabulary {})", pm.path, c.arch,
                           c.n_layer, c.n_head, c.n_vocab);
      });
}

}  // namespace attnsparse::python
