// llama2.c checkpoints (.bin) and tokenizer files (tokenizer.bin, tok<N>.bin) on arbitrary
// bytes. The first byte picks what the rest is:
//   0  a checkpoint: header + layout (every tensor inside the file), config, and a model
//      loaded from it that runs three tokens: it either throws a clear error or gives
//      finite logits (NaN / Inf weights are never a silent NaN result);
//   1  a tokenizer file: read, encode + decode a fixed text, every piece; also through
//      Tokenizer::load (which tells checkpoints and tokenizers apart);
//   2  a pair: a little-endian u32 length L, L bytes of tokenizer.bin, then the checkpoint
//      beside it: the checkpoint's tokenizer is found and checked against its vocabulary,
//      then the encoded text runs through the model.
// Errors quote file content (pieces, header values), so they must be one printable line.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "fuzz_util.h"
#include "io/llama2c.h"
#include "model/config.h"
#include "model/config_validate.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace {

using namespace attnsparse;

const char* kText = "Once upon a time, Lily saw a big red ball.\n\xE2\x96\x81 caf\xC3\xA9 <s> 123";

void exercise_tokenizer(const Tokenizer& tok) {
  const auto ids = tok.encode(kText, true);
  for (int32_t id : ids)
    if (id < 0 || id >= tok.n_vocab()) {
      std::fprintf(stderr, "encode gave token %d outside the vocabulary of %d\n", id, tok.n_vocab());
      std::abort();
    }
  (void)tok.decode(ids);
  const int32_t n = std::min<int32_t>(tok.n_vocab(), 4096);
  for (int32_t id = 0; id < n; ++id) (void)tok.token_piece(id);
}

// Loads the checkpoint and runs `tokens` (ids reduced into its vocabulary).
void run_model(const std::string& path, std::vector<int32_t> tokens) {
  const auto model = Model::load(path);
  const ModelConfig& c = model->config();
  if (tokens.empty()) tokens = {1, 2, 3};
  if (static_cast<int64_t>(tokens.size()) > c.n_ctx) tokens.resize(static_cast<size_t>(c.n_ctx));
  for (int32_t& t : tokens) t = static_cast<int32_t>(t % c.n_vocab);
  KVCache cache = model->make_cache(static_cast<int64_t>(tokens.size()));
  std::vector<float> logits;
  model->forward(tokens, cache, ForwardOptions{}, logits);
  if (logits.size() != tokens.size() * static_cast<size_t>(c.n_vocab)) {
    std::fprintf(stderr, "forward gave %zu logits for %zu tokens of a %lld-token vocabulary\n", logits.size(),
                 tokens.size(), static_cast<long long>(c.n_vocab));
    std::abort();
  }
  for (size_t i = 0; i < logits.size(); ++i)
    if (!std::isfinite(logits[i])) {
      std::fprintf(stderr, "forward returned logit %zu = %g without an error\n", i, logits[i]);
      std::abort();
    }
}

void checkpoint(const std::string& path) {
  const Llama2cFile f(path);
  const uint64_t file_size = std::filesystem::file_size(path);
  for (const TensorInfo& t : f.tensors()) {
    // Every tensor lies inside the mapped file (the header check is the only guard).
    if (t.nbytes > 0) (void)t.data[t.nbytes - 1];
    if (static_cast<uint64_t>(t.nbytes) > file_size) std::abort();
  }
  ModelConfig c = config_from_llama2c(f);
  validate_config(c, path);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // One thread: libFuzzer runs one input at a time, and the forward pass must not spawn
  // OpenMP teams per input.
  setenv("OMP_NUM_THREADS", "1", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] % 3;
  ++data;
  --size;
  if (mode == 0) {
    const std::string path = fuzz::write_scratch("model.bin", data, size);
    fuzz::expect_clean([&] {
      checkpoint(path);
      run_model(path, {});
    });
  } else if (mode == 1) {
    const std::string path = fuzz::write_scratch("tok.bin", data, size);
    fuzz::expect_clean([&] { exercise_tokenizer(*Tokenizer::from_llama2c(path)); });
    fuzz::expect_clean([&] { exercise_tokenizer(*Tokenizer::load(path)); });
  } else {
    if (size < 4) return 0;
    uint32_t len = 0;
    std::memcpy(&len, data, 4);
    len = static_cast<uint32_t>(std::min<size_t>(len, size - 4));
    std::filesystem::create_directories(fuzz::scratch_dir() + "/pair");
    fuzz::write_scratch("pair/tokenizer.bin", data + 4, len);
    const std::string path = fuzz::write_scratch("pair/model.bin", data + 4 + len, size - 4 - len);
    fuzz::expect_clean([&] {
      const auto tok = Tokenizer::load(path);
      exercise_tokenizer(*tok);
      run_model(path, tok->encode(kText, true));
    });
  }
  return 0;
}
