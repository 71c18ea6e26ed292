// Key sets: which cache slots each query visits in sparse attention, without
// materialising an n_q x n_kv mask (docs/methods.md §2: the set G_t; attention renormalises
// over it). The attention core skips tiles of keys outside the set and masks inside
// partial tiles; attention_reference evaluates contains() key by key (the naive form).
//
// Conventions. Query i of a call has absolute position t = q_pos0 + i. Cache slot j
// holds the key at absolute position p = key_pos[j] (p = j when key_pos is null).
// Every set is intersected with the causal set {p <= t}.
//   all                 every causal key (dense)
//   range(sink, window) p < sink  or  t - p < window          (window <= 0: unlimited)
//   dilated(w, r)       t - p = r*m for m in 0..w-1
//   strided(l)          t - p < l  or  (t - p) mod l == 0
//   block local(b)      floor(p/b) == floor(t/b)                  (block-local attention)
//   block mask          per (query block, key block) a bit; query block of position t is
//                       floor(t/q_block) - floor(q_pos0/q_block), key block of slot j is
//                       floor(j/k_block) (slot space); shared by all heads or per head
//   index lists         per query (or per head and query) a sorted list of slots (CSR)
//   per head            a different key set per query head
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace attnsparse::ops {

class KeySet {
 public:
  enum class Kind { All, Range, Dilated, Strided, BlockLocal, BlockMask, IndexList, PerHead };

  static KeySet all();
  static KeySet window(int64_t window);
  static KeySet sink_window(int64_t sink, int64_t window);
  static KeySet dilated(int64_t window, int64_t rate);
  static KeySet strided(int64_t stride);
  static KeySet block_local(int64_t block);
  // bits: [mask_heads][n_qblocks][n_kblocks], 0/1; mask_heads is 1 (shared) or n_head.
  static KeySet block_mask(int64_t q_block, int64_t k_block, int64_t q_pos0, int64_t n_qblocks,
                           int64_t n_kblocks, int mask_heads, std::vector<uint8_t> bits);
  // Rows: list_heads x n_q (list_heads 1 = shared by all heads, or n_head); row r holds
  // slots[row_ptr[r] .. row_ptr[r+1]) in increasing order.
  static KeySet index_lists(int64_t n_q, int list_heads, std::vector<int64_t> row_ptr,
                            std::vector<int32_t> slots);
  static KeySet per_head(std::vector<KeySet> heads);

  Kind kind() const { return kind_; }
  // The set a query head uses (itself unless per-head).
  const KeySet& for_head(int head) const;
  // Membership including causality: query i (position t) of `head` visits slot j at
  // position p.
  bool contains(int head, int64_t i, int64_t t, int64_t j, int64_t p) const;
  // |G_t| summed over heads and queries of the call (the kept count). window > 0: the
  // layer's native sliding window (AttentionShape::window), which the attention core
  // intersects with every set: only keys with t - p < window count.
  int64_t kept(int n_head, int64_t n_q, int64_t q_pos0, int64_t n_kv,
               const int32_t* key_pos, int64_t window = 0) const;
  std::string describe() const;
  // Heads with their own data: 1 when shared by all heads (BlockMask, IndexList, PerHead).
  int heads() const { return sub_heads_; }
  // Throws Error when the set does not fit an attention call of this shape.
  void validate(int n_head, int64_t n_q) const;

  // Parameters (meaning depends on kind).
  int64_t sink() const { return a_; }
  int64_t window_size() const { return b_; }  // Range: window; Dilated: w
  int64_t rate() const { return a_; }          // Dilated: r; Strided: l; BlockLocal: b
  // Block mask
  int64_t q_block() const { return a_; }
  int64_t k_block() const { return b_; }
  int64_t q_base() const { return c_; }  // floor(q_pos0 / q_block)
  int64_t n_qblocks() const { return nqb_; }
  int64_t n_kblocks() const { return nkb_; }
  bool block_bit(int head, int64_t qblock, int64_t kblock) const;
  // Index lists
  int64_t n_rows_q() const { return nq_; }
  const int32_t* row_begin(int head, int64_t i) const;
  const int32_t* row_end(int head, int64_t i) const;
  int64_t list_entries() const;  // slots in all lists (IndexList), 0 otherwise

 private:
  Kind kind_ = Kind::All;
  int64_t a_ = 0, b_ = 0, c_ = 0;
  int64_t nqb_ = 0, nkb_ = 0, nq_ = 0;
  int sub_heads_ = 1;
  std::shared_ptr<const std::vector<uint8_t>> bits_;
  std::shared_ptr<const std::vector<int64_t>> row_ptr_;
  std::shared_ptr<const std::vector<int32_t>> slots_;
  std::shared_ptr<const std::vector<KeySet>> heads_;
};

}  // namespace attnsparse::ops
