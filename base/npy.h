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
#include "base/env.h"

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
// Errors: those of FileSystem::OpenForRead and Read (NotFound when the file
// is missing, FailedPrecondition when it is not a regular file, ...);
// InvalidArgument for content that is not such an array.
template <typename T>
absl::StatusOr<NpyArray<T>> ReadNpy(FileSystem& fs, const std::string& path, int rank);
template <typename T>
absl::StatusOr<NpyArray<T>> ReadNpy(const std::string& path, int rank) {
  return ReadNpy<T>(*FileSystem::Real(), path, rank);
}

// Writes `data` (prod(shape) elements) to `path` as a version 1.0 .npy file,
// replacing it atomically (WriteFileAtomically).
template <typename T>
absl::Status WriteNpy(FileSystem& fs, const std::string& path, absl::Span<const T> data,
                      const std::vector<int64_t>& shape);
template <typename T>
absl::Status WriteNpy(const std::string& path, absl::Span<const T> data,
                      const std::vector<int64_t>& shape) {
  return WriteNpy<T>(*FileSystem::Real(), path, data, shape);
}

}  // namespace feedrank

#endif  // FEEDRANK_BASE_NPY_H_
