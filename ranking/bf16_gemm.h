// The model's layers in bf16: activations and weights rounded to bf16 (a
// float's top 16 bits), products summed in float32 by the CPU's AVX512-BF16
// dot-product instruction (VDPBF16PS: 32 multiply-adds per instruction,
// twice the float32 FMA's). Used by ScoringModel::Predict at
// Precision::kBf16; the float path stays the default.
//
// Thread-safety: PackedWeights is immutable once packed; the functions keep
// no state.
#ifndef FEEDRANK_RANKING_BF16_GEMM_H_
#define FEEDRANK_RANKING_BF16_GEMM_H_

#include <cstdint>
#include <vector>

namespace feedrank {

// The arithmetic of ScoringModel::Predict. kFloat: float32 throughout
// (Eigen). kBf16: each layer's inputs and weights rounded to bf16, products
// summed in float32 (below); about twice the multiply-adds per cycle,
// predictions within the tolerance docs/BENCHMARKS.md measures. Only on a
// CPU with AVX512-BF16 (bf16::Supported()).
enum class Precision { kFloat, kBf16 };

namespace bf16 {

// True when this CPU runs AVX512-BF16 (and so Gemm / ToBf16).
bool Supported();

// A k x m float weight matrix (row-major) and its bias, in the layout Gemm
// reads: for each pair of input rows (2p, 2p + 1), every output column's two
// weights side by side in one 32-bit word; columns padded with zeros to a
// multiple of 16, an odd k with a zero row.
struct PackedWeights {
  int k = 0;                   // inputs
  int m = 0;                   // outputs
  int pairs = 0;               // (k + 1) / 2
  int cols = 0;                // m rounded up to a multiple of 16
  std::vector<uint32_t> data;  // pairs * cols
  std::vector<float> bias;     // cols (zero-padded)
};

PackedWeights Pack(const float* w, const float* bias, int k, int m);

// Rounds n rows of k floats (stride k) to bf16 rows of `stride` values
// (stride >= k rounded up to even; the padding is zeroed).
// REQUIRES: Supported().
void ToBf16(const float* x, int n, int k, int stride, uint16_t* out);

// out (n rows of w.cols floats) = a * W + bias, where a is n rows of bf16
// with `a_stride` values each (>= 2 * w.pairs, zero beyond k).
// REQUIRES: Supported().
void Gemm(const uint16_t* a, int n, int a_stride, const PackedWeights& w, float* out);

// max(x, 0) of n rows of `stride` floats, rounded to bf16 rows of `stride`
// values into `out` (the next layer's input).
// REQUIRES: Supported(), stride % 16 == 0.
void ReluToBf16(const float* x, int n, int stride, uint16_t* out);

}  // namespace bf16
}  // namespace feedrank

#endif  // FEEDRANK_RANKING_BF16_GEMM_H_
