#include "base/simd.h"

namespace feedrank::simd {
namespace internal {
namespace {

DotFn PickDot() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return DotAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return DotAvx2;
  }
  return DotScalar;
}

DotBf16Fn PickDotBf16() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return DotBf16Avx512;
  return DotBf16Scalar;
}

}  // namespace

const DotFn kRuntimeDot = PickDot();
const DotBf16Fn kRuntimeDotBf16 = PickDotBf16();

}  // namespace internal

const char* KernelName() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
  return "avx2";
#else
  if (internal::kRuntimeDot == internal::DotAvx512) return "avx512";
  if (internal::kRuntimeDot == internal::DotAvx2) return "avx2";
  return "scalar";
#endif
}

}  // namespace feedrank::simd
