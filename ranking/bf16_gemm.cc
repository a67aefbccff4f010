#include "ranking/bf16_gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "base/simd.h"

namespace feedrank::bf16 {
namespace {

#define FEEDRANK_BF16_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// R rows x C vectors of 16 outputs, over every input pair: the R x C
// accumulators stay in registers (at most 4 x 4 = 16 of the 32).
template <int R, int C>
FEEDRANK_BF16_TARGET void Block(const uint16_t* a, int a_stride, const uint32_t* b,
                                int pairs, int cols, const float* bias, float* out,
                                int out_stride) {
  // Unrolled by hand-placed pragmas: GCC 12 at -O2 keeps these small loops
  // as loops, and the accumulators then live in memory.
  __m512 acc[R][C];
#pragma GCC unroll 4
  for (int c = 0; c < C; ++c) {
    const __m512 init = _mm512_loadu_ps(bias + 16 * c);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[r][c] = init;
  }
  for (int p = 0; p < pairs; ++p) {
    __m512i w[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) {
      w[c] = _mm512_loadu_si512(b + size_t(p) * cols + 16 * c);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      int32_t pair;
      std::memcpy(&pair, a + size_t(r) * a_stride + 2 * p, sizeof pair);
      const __m512i x = _mm512_set1_epi32(pair);
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) {
        acc[r][c] = _mm512_dpbf16_ps(acc[r][c], (__m512bh)x, (__m512bh)w[c]);
      }
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) {
      _mm512_storeu_ps(out + size_t(r) * out_stride + 16 * c, acc[r][c]);
    }
  }
}

template <int R>
FEEDRANK_BF16_TARGET void Rows(const uint16_t* a, int a_stride, const PackedWeights& w,
                               float* out) {
  int c = 0;
  for (; c + 64 <= w.cols; c += 64) {
    Block<R, 4>(a, a_stride, w.data.data() + c, w.pairs, w.cols, w.bias.data() + c,
                out + c, w.cols);
  }
  const int left = (w.cols - c) / 16;
  const uint32_t* b = w.data.data() + c;
  const float* bias = w.bias.data() + c;
  if (left == 3) Block<R, 3>(a, a_stride, b, w.pairs, w.cols, bias, out + c, w.cols);
  if (left == 2) Block<R, 2>(a, a_stride, b, w.pairs, w.cols, bias, out + c, w.cols);
  if (left == 1) Block<R, 1>(a, a_stride, b, w.pairs, w.cols, bias, out + c, w.cols);
}

}  // namespace

bool Supported() {
  static const bool supported = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
  }();
  return supported;
}

PackedWeights Pack(const float* w, const float* bias, int k, int m) {
  PackedWeights p;
  p.k = k;
  p.m = m;
  p.pairs = (k + 1) / 2;
  p.cols = (m + 15) / 16 * 16;
  p.data.assign(size_t(p.pairs) * p.cols, 0);
  p.bias.assign(p.cols, 0.f);
  for (int j = 0; j < m; ++j) p.bias[j] = bias[j];
  for (int i = 0; i < k; ++i) {
    for (int j = 0; j < m; ++j) {
      const uint32_t h = simd::FloatToBf16(w[size_t(i) * m + j]);
      p.data[size_t(i / 2) * p.cols + j] |= (i % 2 == 0) ? h : h << 16;
    }
  }
  return p;
}

FEEDRANK_BF16_TARGET void ToBf16(const float* x, int n, int k, int stride,
                                 uint16_t* out) {
  for (int r = 0; r < n; ++r) {
    const float* row = x + size_t(r) * k;
    uint16_t* o = out + size_t(r) * stride;
    int j = 0;
    for (; j + 16 <= k; j += 16) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + j),
                          (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(row + j)));
    }
    if (j < k) {
      const __mmask16 mask = static_cast<__mmask16>((1u << (k - j)) - 1);
      const __m256i h = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, row + j));
      _mm256_mask_storeu_epi16(o + j, mask, h);
    }
    std::fill(o + k, o + stride, uint16_t{0});
  }
}

FEEDRANK_BF16_TARGET void Gemm(const uint16_t* a, int n, int a_stride,
                               const PackedWeights& w, float* out) {
  int r = 0;
  for (; r + 4 <= n; r += 4) {
    Rows<4>(a + size_t(r) * a_stride, a_stride, w, out + size_t(r) * w.cols);
  }
  const uint16_t* tail = a + size_t(r) * a_stride;
  float* o = out + size_t(r) * w.cols;
  switch (n - r) {
    case 3:
      Rows<3>(tail, a_stride, w, o);
      break;
    case 2:
      Rows<2>(tail, a_stride, w, o);
      break;
    case 1:
      Rows<1>(tail, a_stride, w, o);
      break;
    default:
      break;
  }
}

FEEDRANK_BF16_TARGET void ReluToBf16(const float* x, int n, int stride, uint16_t* out) {
  const __m512 zero = _mm512_setzero_ps();
  for (size_t i = 0; i < size_t(n) * stride; i += 16) {
    const __m512 v = _mm512_max_ps(_mm512_loadu_ps(x + i), zero);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        (__m256i)_mm512_cvtneps_pbh(v));
  }
}

}  // namespace feedrank::bf16
