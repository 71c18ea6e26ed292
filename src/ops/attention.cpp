// Provisional naive attention core (correct, slow); the tiled online-softmax core
// replaces it behind the same interface.
#include "ops/attention.h"

#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"

namespace attnsparse::ops {

void attention_reference(const AttentionShape& s, const AttentionArgs& a, const KeySet* keys,
                         RowObserver* observer) {
  if (keys != nullptr) fail("attention_reference: sparse key sets are not implemented yet");
  const int group = s.n_head / s.n_kv_head;
#pragma omp parallel
  {
    std::vector<float> p(s.n_kv);
    std::vector<int32_t> slots(s.n_kv);
#pragma omp for collapse(2) schedule(dynamic, 4)
    for (int h = 0; h < s.n_head; ++h) {
      for (int64_t i = 0; i < s.n_q; ++i) {
        const int64_t pos = s.q_pos0 + i;
        const float* q = a.q + i * a.q_stride + h * s.head_dim;
        const int kvh = h / group;
        int64_t n = 0;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < s.n_kv; ++j) {
          const int64_t kp = a.key_pos ? a.key_pos[j] : j;
          if (kp > pos) continue;
          const float* k = a.k + j * a.k_stride + kvh * s.head_dim;
          float dot = 0;
          for (int d = 0; d < s.head_dim; ++d) dot += q[d] * k[d];
          p[n] = dot * s.scale;
          slots[n] = static_cast<int32_t>(j);
          mx = std::max(mx, p[n]);
          ++n;
        }
        float sum = 0;
        for (int64_t j = 0; j < n; ++j) {
          p[j] = std::exp(p[j] - mx);
          sum += p[j];
        }
        float* o = a.out + i * a.out_stride + h * s.head_dim;
        for (int d = 0; d < s.head_dim; ++d) o[d] = 0;
        for (int64_t j = 0; j < n; ++j) {
          p[j] /= sum;
          const float* v = a.v + slots[j] * a.v_stride + kvh * s.head_dim;
          for (int d = 0; d < s.head_dim; ++d) o[d] += p[j] * v[d];
        }
        if (observer) observer->on_row(h, pos, p.data(), slots.data(), n);
      }
    }
  }
}

void attention(const AttentionShape& s, const AttentionArgs& a, const KeySet* keys,
               RowObserver* observer) {
  attention_reference(s, a, keys, observer);
}

}  // namespace attnsparse::ops
