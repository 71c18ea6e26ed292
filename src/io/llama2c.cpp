#include "io/llama2c.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace attnsparse {

namespace {

constexpr size_t kHeaderBytes = 7 * sizeof(int32_t);

int32_t read_i32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  int32_t s;
  std::memcpy(&s, &v, sizeof s);
  return s;
}

float read_f32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  float f;
  std::memcpy(&f, &v, sizeof f);
  return f;
}

// Float counts of the file's parts, in file order (128-bit: no header can overflow them).
struct Layout {
  unsigned __int128 embed, layer_norms, wq, wk, wv, wo, w1, w2, w3, final_norm, rope, classifier;
  unsigned __int128 total_floats() const {
    return embed + 2 * layer_norms + wq + wk + wv + wo + w1 + w2 + w3 + final_norm + rope +
           classifier;
  }
};

Layout layout_of(const Llama2cHeader& h) {
  using u128 = unsigned __int128;
  const u128 L = static_cast<u128>(h.n_layers), d = static_cast<u128>(h.dim),
             f = static_cast<u128>(h.hidden_dim), v = static_cast<u128>(h.vocab_size),
             kv = static_cast<u128>(h.kv_dim()), s = static_cast<u128>(h.seq_len),
             hs = static_cast<u128>(h.head_size());
  Layout l{};
  l.embed = v * d;
  l.layer_norms = L * d;  // attention and FFN: one each
  l.wq = L * d * d;
  l.wk = L * kv * d;
  l.wv = L * kv * d;
  l.wo = L * d * d;
  l.w1 = L * f * d;
  l.w2 = L * d * f;
  l.w3 = L * f * d;
  l.final_norm = d;
  l.rope = 2 * s * (hs / 2);
  l.classifier = h.shared_classifier ? 0 : v * d;
  return l;
}

std::string u128_string(unsigned __int128 v) {
  char buf[48];
  char* p = buf + sizeof buf;
  do {
    *--p = static_cast<char>('0' + static_cast<int>(v % 10));
    v /= 10;
  } while (v > 0);
  return std::string(p, buf + sizeof buf);
}

}  // namespace

std::optional<Llama2cHeader> parse_llama2c_header(const uint8_t* data, uint64_t size,
                                                  std::string* why) {
  if (size < kHeaderBytes) {
    *why = fmt::format("{} bytes, shorter than the 28-byte header", size);
    return std::nullopt;
  }
  if (read_i32(data) == 0x616b3432) {  // "ak42": export.py --version 1 / 2
    *why = fmt::format("a llama2.c version {} export (magic ak42), which is not supported: "
                       "export with --version 0 (legacy)", read_i32(data + 4));
    return std::nullopt;
  }
  const char* names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size",
                          "seq_len"};
  int32_t v[7];
  for (int i = 0; i < 7; ++i) v[i] = read_i32(data + 4 * i);
  for (int i = 0; i < 7; ++i) {
    const bool ok = i == 5 ? v[i] != 0 && v[i] != INT32_MIN : v[i] > 0;
    if (!ok) {
      *why = fmt::format("header value {} = {} must be {}", names[i], v[i],
                         i == 5 ? "non-zero" : "positive");
      return std::nullopt;
    }
  }
  Llama2cHeader h;
  h.dim = v[0];
  h.hidden_dim = v[1];
  h.n_layers = v[2];
  h.n_heads = v[3];
  h.n_kv_heads = v[4];
  h.shared_classifier = v[5] > 0;
  h.vocab_size = v[5] > 0 ? v[5] : -static_cast<int64_t>(v[5]);
  h.seq_len = v[6];
  if (h.dim % h.n_heads != 0) {
    *why = fmt::format("header says dim {} but n_heads {} does not divide it", h.dim, h.n_heads);
    return std::nullopt;
  }
  if (h.n_kv_heads > h.n_heads || h.n_heads % h.n_kv_heads != 0) {
    *why = fmt::format("header says n_kv_heads {}, which does not divide n_heads {}",
                       h.n_kv_heads, h.n_heads);
    return std::nullopt;
  }
  if (h.head_size() % 2 != 0) {
    *why = fmt::format("header says head size {} (dim {} / n_heads {}), which is odd", h.head_size(),
                       h.dim, h.n_heads);
    return std::nullopt;
  }
  const unsigned __int128 want = kHeaderBytes + 4 * layout_of(h).total_floats();
  if (want != size) {
    // Say which classifier variant was assumed: the sign of vocab_size decides it.
    *why = fmt::format("header says {} bytes ({} classifier), file has {}", u128_string(want),
                       h.shared_classifier ? "shared" : "separate", size);
    return std::nullopt;
  }
  return h;
}

bool is_llama2c_path(const std::string& path) {
  if (path.size() < 4 || path.compare(path.size() - 4, 4, ".bin") != 0) return false;
  // Not a regular file (a FIFO would block the open): the GGUF reader names what it is.
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  if (in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0) return false;
  return true;
}

Llama2cFile::Llama2cFile(const std::string& path) : path_(path) {
  file_ = std::make_unique<MappedFile>(path);
  std::string why;
  auto h = parse_llama2c_header(file_->data(), file_->size(), &why);
  if (!h) fail_file(path, "not a GGUF file, and not a llama2.c checkpoint: {}", why);
  header_ = *h;
  const Layout l = layout_of(header_);
  const int64_t L = header_.n_layers, d = header_.dim, f = header_.hidden_dim,
                kv = header_.kv_dim(), V = header_.vocab_size;
  // The whole size fits in the file (checked above), so every count fits in int64.
  const uint8_t* base = file_->data() + kHeaderBytes;
  int64_t offset = 0;  // in floats
  auto add = [&](std::string name, std::vector<int64_t> shape, int64_t at) {
    TensorInfo t;
    t.name = std::move(name);
    t.dtype = DType::F32;
    t.shape = std::move(shape);
    t.data = base + at * 4;
    t.nbytes = t.numel() * 4;
    tensors_.push_back(std::move(t));
  };
  // Per-layer tensors are slices of one [n_layers, ...] block each.
  auto per_layer = [&](const char* logical, std::vector<int64_t> shape, unsigned __int128 floats) {
    const int64_t block = static_cast<int64_t>(floats);
    const int64_t each = block / L;
    for (int64_t i = 0; i < L; ++i)
      add(fmt::format("blk.{}.{}.weight", i, logical), shape, offset + i * each);
    offset += block;
  };
  add("token_embd.weight", {V, d}, offset);
  offset += static_cast<int64_t>(l.embed);
  per_layer("attn_norm", {d}, l.layer_norms);
  per_layer("attn_q", {d, d}, l.wq);
  per_layer("attn_k", {kv, d}, l.wk);
  per_layer("attn_v", {kv, d}, l.wv);
  per_layer("attn_output", {d, d}, l.wo);
  per_layer("ffn_norm", {d}, l.layer_norms);
  per_layer("ffn_gate", {f, d}, l.w1);
  per_layer("ffn_down", {d, f}, l.w2);
  per_layer("ffn_up", {f, d}, l.w3);
  add("output_norm.weight", {d}, offset);
  offset += static_cast<int64_t>(l.final_norm + l.rope);
  if (!header_.shared_classifier) add("output.weight", {V, d}, offset);
}

const TensorInfo* Llama2cFile::find(const std::string& name) const {
  for (const TensorInfo& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::optional<Llama2cVocab> parse_llama2c_vocab(const uint8_t* data, uint64_t size,
                                                std::string* why) {
  if (size < 4) {
    *why = fmt::format("{} bytes, shorter than the 4-byte max_token_length", size);
    return std::nullopt;
  }
  Llama2cVocab v;
  v.max_token_length = read_i32(data);
  if (v.max_token_length <= 0 || v.max_token_length > (1 << 16)) {
    *why = fmt::format("max_token_length {} is not in 1..65536", v.max_token_length);
    return std::nullopt;
  }
  uint64_t at = 4;
  while (at < size) {
    const size_t id = v.pieces.size();
    if (size - at < 8) {
      *why = fmt::format("token {}: {} bytes left at offset {}, a score and a length need 8", id,
                         size - at, at);
      return std::nullopt;
    }
    const float score = read_f32(data + at);
    const int32_t len = read_i32(data + at + 4);
    at += 8;
    if (!std::isfinite(score)) {
      *why = fmt::format("token {}: score {} is not finite", id, score);
      return std::nullopt;
    }
    if (len <= 0 || len > v.max_token_length) {
      *why = fmt::format("token {}: length {} is not in 1..max_token_length ({})", id, len,
                         v.max_token_length);
      return std::nullopt;
    }
    if (static_cast<uint64_t>(len) > size - at) {
      *why = fmt::format("token {}: {} bytes run past the end of the file", id, len);
      return std::nullopt;
    }
    v.pieces.emplace_back(reinterpret_cast<const char*>(data + at), static_cast<size_t>(len));
    v.scores.push_back(score);
    at += static_cast<uint64_t>(len);
  }
  if (v.pieces.size() < 3) {
    *why = fmt::format("{} tokens, fewer than <unk>, <s>, </s>", v.pieces.size());
    return std::nullopt;
  }
  return v;
}

}  // namespace attnsparse
