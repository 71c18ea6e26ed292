#include "ops/quant.h"

#include <algorithm>
#include <cmath>

namespace attnsparse::ops::quant {

void quantize_act_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK8_0; ++b, x += kQK8_0) {
    float amax = 0.f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    y[b].d = fp32_to_fp16(d);
    const float id = amax != 0.f ? 127.f / amax : 0.f;
    // nearbyint rounds half to even in the default rounding mode, like _mm256_round_ps.
    for (int j = 0; j < kQK8_0; ++j) y[b].qs[j] = static_cast<int8_t>(std::nearbyint(x[j] * id));
  }
}

void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK8_0; ++b, x += kQK8_0) {
    float amax = 0.f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[b].d = fp32_to_fp16(d);
    for (int j = 0; j < kQK8_0; ++j) y[b].qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
  }
}

void quantize_act_q8_K(const float* x, BlockQ8_K* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    float max = 0.f, amax = 0.f;
    for (int j = 0; j < kQK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.f) {
      y[b].d = 0.f;
      std::memset(y[b].qs, 0, sizeof(y[b].qs));
      std::memset(y[b].bsums, 0, sizeof(y[b].bsums));
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < kQK_K; ++j) {
      const int v = static_cast<int>(std::nearbyint(iscale * x[j]));
      y[b].qs[j] = static_cast<int8_t>(std::min(127, v));
    }
    for (int g = 0; g < kQK_K / 16; ++g) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += y[b].qs[g * 16 + i];
      y[b].bsums[g] = static_cast<int16_t>(sum);
    }
    y[b].d = 1.f / iscale;
  }
}

double dot_q8_0_q8_0(const BlockQ8_0* w, const BlockQ8_0* a, int64_t n) {
  double sum = 0;
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    int32_t s = 0;
    for (int j = 0; j < kQK8_0; ++j) s += int32_t(w[b].qs[j]) * a[b].qs[j];
    sum += double(float(s) * (load_f16(w[b].d) * load_f16(a[b].d)));
  }
  return sum;
}

double dot_q4_0_q8_0(const BlockQ4_0* w, const BlockQ8_0* a, int64_t n) {
  double sum = 0;
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    int32_t s = 0;
    for (int j = 0; j < 16; ++j) {
      s += (int32_t(w[b].qs[j] & 0x0F) - 8) * a[b].qs[j];
      s += (int32_t(w[b].qs[j] >> 4) - 8) * a[b].qs[j + 16];
    }
    sum += double(float(s) * (load_f16(w[b].d) * load_f16(a[b].d)));
  }
  return sum;
}

void q4_K_block_ints(const BlockQ4_K& w, const BlockQ8_K& a, int32_t* sumi, int32_t* summ) {
  int32_t si = 0, sm = 0;
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, mn;
    get_scale_min_k4(j, w.scales, &sc, &mn);
    const uint8_t* q = w.qs + (j / 2) * 32;
    const int shift = (j % 2) * 4;
    int32_t s = 0;
    for (int l = 0; l < 32; ++l) s += int32_t((q[l] >> shift) & 0xF) * a.qs[j * 32 + l];
    si += int32_t(sc) * s;
    sm += int32_t(mn) * (a.bsums[2 * j] + a.bsums[2 * j + 1]);
  }
  *sumi = si;
  *summ = sm;
}

double dot_q4_K_q8_K(const BlockQ4_K* w, const BlockQ8_K* a, int64_t n) {
  double sum = 0;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    int32_t sumi, summ;
    q4_K_block_ints(w[b], a[b], &sumi, &summ);
    const float d = load_f16(w[b].d) * a[b].d;
    const float dmin = load_f16(w[b].dmin) * a[b].d;
    sum += double(d * float(sumi)) - double(dmin * float(summ));
  }
  return sum;
}

int32_t q6_K_block_int(const BlockQ6_K& w, const BlockQ8_K& a) {
  int32_t total = 0;
  for (int half = 0; half < 2; ++half) {
    const uint8_t* ql = w.ql + half * 64;
    const uint8_t* qh = w.qh + half * 32;
    const int8_t* sc = w.scales + half * 8;
    const int8_t* q8 = a.qs + half * 128;
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = int((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      total += sc[is + 0] * q1 * q8[l] + sc[is + 2] * q2 * q8[l + 32] +
               sc[is + 4] * q3 * q8[l + 64] + sc[is + 6] * q4 * q8[l + 96];
    }
  }
  return total;
}

double dot_q6_K_q8_K(const BlockQ6_K* w, const BlockQ8_K* a, int64_t n) {
  double sum = 0;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float d = load_f16(w[b].d) * a[b].d;
    sum += double(d * float(q6_K_block_int(w[b], a[b])));
  }
  return sum;
}

}  // namespace attnsparse::ops::quant
