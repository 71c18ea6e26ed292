#include "ops/quant/mix.h"

#include <cctype>

#include "core/error.h"
#include "ops/quant/formats.h"

namespace attnsparse::ops::quant {

namespace {

enum class Mix { Plain, Q2_K, Q3_K_M, Q4_K_M, Q5_K_M };

struct Entry {
  FileType ft;
  Mix mix;
};

const Entry kEntries[] = {
    {{"F32", 0, DType::F32}, Mix::Plain},       {{"F16", 1, DType::F16}, Mix::Plain},
    {{"BF16", 32, DType::BF16}, Mix::Plain},    {{"Q8_0", 7, DType::Q8_0}, Mix::Plain},
    {{"Q4_0", 2, DType::Q4_0}, Mix::Plain},     {{"Q4_1", 3, DType::Q4_1}, Mix::Plain},
    {{"Q5_0", 8, DType::Q5_0}, Mix::Plain},     {{"Q5_1", 9, DType::Q5_1}, Mix::Plain},
    {{"Q2_K", 10, DType::Q2_K}, Mix::Q2_K},     {{"Q3_K_M", 12, DType::Q3_K}, Mix::Q3_K_M},
    {{"Q4_K_M", 15, DType::Q4_K}, Mix::Q4_K_M}, {{"Q5_K_M", 17, DType::Q5_K}, Mix::Q5_K_M},
    {{"Q6_K", 18, DType::Q6_K}, Mix::Plain},
};

const Entry* find_entry(std::string_view name) {
  std::string up(name);
  for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (up == "Q3_K") up = "Q3_K_M";
  if (up == "Q4_K") up = "Q4_K_M";
  if (up == "Q5_K") up = "Q5_K_M";
  for (const Entry& e : kEntries)
    if (up == e.ft.name) return &e;
  return nullptr;
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// Layer index of "blk.N.*" (-1 otherwise).
int layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  return std::atoi(name.c_str() + 4);
}

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third
// in between.
bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

}  // namespace

std::optional<FileType> find_file_type(std::string_view name) {
  if (const Entry* e = find_entry(name)) return e->ft;
  return std::nullopt;
}

std::optional<uint32_t> uniform_file_type(DType type) {
  switch (type) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q4_1: return 3;
    case DType::Q8_0: return 7;
    case DType::Q5_0: return 8;
    case DType::Q5_1: return 9;
    case DType::Q2_K: return 10;
    case DType::Q3_K: return 11;
    case DType::Q4_K: return 14;
    case DType::Q5_K: return 16;
    case DType::Q6_K: return 18;
    case DType::IQ4_NL: return 25;
    case DType::IQ3_S: return 26;
    case DType::IQ4_XS: return 30;
    case DType::BF16: return 32;
    case DType::TQ2_0: return 37;
    default: return std::nullopt;
  }
}

std::string file_type_names() {
  std::string s;
  for (const Entry& e : kEntries) s += std::string(s.empty() ? "" : ", ") + e.ft.name;
  return s + " (Q3_K, Q4_K, Q5_K: the _M mixes)";
}

std::optional<DType> tensor_type(const FileType& ft, const TensorPlace& t) {
  const Entry* e = find_entry(ft.name);
  if (e == nullptr) fail("unknown file type {}", ft.name);
  // Only 2-D (and higher) weights are quantised; llama-quantize also keeps these as they are.
  const std::string& n = t.name;
  if (t.n_dims < 2 || n.size() < 7 || n.compare(n.size() - 7, 7, ".weight") != 0) return std::nullopt;
  if (contains(n, "_norm") || contains(n, "ffn_gate_inp") || contains(n, "pos_embd") || contains(n, "token_types"))
    return std::nullopt;
  DType type = ft.base;
  const bool is_output = n == "output.weight";
  const int layer = layer_of(n);
  if (is_output) {
    // The output matrix: Q6_K unless the file is Q8_0 or a float type.
    if (type != DType::Q8_0 && dtype_traits(type).block_size > 1) type = DType::Q6_K;
  } else if (contains(n, "attn_v.weight")) {
    switch (e->mix) {
      case Mix::Q2_K: type = t.n_gqa >= 4 ? DType::Q4_K : DType::Q3_K; break;
      case Mix::Q3_K_M: type = layer < 2 ? DType::Q5_K : DType::Q4_K; break;
      case Mix::Q4_K_M:
      case Mix::Q5_K_M:
        if (use_more_bits(layer, t.n_layer)) type = DType::Q6_K;
        break;
      default: break;
    }
  } else if (contains(n, "ffn_down")) {
    switch (e->mix) {
      case Mix::Q2_K: type = DType::Q3_K; break;
      case Mix::Q3_K_M: type = layer < t.n_layer / 16 ? DType::Q5_K : DType::Q4_K; break;
      case Mix::Q4_K_M:
      case Mix::Q5_K_M:
        if (use_more_bits(layer, t.n_layer)) type = DType::Q6_K;
        break;
      default: break;
    }
  } else if (contains(n, "attn_output.weight")) {
    if (e->mix == Mix::Q2_K) type = DType::Q3_K;
    else if (e->mix == Mix::Q3_K_M) type = DType::Q4_K;
  }
  // Rows that do not split into the type's blocks: llama-quantize's fallbacks.
  if (t.row_length % dtype_traits(type).block_size != 0) {
    DType fb = type;
    if (type == DType::Q4_K) fb = DType::Q5_0;
    else if (type == DType::Q5_K) fb = DType::Q5_1;
    else if (type == DType::Q6_K) fb = DType::Q8_0;
    if (fb == type || t.row_length % dtype_traits(fb).block_size != 0)
      fail("tensor '{}': rows of {} elements do not fit {} blocks of {} and no writable fallback type fits",
           n, t.row_length, dtype_name(type), dtype_traits(type).block_size);
    type = fb;
  }
  if (format(type).quantize == nullptr) fail("tensor '{}': {} cannot be written", n, dtype_name(type));
  return type;
}

}  // namespace attnsparse::ops::quant
