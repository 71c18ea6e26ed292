// Key sets: constructors, membership (the naive definition the reference uses) and the
// kept count.
#include "ops/keyset.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"

namespace attnsparse::ops {

KeySet KeySet::all() { return KeySet(); }

KeySet KeySet::window(int64_t window) {
  if (window < 1) fail("key set: window must be >= 1 (got {})", window);
  return sink_window(0, window);
}

KeySet KeySet::sink_window(int64_t sink, int64_t window) {
  if (sink < 0) fail("key set: sink must be >= 0 (got {})", sink);
  if (window < 0) fail("key set: window must be >= 0 (got {})", window);
  KeySet s;
  s.kind_ = Kind::Range;
  s.a_ = sink;
  s.b_ = window;
  return s;
}

KeySet KeySet::dilated(int64_t window, int64_t rate) {
  if (window < 1 || rate < 1) fail("key set: dilated needs window >= 1 and rate >= 1 (got {}:{})", window, rate);
  KeySet s;
  s.kind_ = Kind::Dilated;
  s.a_ = rate;
  s.b_ = window;
  return s;
}

KeySet KeySet::strided(int64_t stride) {
  if (stride < 1) fail("key set: stride must be >= 1 (got {})", stride);
  KeySet s;
  s.kind_ = Kind::Strided;
  s.a_ = stride;
  return s;
}

KeySet KeySet::block_local(int64_t block) {
  if (block < 1) fail("key set: block must be >= 1 (got {})", block);
  KeySet s;
  s.kind_ = Kind::BlockLocal;
  s.a_ = block;
  return s;
}

KeySet KeySet::block_mask(int64_t q_block, int64_t k_block, int64_t q_pos0, int64_t n_qblocks,
                          int64_t n_kblocks, int mask_heads, std::vector<uint8_t> bits) {
  if (q_block < 1 || k_block < 1) fail("key set: block sizes must be >= 1 (got {}x{})", q_block, k_block);
  if (mask_heads < 1 || n_qblocks < 0 || n_kblocks < 0 ||
      static_cast<int64_t>(bits.size()) != mask_heads * n_qblocks * n_kblocks)
    fail("key set: block mask has {} bits, expected {} heads x {} x {}", bits.size(), mask_heads,
         n_qblocks, n_kblocks);
  KeySet s;
  s.kind_ = Kind::BlockMask;
  s.a_ = q_block;
  s.b_ = k_block;
  s.c_ = q_pos0 / q_block;
  s.nqb_ = n_qblocks;
  s.nkb_ = n_kblocks;
  s.sub_heads_ = mask_heads;
  s.bits_ = std::make_shared<const std::vector<uint8_t>>(std::move(bits));
  return s;
}

KeySet KeySet::index_lists(int64_t n_q, int list_heads, std::vector<int64_t> row_ptr,
                           std::vector<int32_t> slots) {
  if (list_heads < 1 || n_q < 0 || static_cast<int64_t>(row_ptr.size()) != list_heads * n_q + 1)
    fail("key set: index lists need {} x {} + 1 row pointers, got {}", list_heads, n_q, row_ptr.size());
  if (row_ptr.front() != 0 || row_ptr.back() != static_cast<int64_t>(slots.size()))
    fail("key set: index list row pointers do not cover the {} slots", slots.size());
  for (size_t r = 0; r + 1 < row_ptr.size(); ++r) {
    if (row_ptr[r] > row_ptr[r + 1]) fail("key set: index list row pointers decrease at row {}", r);
    for (int64_t x = row_ptr[r]; x < row_ptr[r + 1]; ++x) {
      if (slots[x] < 0) fail("key set: negative slot {} in row {}", slots[x], r);
      if (x > row_ptr[r] && slots[x] <= slots[x - 1])
        fail("key set: index list row {} is not strictly increasing", r);
    }
  }
  KeySet s;
  s.kind_ = Kind::IndexList;
  s.nq_ = n_q;
  s.sub_heads_ = list_heads;
  s.row_ptr_ = std::make_shared<const std::vector<int64_t>>(std::move(row_ptr));
  s.slots_ = std::make_shared<const std::vector<int32_t>>(std::move(slots));
  return s;
}

KeySet KeySet::per_head(std::vector<KeySet> heads) {
  if (heads.empty()) fail("key set: per-head set with no heads");
  for (const auto& h : heads)
    if (h.kind_ == Kind::PerHead) fail("key set: per-head sets cannot nest");
  KeySet s;
  s.kind_ = Kind::PerHead;
  s.sub_heads_ = static_cast<int>(heads.size());
  s.heads_ = std::make_shared<const std::vector<KeySet>>(std::move(heads));
  return s;
}

const KeySet& KeySet::for_head(int head) const {
  if (kind_ != Kind::PerHead) return *this;
  if (head < 0 || head >= sub_heads_) fail("key set: head {} out of range (set has {} heads)", head, sub_heads_);
  return (*heads_)[head];
}

bool KeySet::block_bit(int head, int64_t qb, int64_t kb) const {
  if (qb < 0 || qb >= nqb_ || kb < 0 || kb >= nkb_) return false;
  const int h = sub_heads_ == 1 ? 0 : head;
  return (*bits_)[(h * nqb_ + qb) * nkb_ + kb] != 0;
}

const int32_t* KeySet::row_begin(int head, int64_t i) const {
  const int h = sub_heads_ == 1 ? 0 : head;
  return slots_->data() + (*row_ptr_)[h * nq_ + i];
}
const int32_t* KeySet::row_end(int head, int64_t i) const {
  const int h = sub_heads_ == 1 ? 0 : head;
  return slots_->data() + (*row_ptr_)[h * nq_ + i + 1];
}

int64_t KeySet::list_entries() const {
  return kind_ == Kind::IndexList ? static_cast<int64_t>(slots_->size()) : 0;
}

bool KeySet::contains(int head, int64_t i, int64_t t, int64_t j, int64_t p) const {
  if (p > t) return false;
  const int64_t d = t - p;
  switch (kind_) {
    case Kind::All: return true;
    case Kind::Range: return p < a_ || b_ <= 0 || d < b_;
    case Kind::Dilated: return d % a_ == 0 && d / a_ < b_;
    case Kind::Strided: return d < a_ || d % a_ == 0;
    case Kind::BlockLocal: return p / a_ == t / a_;
    case Kind::BlockMask: return block_bit(head, t / a_ - c_, j / b_);
    case Kind::IndexList: {
      if (i < 0 || i >= nq_) return false;
      return std::binary_search(row_begin(head, i), row_end(head, i), static_cast<int32_t>(j));
    }
    case Kind::PerHead: return for_head(head).contains(head, i, t, j, p);
  }
  return false;
}

namespace {
// Closed-form |G_t| for positional kinds when slot j is position j and n_kv > t.
int64_t closed_count(const KeySet& s, int64_t t) {
  const int64_t n = t + 1;  // causal keys 0..t
  switch (s.kind()) {
    case KeySet::Kind::All: return n;
    case KeySet::Kind::Range: {
      if (s.window_size() <= 0) return n;
      const int64_t win = std::min(s.window_size(), n);
      const int64_t sink = std::min(s.sink(), n - win);  // sink keys not inside the window
      return win + std::max<int64_t>(0, sink);
    }
    case KeySet::Kind::Dilated: return std::min(s.window_size(), t / s.rate() + 1);
    case KeySet::Kind::Strided: {
      const int64_t l = s.rate();
      return std::min(l, n) + (t >= l ? t / l : 0);
    }
    case KeySet::Kind::BlockLocal: return t % s.rate() + 1;
    default: return -1;
  }
}
}  // namespace

int64_t KeySet::kept(int n_head, int64_t n_q, int64_t q_pos0, int64_t n_kv,
                     const int32_t* key_pos, int64_t window) const {
  // Inside the native window: 0 <= t - p < window.
  auto inside = [window](int64_t t, int64_t p) { return window <= 0 || t - p < window; };
  // A cache whose slot j holds position j counts with the closed forms.
  if (key_pos != nullptr) {
    bool identity = true;
    for (int64_t j = 0; j < n_kv && identity; ++j) identity = key_pos[j] == j;
    if (identity) key_pos = nullptr;
  }
  if (kind_ == Kind::PerHead) {
    if (sub_heads_ != n_head) fail("key set: per-head set has {} heads, attention has {}", sub_heads_, n_head);
    int64_t total = 0;
    for (int h = 0; h < n_head; ++h) {
      // Count head h alone: a shared sub-set counted for one head.
      const KeySet& sub = (*heads_)[h];
      if (sub.sub_heads_ == 1) {
        total += sub.kept(1, n_q, q_pos0, n_kv, key_pos, window);
      } else {
        for (int64_t i = 0; i < n_q; ++i)
          for (int64_t j = 0; j < n_kv; ++j) {
            const int64_t p = key_pos ? key_pos[j] : j;
            total += sub.contains(h, i, q_pos0 + i, j, p) && inside(q_pos0 + i, p);
          }
      }
    }
    return total;
  }
  const bool shared = sub_heads_ == 1;
  const int heads = shared ? 1 : n_head;
  int64_t total = 0;
  for (int h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < n_q; ++i) {
      const int64_t t = q_pos0 + i;
      int64_t c = -1;
      if (key_pos == nullptr && n_kv > t && window <= 0) c = closed_count(*this, t);
      if (c < 0 && kind_ == Kind::IndexList) {
        c = 0;
        for (const int32_t* x = row_begin(h, i); x != row_end(h, i); ++x) {
          const int64_t p = key_pos ? key_pos[*x] : *x;
          c += *x < n_kv && p <= t && inside(t, p);
        }
      }
      if (c < 0 && kind_ == Kind::BlockMask && key_pos == nullptr && window <= 0) {
        c = 0;
        for (int64_t kb = 0; kb < nkb_; ++kb) {
          if (!block_bit(h, t / a_ - c_, kb)) continue;
          const int64_t lo = kb * b_, hi = std::min({n_kv, (kb + 1) * b_, t + 1});
          c += std::max<int64_t>(0, hi - lo);
        }
      }
      if (c < 0) {
        c = 0;
        for (int64_t j = 0; j < n_kv; ++j) {
          const int64_t p = key_pos ? key_pos[j] : j;
          c += contains(h, i, t, j, p) && inside(t, p);
        }
      }
      total += c;
    }
  }
  return shared ? total * n_head : total;
}

void KeySet::validate(int n_head, int64_t n_q) const {
  switch (kind_) {
    case Kind::PerHead:
      if (sub_heads_ != n_head) fail("key set: per-head set has {} heads, attention has {}", sub_heads_, n_head);
      for (const auto& h : *heads_) h.validate(n_head, n_q);
      return;
    case Kind::BlockMask:
      if (sub_heads_ != 1 && sub_heads_ != n_head)
        fail("key set: block mask has {} heads, attention has {}", sub_heads_, n_head);
      return;
    case Kind::IndexList:
      if (sub_heads_ != 1 && sub_heads_ != n_head)
        fail("key set: index lists have {} heads, attention has {}", sub_heads_, n_head);
      if (nq_ != n_q) fail("key set: index lists have {} query rows, attention has {} queries", nq_, n_q);
      return;
    default: return;
  }
}

std::string KeySet::describe() const {
  switch (kind_) {
    case Kind::All: return "all";
    case Kind::Range: return a_ > 0 ? fmt::format("sink={},window={}", a_, b_) : fmt::format("window={}", b_);
    case Kind::Dilated: return fmt::format("dilated={}:{}", b_, a_);
    case Kind::Strided: return fmt::format("strided={}", a_);
    case Kind::BlockLocal: return fmt::format("block={}", a_);
    case Kind::BlockMask: return fmt::format("block-mask {}x{} ({} heads)", a_, b_, sub_heads_);
    case Kind::IndexList: return fmt::format("index-lists ({} rows, {} keys)", row_ptr_->size() - 1, slots_->size());
    case Kind::PerHead: return fmt::format("per-head ({} heads)", sub_heads_);
  }
  return "?";
}

}  // namespace attnsparse::ops
