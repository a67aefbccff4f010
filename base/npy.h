// Reading and writing NumPy .npy files (format versions 1.0-3.0), the array
// format of bundles. Only little-endian, C-ordered arrays of the dtypes below
// are accepted; every refusal names the file and the problem.
#ifndef FEEDRANK_BASE_NPY_H_
#define FEEDRANK_BASE_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace feedrank {

// A dense C-ordered array: `data` holds prod(shape) elements.
template <typename T>
struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<T> data;

  int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  int64_t cols() const { return shape.size() < 2 ? 1 : shape[1]; }
};

// The numpy dtype string for T, e.g. "<f4" for float.
template <typename T>
const char* NpyDescr();

// Reads `path`. The file's dtype must be T's, with two conveniences for
// arrays written by default numpy settings: int64 ('<i8') is accepted for a
// uint64 array when no value is negative, and for an int64 array any integer
// dtype of 8 bytes. `rank` is the required number of dimensions (-1 = any).
// Float arrays are checked for NaN and Inf.
// Errors: NotFound when the file is missing; InvalidArgument otherwise.
template <typename T>
absl::StatusOr<NpyArray<T>> ReadNpy(const std::string& path, int rank);

// Writes `data` (prod(shape) elements) to `path` as a version 1.0 .npy file,
// replacing it.
template <typename T>
absl::Status WriteNpy(const std::string& path, absl::Span<const T> data,
                      const std::vector<int64_t>& shape);

}  // namespace feedrank

#endif  // FEEDRANK_BASE_NPY_H_
