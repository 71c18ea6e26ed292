// The tokenizer algorithms, following llama.cpp (src/llama-vocab.cpp) so that our ids
// equal llama.cpp's: special-token partition of the input (tokenizer_st_partition),
// SentencePiece-style score merges (llm_tokenizer_spm), byte-level BPE with merge ranks
// (llm_tokenizer_bpe). Both merge loops use a priority queue of candidate pairs, so a
// piece of n characters costs O(n log n), not O(n^2).
#include <algorithm>
#include <cstring>
#include <queue>

#include "core/error.h"
#include "model/tokenizer_impl.h"

namespace attnsparse::tok {
namespace {

const char kSpaceEscape[] = "\xE2\x96\x81";  // U+2581 "▁"

std::string escape_spaces(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 16);
  for (char c : s) {
    if (c == ' ')
      out += kSpaceEscape;
    else
      out += c;
  }
  return out;
}

std::string unescape_spaces(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, 3, kSpaceEscape) == 0) {
      out += ' ';
      i += 3;
    } else {
      out += s[i++];
    }
  }
  return out;
}

bool ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

int parse_byte_token(std::string_view t) {  // "<0xAB>" -> 0xAB, else -1
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  int v = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = t[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else return -1;
  }
  return v;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct Symbol {
  int32_t prev, next;
  uint32_t start, n;  // bytes of the piece
  int32_t id;         // ByteBpe/SpmBpe: vocabulary id of the text, -1 if none
};

}  // namespace

TokenizerImpl::TokenizerImpl(VocabSpec spec) : spec_(std::move(spec)) {
  const size_t n = spec_.tokens.size();
  if (n == 0) fail_file(spec_.source, "the tokenizer has no tokens");
  if (n > static_cast<size_t>(INT32_MAX)) fail_file(spec_.source, "too many tokens ({})", n);
  if (spec_.types.empty()) spec_.types.assign(n, kNormal);
  if (spec_.types.size() != n)
    fail_file(spec_.source, "{} token types for {} tokens", spec_.types.size(), n);
  if (spec_.algo == Algo::Spm) {
    if (spec_.scores.empty()) spec_.scores.assign(n, 0.0f);
    if (spec_.scores.size() != n)
      fail_file(spec_.source, "{} token scores for {} tokens", spec_.scores.size(), n);
  }
  for (const char* what : {"bos", "eos", "unknown"}) {
    const int32_t id = what[0] == 'b' ? spec_.bos : what[0] == 'e' ? spec_.eos : spec_.unk;
    if (id < -1 || id >= static_cast<int32_t>(n))
      fail_file(spec_.source, "{} token id {} is outside the vocabulary of {} tokens", what, id, n);
  }
  if (spec_.add_bos && spec_.bos < 0)
    fail_file(spec_.source, "the tokenizer adds a BOS token but defines none");
  if (spec_.add_eos && spec_.eos < 0)
    fail_file(spec_.source, "the tokenizer adds an EOS token but defines none");

  token_to_id_.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    if (spec_.tokens[i].empty()) spec_.tokens[i] = "[EMPTY_" + std::to_string(i) + "]";
    token_to_id_[spec_.tokens[i]] = static_cast<int32_t>(i);  // a later duplicate wins
  }

  merges_.reserve(spec_.merges.size() * 2);
  std::string joined;
  for (size_t r = 0; r < spec_.merges.size(); ++r) {
    const auto& [l, rr] = spec_.merges[r];
    const int32_t a = find(l), b = find(rr);
    if (a < 0 || b < 0) continue;  // can never apply: a side is not a token
    joined.assign(l).append(rr);
    merges_.emplace(pair_key(a, b), Merge{static_cast<int32_t>(r), find(joined)});
  }
  spec_.merges.clear();
  spec_.merges.shrink_to_fit();

  char buf[8];
  for (int b = 0; b < 256; ++b) {
    snprintf(buf, sizeof buf, "<0x%02X>", b);
    byte_tokens_[b] = find(buf);
  }

  for (size_t i = 0; i < n; ++i) {
    const uint8_t t = spec_.types[i];
    if (t == kUnknown || t == kControl || t == kUserDefined) special_.push_back(static_cast<int32_t>(i));
  }
  std::stable_sort(special_.begin(), special_.end(), [&](int32_t a, int32_t b) {
    return spec_.tokens[a].size() > spec_.tokens[b].size();
  });
  strip_.assign(n, 0);
  for (int32_t id : spec_.lstrip)
    if (id >= 0 && id < static_cast<int32_t>(n)) strip_[id] |= 1;
  for (int32_t id : spec_.rstrip)
    if (id >= 0 && id < static_cast<int32_t>(n)) strip_[id] |= 2;
}

std::string TokenizerImpl::type_name() const {
  switch (spec_.algo) {
    case Algo::Spm: return "spm";
    case Algo::ByteBpe: return "bpe/" + spec_.pre_name;
    case Algo::SpmBpe: return "bpe-spm";
  }
  return "?";
}

// Splits the text at every occurrence of a special token (control, user-defined and
// unknown tokens), longest tokens first, as llama.cpp's tokenizer_st_partition.
std::vector<TokenizerImpl::Fragment> TokenizerImpl::partition(std::string_view text) const {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({-1, 0, text.size()});
  std::vector<Fragment> next;
  for (const int32_t id : special_) {
    const std::string& t = spec_.tokens[id];
    bool any = false;
    for (const auto& f : frags) {
      if (f.token < 0 && std::string_view(text.data() + f.begin, f.end - f.begin).find(t) != std::string_view::npos) {
        any = true;
        break;
      }
    }
    if (!any) continue;
    next.clear();
    for (const auto& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t b = f.begin;
      const size_t e = f.end;
      while (b < e) {
        const size_t m = std::string_view(text.data(), e).find(t, b);
        if (m == std::string_view::npos) break;
        size_t left_end = m;
        if (strip_[id] & 1)
          while (left_end > b && ascii_space(text[left_end - 1])) --left_end;
        if (left_end > b) next.push_back({-1, b, left_end});
        next.push_back({id, 0, 0});
        b = m + t.size();
        if (strip_[id] & 2)
          while (b < e && ascii_space(text[b])) ++b;
      }
      if (b < e) next.push_back({-1, b, e});
    }
    frags.swap(next);
  }
  return frags;
}

std::vector<int32_t> TokenizerImpl::encode(std::string_view text, bool add_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && spec_.add_bos) out.push_back(spec_.bos);
  bool prev_special = true;  // SentencePiece: a space before the first text and after specials
  for (const Fragment& f : partition(text)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      prev_special = true;
      continue;
    }
    const std::string_view raw = text.substr(f.begin, f.end - f.begin);
    if (spec_.algo == Algo::ByteBpe) {
      encode_byte_bpe(raw, out);
    } else {
      std::string s = (spec_.add_space_prefix && prev_special) ? std::string(1, ' ') : std::string();
      s.append(raw);
      s = escape_spaces(s);
      if (spec_.algo == Algo::Spm)
        encode_spm(s, out);
      else
        bpe_word(s, out);
    }
    prev_special = false;
  }
  if (add_special && spec_.add_eos) out.push_back(spec_.eos);
  return out;
}

void TokenizerImpl::byte_fallback(std::string_view bytes, std::vector<int32_t>& out) const {
  for (const char c : bytes) {
    int32_t id = byte_tokens_[static_cast<unsigned char>(c)];
    if (id < 0) id = find(std::string_view(&c, 1));
    if (id < 0) id = spec_.unk;
    if (id >= 0) out.push_back(id);
  }
}

// llm_tokenizer_spm: start from UTF-8 characters, repeatedly merge the adjacent pair
// whose concatenation is the token with the highest score (leftmost on ties).
void TokenizerImpl::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<Symbol> sym;
  sym.reserve(text.size());
  for (size_t off = 0; off < text.size();) {
    const size_t len = std::min(utf8_len(static_cast<unsigned char>(text[off])), text.size() - off);
    const int32_t idx = static_cast<int32_t>(sym.size());
    sym.push_back({idx - 1, off + len == text.size() ? -1 : idx + 1, static_cast<uint32_t>(off),
                   static_cast<uint32_t>(len), -1});
    off += len;
  }
  struct Bigram {
    int32_t left, right;
    float score;
    uint32_t size;
  };
  auto cmp = [](const Bigram& l, const Bigram& r) {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(cmp)> queue(cmp);
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const uint32_t size = sym[left].n + sym[right].n;
    const int32_t id = find(text.substr(sym[left].start, size));
    if (id < 0) return;
    queue.push({left, right, spec_.scores[id], size});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) try_add(i - 1, i);
  while (!queue.empty()) {
    const Bigram bg = queue.top();
    queue.pop();
    Symbol& l = sym[bg.left];
    Symbol& r = sym[bg.right];
    if (l.n == 0 || r.n == 0 || l.n + r.n != bg.size) continue;
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = bg.left;
    try_add(l.prev, bg.left);
    try_add(bg.left, l.next);
  }
  if (sym.empty()) return;
  for (int32_t i = 0; i != -1; i = sym[i].next) {
    const std::string_view s = text.substr(sym[i].start, sym[i].n);
    const int32_t id = find(s);
    if (id >= 0)
      out.push_back(id);
    else
      byte_fallback(s, out);
  }
}

// Merge-rank BPE over the UTF-8 characters of one word (llm_tokenizer_bpe_session):
// repeatedly apply the lowest-rank merge among adjacent pairs (leftmost on ties).
void TokenizerImpl::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<Symbol> sym;
  sym.reserve(word.size());
  for (size_t off = 0; off < word.size();) {
    const size_t len = std::min(utf8_len(static_cast<unsigned char>(word[off])), word.size() - off);
    const int32_t idx = static_cast<int32_t>(sym.size());
    sym.push_back({idx - 1, off + len == word.size() ? -1 : idx + 1, static_cast<uint32_t>(off),
                   static_cast<uint32_t>(len), find(word.substr(off, len))});
    off += len;
  }
  struct Bigram {
    int32_t rank, left, right, lid, rid, result;
  };
  auto cmp = [](const Bigram& l, const Bigram& r) {
    return l.rank > r.rank || (l.rank == r.rank && l.left > r.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(cmp)> queue(cmp);
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const int32_t a = sym[left].id, b = sym[right].id;
    if (a < 0 || b < 0) return;
    const auto it = merges_.find(pair_key(a, b));
    if (it == merges_.end()) return;
    queue.push({it->second.rank, left, right, a, b, it->second.result});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) try_add(i - 1, i);
  while (!queue.empty()) {
    const Bigram bg = queue.top();
    queue.pop();
    Symbol& l = sym[bg.left];
    Symbol& r = sym[bg.right];
    if (l.n == 0 || r.n == 0 || l.id != bg.lid || r.id != bg.rid || l.next != bg.right) continue;
    l.n += r.n;
    l.id = bg.result;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = bg.left;
    try_add(l.prev, bg.left);
    try_add(bg.left, l.next);
  }
  if (sym.empty()) return;
  for (int32_t i = 0; i != -1; i = sym[i].next) {
    if (sym[i].id >= 0) {
      out.push_back(sym[i].id);
      continue;
    }
    const std::string_view s = word.substr(sym[i].start, sym[i].n);
    if (spec_.algo == Algo::SpmBpe) {
      byte_fallback(s, out);
    } else {
      // As llama.cpp: the single bytes of the piece that are tokens.
      for (const char c : s) {
        const int32_t id = find(std::string_view(&c, 1));
        if (id >= 0) out.push_back(id);
      }
    }
  }
}

void TokenizerImpl::encode_byte_bpe(std::string_view text, std::vector<int32_t>& out) const {
  std::string prefixed;
  if (spec_.byte_prefix_space && !text.empty() && text[0] != ' ') {
    prefixed = " ";
    prefixed.append(text);
    text = prefixed;
  }
  const std::vector<uint32_t> cpts = utf8_to_cpts(text);
  const auto& b2u = byte_to_unicode();
  std::string word, utf8;
  for (const auto& [b, e] : split_pieces(cpts, spec_.split)) {
    word.clear();
    for (uint32_t i = b; i < e; ++i) {
      utf8.clear();
      append_utf8(utf8, cpts[i]);
      for (const char c : utf8) word += b2u[static_cast<unsigned char>(c)];
    }
    if (spec_.ignore_merges) {
      const int32_t id = find(word);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
    }
    bpe_word(word, out);
  }
}

std::string TokenizerImpl::piece(int32_t id, bool render_special) const {
  const std::string& t = spec_.tokens[id];
  const uint8_t type = spec_.types[id];
  if (type == kControl || type == kUnknown) return render_special ? t : std::string();
  if (type == kUserDefined) return t;
  // As llama.cpp's token_to_piece: unused tokens (and byte tokens of a byte-level BPE
  // vocabulary) render as nothing.
  if (type == kUnused) return std::string();
  if (spec_.algo == Algo::ByteBpe) {
    if (type == kByte) return std::string();
    std::string out;
    for (const uint32_t cp : utf8_to_cpts(t)) {
      const int b = unicode_to_byte(cp);
      if (b >= 0)
        out += static_cast<char>(b);
      else
        append_utf8(out, cp);
    }
    return out;
  }
  if (type == kByte) {
    const int b = parse_byte_token(t);
    if (b >= 0) return std::string(1, static_cast<char>(b));
  }
  return unescape_spaces(t);
}

std::string TokenizerImpl::token_piece(int32_t id) const {
  if (id < 0 || id >= n_vocab()) fail("token id {} is outside the vocabulary of {} tokens", id, n_vocab());
  return piece(id, true);
}

std::string TokenizerImpl::decode(std::span<const int32_t> tokens) const {
  std::string out;
  bool first = true;
  for (const int32_t id : tokens) {
    if (id < 0 || id >= n_vocab()) fail("token id {} is outside the vocabulary of {} tokens", id, n_vocab());
    std::string p = piece(id, false);
    if (p.empty()) continue;
    // The space SentencePiece put before the text is not part of it.
    if (first && spec_.algo != Algo::ByteBpe && spec_.add_space_prefix && p[0] == ' ') p.erase(0, 1);
    first = false;
    out += p;
  }
  return out;
}

}  // namespace attnsparse::tok
