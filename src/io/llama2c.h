// Andrej Karpathy's llama2.c checkpoints (the "legacy" export that run.c reads), memory-mapped.
//
// File layout (little-endian, no magic):
//   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
//     (vocab_size > 0: the classifier is tied to the token embedding; < 0: a separate
//      classifier of |vocab_size| rows follows the other weights)
//   float32 token embedding [vocab, dim]
//           attention RMS weights [n_layers, dim]
//           wq [n_layers, dim, dim]  wk [n_layers, kv_dim, dim]  wv [n_layers, kv_dim, dim]
//           wo [n_layers, dim, dim]
//           FFN RMS weights [n_layers, dim]
//           w1 [n_layers, hidden, dim]  w2 [n_layers, dim, hidden]  w3 [n_layers, hidden, dim]
//           final RMS weight [dim]
//           two RoPE tables [seq_len, head_size / 2] (unused: run.c computes the angles)
//           classifier [vocab, dim] (only when vocab_size < 0)
// with head_size = dim / n_heads, kv_dim = n_kv_heads * head_size; every matrix row-major
// [n_out, n_in]. Q/K rotate adjacent pairs (2i, 2i+1), the layout llama.cpp's GGUF files use.
//
// Llama2cFile exposes the weights under llama.cpp's GGUF tensor names (token_embd.weight,
// blk.N.attn_q.weight, ..., output.weight when untied), so the GGUF weight binding reads it.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "io/tensor_source.h"

namespace attnsparse {

struct Llama2cHeader {
  int64_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0;
  int64_t vocab_size = 0;  // |header value|
  int64_t seq_len = 0;
  bool shared_classifier = true;
  int64_t head_size() const { return dim / n_heads; }
  int64_t kv_dim() const { return n_kv_heads * head_size(); }
};

// Parses the 28-byte header of `data` (`size` bytes) and checks it describes exactly
// `size` bytes. Returns the header, or nullopt with `why` set to one line saying what does
// not fit ("header says 1056540 bytes, file has 1000", "n_heads = 0 must be positive").
std::optional<Llama2cHeader> parse_llama2c_header(const uint8_t* data, uint64_t size,
                                                  std::string* why);

// True when `path` should be read as llama2.c: it ends in ".bin" and does not start with
// the GGUF magic.
bool is_llama2c_path(const std::string& path);

class Llama2cFile : public TensorSource {
 public:
  // Throws FormatError "<path>: not a GGUF file, and not a llama2.c checkpoint: <why>".
  explicit Llama2cFile(const std::string& path);

  const Llama2cHeader& header() const { return header_; }
  const TensorInfo* find(const std::string& name) const override;
  const std::vector<TensorInfo>& tensors() const override { return tensors_; }
  const std::string& path() const override { return path_; }

 private:
  std::string path_;
  std::unique_ptr<MappedFile> file_;
  Llama2cHeader header_;
  std::vector<TensorInfo> tensors_;
};

// llama2.c's tokenizer file (tokenizer.bin, tok512.bin):
//   int32 max_token_length, then per token: float32 score, int32 length, `length` bytes,
// until the end of the file (the format stores no count; run.c reads vocab_size tokens).
struct Llama2cVocab {
  int32_t max_token_length = 0;
  std::vector<std::string> pieces;
  std::vector<float> scores;
};

// Reads the whole file; nullopt with `why` set when it is not in this format (a length
// that is negative, longer than max_token_length or past the end, a non-finite score,
// fewer than 3 tokens, bytes left over).
std::optional<Llama2cVocab> parse_llama2c_vocab(const uint8_t* data, uint64_t size,
                                                std::string* why);

}  // namespace attnsparse
