// .npy files (base/npy.h): the header's dict, shape, dtype and the payload's
// size, for each element type a bundle uses, at rank 1 and 2.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "base/npy.h"
#include "fuzz/fuzz_util.h"

namespace {

// What ReadNpy promises for an array it returns: the shape has `rank`
// non-negative dimensions and the data their product of elements.
template <typename T>
void Check(const absl::StatusOr<feedrank::NpyArray<T>>& array, int rank) {
  if (!array.ok()) return;
  if (static_cast<int>(array->shape.size()) != rank) std::abort();
  int64_t n = 1;
  for (int64_t d : array->shape) {
    if (d < 0) std::abort();
    n *= d;
  }
  if (n != static_cast<int64_t>(array->data.size())) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using feedrank::ReadNpy;
  const std::string path =
      feedrank::fuzz::WriteInput("input.npy", feedrank::fuzz::AsView(data, size));
  for (int rank : {1, 2}) {
    Check(ReadNpy<float>(path, rank), rank);
    Check(ReadNpy<double>(path, rank), rank);
    Check(ReadNpy<int32_t>(path, rank), rank);
    Check(ReadNpy<int64_t>(path, rank), rank);
  }
  return 0;
}
