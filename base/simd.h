// Inner-product kernels for float32 vectors: the distance of every retrieval
// path (HNSW, IVF, exact scan). With -march=native or x86-64-v3 the widest
// kernel the compiler may use is inlined; a portable build picks the widest
// one the CPU supports once at start-up. All functions are thread-safe.
#ifndef FEEDRANK_BASE_SIMD_H_
#define FEEDRANK_BASE_SIMD_H_

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace feedrank::simd {

// Name of the kernel in use: "avx512", "avx2" or "scalar".
const char* KernelName();

namespace internal {

inline float Bf16ToFloat(uint16_t h) {
  const uint32_t bits = uint32_t{h} << 16;
  float f;
  __builtin_memcpy(&f, &bits, sizeof f);
  return f;
}

// A row value as a float: rows are float32 or bf16.
inline float Widen(float x) { return x; }
inline float Widen(uint16_t x) { return Bf16ToFloat(x); }

template <typename T>
inline float DotScalarOf(const float* a, const T* b, size_t d) {
  float acc[4] = {0, 0, 0, 0};
  size_t i = 0;
  for (; i + 4 <= d; i += 4) {
    acc[0] += a[i] * Widen(b[i]);
    acc[1] += a[i + 1] * Widen(b[i + 1]);
    acc[2] += a[i + 2] * Widen(b[i + 2]);
    acc[3] += a[i + 3] * Widen(b[i + 3]);
  }
  for (; i < d; ++i) acc[0] += a[i] * Widen(b[i]);
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

inline float DotScalar(const float* a, const float* b, size_t d) {
  return DotScalarOf(a, b, d);
}

__attribute__((target("avx2,fma"))) inline float DotAvx2(const float* a, const float* b,
                                                         size_t d) {
  __m256 acc0 = _mm256_setzero_ps();
  __m256 acc1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= d; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= d; i += 8) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  }
  acc0 = _mm256_add_ps(acc0, acc1);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  float sum = _mm_cvtss_f32(s);
  for (; i < d; ++i) sum += a[i] * b[i];
  return sum;
}

// 16 row values as floats (a bf16 is the top half of a float).
__attribute__((target("avx512f"))) inline __m512 Load16(const float* x) {
  return _mm512_loadu_ps(x);
}
__attribute__((target("avx512f"))) inline __m512 Load16(const uint16_t* x) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Float query `a`, row `b` of float32 or bf16 values; products and sums in
// float, so a bf16 row's only error is its rounding.
template <typename T>
__attribute__((target("avx512f"))) inline float DotAvx512Of(const float* a, const T* b,
                                                            size_t d) {
  __m512 acc0 = _mm512_setzero_ps();
  __m512 acc1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= d; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), Load16(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), Load16(b + i + 16), acc1);
  }
  for (; i + 16 <= d; i += 16) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), Load16(b + i), acc0);
  }
  if (i < d) {
    const __mmask16 m = static_cast<__mmask16>((1u << (d - i)) - 1);
    __m512 tail;
    if constexpr (std::is_same_v<T, float>) {
      tail = _mm512_maskz_loadu_ps(m, b + i);
    } else {
      // A masked 16-bit load needs AVX512-BW: widen a zero-padded copy.
      T padded[16] = {};
      for (size_t j = i; j < d; ++j) padded[j - i] = b[j];
      tail = Load16(padded);
    }
    acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), tail, acc1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

__attribute__((target("avx512f"))) inline float DotAvx512(const float* a, const float* b,
                                                          size_t d) {
  return DotAvx512Of(a, b, d);
}

using DotFn = float (*)(const float*, const float*, size_t);
extern const DotFn kRuntimeDot;

inline float DotBf16Scalar(const float* q, const uint16_t* x, size_t d) {
  return DotScalarOf(q, x, d);
}

__attribute__((target("avx512f"))) inline float DotBf16Avx512(const float* q,
                                                              const uint16_t* x,
                                                              size_t d) {
  return DotAvx512Of(q, x, d);
}

using DotBf16Fn = float (*)(const float*, const uint16_t*, size_t);
extern const DotBf16Fn kRuntimeDotBf16;

}  // namespace internal

// Sum of a[i] * b[i] for i < d.
inline float Dot(const float* a, const float* b, size_t d) {
#if defined(__AVX512F__)
  return internal::DotAvx512(a, b, d);
#elif defined(__AVX2__) && defined(__FMA__)
  return internal::DotAvx2(a, b, d);
#else
  return internal::kRuntimeDot(a, b, d);
#endif
}

// out[i] = Dot(q, rows + i * d, d) for i < n. `rows`: size n * d.
inline void DotRows(const float* q, const float* rows, size_t n, size_t d, float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = Dot(q, rows + i * d, d);
}

// bf16 ("brain float": a float's sign, exponent and top 7 mantissa bits)
// of `f`, rounded to nearest even; NaN stays NaN.
inline uint16_t FloatToBf16(float f) {
  uint32_t bits;
  __builtin_memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}
inline float Bf16ToFloat(uint16_t h) { return internal::Bf16ToFloat(h); }

// Sum of q[i] * x[i] for i < d, with x in bf16 and q in float (accumulated
// in float). Half the memory of Dot per row.
inline float DotBf16(const float* q, const uint16_t* x, size_t d) {
#if defined(__AVX512F__)
  return internal::DotBf16Avx512(q, x, d);
#else
  return internal::kRuntimeDotBf16(q, x, d);
#endif
}

// out[i] = DotBf16(q, rows + i * d, d) for i < n.
inline void DotRowsBf16(const float* q, const uint16_t* rows, size_t n, size_t d,
                        float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = DotBf16(q, rows + i * d, d);
}

// out[i] = Dot(q, base + ids[i] * d, d) for i < n, prefetching the rows a
// few ids ahead (the rows are scattered in memory).
inline void DotGather(const float* q, const float* base, const int32_t* ids, size_t n,
                      size_t d, float* out) {
  constexpr size_t kAhead = 4;
  for (size_t i = 0; i < n && i < kAhead; ++i) {
    __builtin_prefetch(base + static_cast<size_t>(ids[i]) * d);
  }
  for (size_t i = 0; i < n; ++i) {
    if (i + kAhead < n) {
      const float* next = base + static_cast<size_t>(ids[i + kAhead]) * d;
      for (size_t off = 0; off < d; off += 16) __builtin_prefetch(next + off);
    }
    out[i] = Dot(q, base + static_cast<size_t>(ids[i]) * d, d);
  }
}

}  // namespace feedrank::simd

#endif  // FEEDRANK_BASE_SIMD_H_
