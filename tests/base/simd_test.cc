#include "base/simd.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace feedrank::simd {
namespace {

using ::testing::AnyOf;
using ::testing::StrEq;

constexpr size_t kMaxDim = 130;  // covers every tail length of 4, 8, 16, 32

struct Kernel {
  const char* name;
  internal::DotFn fn;
};

// Every kernel this CPU can run, plus the inlined Dot itself.
std::vector<Kernel> RunnableKernels() {
  __builtin_cpu_init();
  std::vector<Kernel> kernels = {
      {"Dot", [](const float* a, const float* b, size_t d) { return Dot(a, b, d); }},
      {"runtime", internal::kRuntimeDot},
      {"scalar", internal::DotScalar},
  };
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    kernels.push_back({"avx2", internal::DotAvx2});
  }
  if (__builtin_cpu_supports("avx512f")) {
    kernels.push_back({"avx512", internal::DotAvx512});
  }
  return kernels;
}

std::vector<float> Random(size_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

TEST(SimdTest, KernelNameIsKnownAndSupportedByThisCpu) {
  const std::string name = KernelName();
  EXPECT_THAT(name, AnyOf(StrEq("avx512"), StrEq("avx2"), StrEq("scalar")));
  __builtin_cpu_init();
  if (name == "avx512") {
    EXPECT_TRUE(__builtin_cpu_supports("avx512f"));
  }
  if (name == "avx2") {
    EXPECT_TRUE(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
  }
}

TEST(SimdTest, RuntimeDispatchPicksTheWidestSupportedKernel) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    EXPECT_EQ(internal::kRuntimeDot, internal::DotAvx512);
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    EXPECT_EQ(internal::kRuntimeDot, internal::DotAvx2);
  } else {
    EXPECT_EQ(internal::kRuntimeDot, internal::DotScalar);
  }
}

TEST(SimdTest, DotMatchesDoubleReferenceForEveryLength) {
  std::mt19937_64 rng(7);
  for (const Kernel& kernel : RunnableKernels()) {
    SCOPED_TRACE(kernel.name);
    for (size_t d = 1; d <= kMaxDim; ++d) {
      for (int trial = 0; trial < 4; ++trial) {
        // Misaligned on purpose (offset 1 float) for half the trials.
        const size_t offset = trial % 2;
        std::vector<float> a = Random(d + offset, rng);
        std::vector<float> b = Random(d + offset, rng);
        double ref = 0, magnitude = 0;
        for (size_t i = 0; i < d; ++i) {
          ref += double(a[offset + i]) * b[offset + i];
          magnitude += std::abs(double(a[offset + i]) * b[offset + i]);
        }
        const float got = kernel.fn(a.data() + offset, b.data() + offset, d);
        // Relative to sum |a_i b_i|: a signed sum can cancel to ~0, where
        // float rounding of the terms alone exceeds 1e-4 of the result.
        EXPECT_NEAR(got, ref, 1e-4 * magnitude) << "d=" << d;
      }
    }
  }
}

TEST(SimdTest, DotOfPositiveVectorsIsWithinRelative1e4) {
  std::mt19937_64 rng(8);
  std::uniform_real_distribution<float> uniform(0.1f, 2.f);
  for (const Kernel& kernel : RunnableKernels()) {
    SCOPED_TRACE(kernel.name);
    for (size_t d = 1; d <= kMaxDim; ++d) {
      std::vector<float> a(d), b(d);
      for (size_t i = 0; i < d; ++i) {
        a[i] = uniform(rng);
        b[i] = uniform(rng);
      }
      double ref = 0;
      for (size_t i = 0; i < d; ++i) ref += double(a[i]) * b[i];
      EXPECT_NEAR(kernel.fn(a.data(), b.data(), d), ref, 1e-4 * ref) << "d=" << d;
    }
  }
}

TEST(SimdTest, EveryLaneContributes) {
  // One non-zero term at each position: a dropped or doubled lane shows
  // as an exact mismatch.
  for (const Kernel& kernel : RunnableKernels()) {
    SCOPED_TRACE(kernel.name);
    for (size_t d = 1; d <= kMaxDim; ++d) {
      std::vector<float> a(d, 0.f), b(d, 1.f);
      for (size_t j = 0; j < d; ++j) {
        a[j] = 3.f + float(j);
        b[j] = 0.5f;
        ASSERT_EQ(kernel.fn(a.data(), b.data(), d), (3.f + float(j)) * 0.5f)
            << "d=" << d << " j=" << j;
        a[j] = 0.f;
        b[j] = 1.f;
      }
    }
  }
}

TEST(SimdTest, ZeroLengthIsZero) {
  const float a[1] = {5.f};
  for (const Kernel& kernel : RunnableKernels()) {
    EXPECT_EQ(kernel.fn(a, a, 0), 0.f) << kernel.name;
  }
}

TEST(SimdTest, DotDoesNotReadPastTheEnd) {
  // Each vector ends exactly where an inaccessible page begins, so any read
  // beyond element d - 1 faults.
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  auto guarded = [&]() {
    void* p = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    EXPECT_EQ(mprotect(static_cast<char*>(p) + page, page, PROT_NONE), 0);
    return static_cast<char*>(p);
  };
  char* region_a = guarded();
  char* region_b = guarded();
  float* end_a = reinterpret_cast<float*>(region_a + page);
  float* end_b = reinterpret_cast<float*>(region_b + page);
  std::mt19937_64 rng(9);
  for (const Kernel& kernel : RunnableKernels()) {
    SCOPED_TRACE(kernel.name);
    for (size_t d = 1; d <= kMaxDim; ++d) {
      float* a = end_a - d;
      float* b = end_b - d;
      std::vector<float> va = Random(d, rng), vb = Random(d, rng);
      std::copy(va.begin(), va.end(), a);
      std::copy(vb.begin(), vb.end(), b);
      double ref = 0, magnitude = 0;
      for (size_t i = 0; i < d; ++i) {
        ref += double(a[i]) * b[i];
        magnitude += std::abs(double(a[i]) * b[i]);
      }
      EXPECT_NEAR(kernel.fn(a, b, d), ref, 1e-4 * magnitude) << "d=" << d;
    }
  }
  munmap(region_a, 2 * page);
  munmap(region_b, 2 * page);
}

TEST(SimdTest, DotRowsEqualsDotPerRow) {
  std::mt19937_64 rng(10);
  for (size_t d : {1, 3, 8, 15, 16, 17, 31, 32, 33, 64, 100, 130}) {
    for (size_t n : {0, 1, 2, 5, 16, 37, 48}) {
      const std::vector<float> q = Random(d, rng);
      const std::vector<float> rows = Random(n * d, rng);
      std::vector<float> out(n + 1, -12345.f);
      DotRows(q.data(), rows.data(), n, d, out.data());
      for (size_t i = 0; i < n; ++i) {
        EXPECT_EQ(out[i], Dot(q.data(), rows.data() + i * d, d)) << d << " " << i;
      }
      EXPECT_EQ(out[n], -12345.f) << "wrote past n";
    }
  }
}

TEST(SimdTest, DotGatherEqualsDotPerRow) {
  std::mt19937_64 rng(11);
  constexpr size_t kBase = 300;
  for (size_t d : {1, 7, 16, 32, 33, 130}) {
    const std::vector<float> q = Random(d, rng);
    const std::vector<float> base = Random(kBase * d, rng);
    // Short lists (below the prefetch distance), repeats, first and last row.
    for (size_t n : {0, 1, 3, 4, 5, 64, 500}) {
      std::vector<int32_t> ids(n);
      for (size_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>(rng() % kBase);
      if (n >= 2) {
        ids[0] = 0;
        ids[n - 1] = kBase - 1;
      }
      std::vector<float> out(n + 1, -12345.f);
      DotGather(q.data(), base.data(), ids.data(), n, d, out.data());
      for (size_t i = 0; i < n; ++i) {
        EXPECT_EQ(out[i], Dot(q.data(), base.data() + size_t(ids[i]) * d, d))
            << d << " " << i;
      }
      EXPECT_EQ(out[n], -12345.f) << "wrote past n";
    }
  }
}

TEST(SimdTest, FloatToBf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16(-2.0f), 0xc000);
  EXPECT_EQ(FloatToBf16(0.0f), 0x0000);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: to the even one, 1.
  EXPECT_EQ(FloatToBf16(1.0f + 1.0f / 256), 0x3f80);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: to the even one.
  EXPECT_EQ(FloatToBf16(1.0f + 3.0f / 256), 0x3f82);
  // Just above halfway rounds up.
  EXPECT_EQ(FloatToBf16(1.0f + 1.0f / 256 + 1.0f / 4096), 0x3f81);
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::nanf("")))));
  // Round trip: within half a unit in the 8th bit.
  std::mt19937_64 rng(12);
  for (float x : Random(1000, rng)) {
    EXPECT_NEAR(Bf16ToFloat(FloatToBf16(x)), x, std::abs(x) / 256) << x;
  }
}

TEST(SimdTest, DotBf16IsTheFloatDotOfTheRoundedRow) {
  std::mt19937_64 rng(13);
  for (size_t d = 1; d <= kMaxDim; ++d) {
    const std::vector<float> q = Random(d, rng), x = Random(d, rng);
    std::vector<uint16_t> h(d);
    double ref = 0, magnitude = 0;
    for (size_t i = 0; i < d; ++i) {
      h[i] = FloatToBf16(x[i]);
      ref += double(q[i]) * Bf16ToFloat(h[i]);
      magnitude += std::abs(double(q[i]) * x[i]);
    }
    EXPECT_NEAR(DotBf16(q.data(), h.data(), d), ref, 1e-5 * magnitude) << "d=" << d;
    EXPECT_NEAR(internal::DotBf16Scalar(q.data(), h.data(), d), ref, 1e-5 * magnitude)
        << "d=" << d;
  }
}

TEST(SimdTest, DotRowsBf16EqualsDotBf16PerRow) {
  std::mt19937_64 rng(14);
  for (size_t d : {1, 15, 16, 17, 32, 64, 100, 128}) {
    for (size_t n : {0, 1, 15, 16, 17, 40}) {
      const std::vector<float> q = Random(d, rng);
      std::vector<uint16_t> rows(n * d);
      for (uint16_t& v : rows) v = FloatToBf16(std::normal_distribution<float>()(rng));
      std::vector<float> out(n + 1, -12345.f);
      DotRowsBf16(q.data(), rows.data(), n, d, out.data());
      for (size_t i = 0; i < n; ++i) {
        EXPECT_EQ(out[i], DotBf16(q.data(), rows.data() + i * d, d)) << d << " " << i;
      }
      EXPECT_EQ(out[n], -12345.f) << "wrote past n";
    }
  }
}

}  // namespace
}  // namespace feedrank::simd
