#include "base/npy.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace feedrank {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

absl::Status Bad(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// Extracts the value text of `key` from the header dict, e.g. for 'descr'
// returns "'<f4'".
absl::StatusOr<std::string> DictValue(const std::string& path, absl::string_view dict,
                                      absl::string_view key) {
  const std::string quoted = absl::StrCat("'", key, "'");
  size_t pos = dict.find(quoted);
  if (pos == absl::string_view::npos) {
    return Bad(path, absl::StrCat("npy header has no ", quoted, " entry"));
  }
  pos = dict.find(':', pos + quoted.size());
  if (pos == absl::string_view::npos) {
    return Bad(path, "malformed npy header");
  }
  absl::string_view rest = absl::StripLeadingAsciiWhitespace(dict.substr(pos + 1));
  size_t end;
  if (!rest.empty() && rest[0] == '(') {
    end = rest.find(')');
    if (end == absl::string_view::npos) return Bad(path, "malformed npy shape");
    return std::string(rest.substr(0, end + 1));
  }
  if (!rest.empty() && rest[0] == '\'') {
    end = rest.find('\'', 1);
    if (end == absl::string_view::npos) return Bad(path, "malformed npy header");
    return std::string(rest.substr(0, end + 1));
  }
  end = rest.find_first_of(",}");
  return std::string(absl::StripTrailingAsciiWhitespace(rest.substr(0, end)));
}

struct Header {
  std::string descr;
  std::vector<int64_t> shape;
  size_t data_offset = 0;
};

// Reads exactly `n` bytes; InvalidArgument `what` when the file ends first.
absl::Status ReadExactly(ReadableFile& file, void* buf, size_t n,
                         absl::string_view what) {
  auto got = file.Read(buf, n);
  if (!got.ok()) return got.status();
  if (*got != n) return Bad(file.path(), what);
  return absl::OkStatus();
}

absl::StatusOr<Header> ParseHeader(ReadableFile& in) {
  const std::string& path = in.path();
  const uint64_t file_size = in.size();
  char prefix[10];
  if (file_size < 10) return Bad(path, "not an .npy file (too short for the npy header)");
  absl::Status read =
      ReadExactly(in, prefix, 10, "not an .npy file (too short for the npy header)");
  if (!read.ok()) return read;
  if (std::memcmp(prefix, kMagic, kMagicLen) != 0) {
    return Bad(path, "not an .npy file (bad magic string)");
  }
  const int major = static_cast<unsigned char>(prefix[6]);
  uint64_t header_len;
  size_t prelude;
  if (major == 1) {
    header_len = static_cast<unsigned char>(prefix[8]) |
                 (static_cast<unsigned char>(prefix[9]) << 8);
    prelude = 10;
  } else if (major == 2 || major == 3) {
    char more[2];
    read = ReadExactly(in, more, 2, "truncated npy header");
    if (!read.ok()) return read;
    header_len = static_cast<uint64_t>(static_cast<unsigned char>(prefix[8])) |
                 static_cast<uint64_t>(static_cast<unsigned char>(prefix[9])) << 8 |
                 static_cast<uint64_t>(static_cast<unsigned char>(more[0])) << 16 |
                 static_cast<uint64_t>(static_cast<unsigned char>(more[1])) << 24;
    prelude = 12;
  } else {
    return Bad(path, absl::StrCat("unsupported npy format version ", major));
  }
  if (prelude + header_len > file_size) return Bad(path, "truncated npy header");
  std::string dict(header_len, '\0');
  read = ReadExactly(in, dict.data(), header_len, "truncated npy header");
  if (!read.ok()) return read;

  Header h;
  h.data_offset = prelude + header_len;
  auto descr = DictValue(path, dict, "descr");
  if (!descr.ok()) return descr.status();
  h.descr = std::string(absl::StripSuffix(absl::StripPrefix(*descr, "'"), "'"));
  auto fortran = DictValue(path, dict, "fortran_order");
  if (!fortran.ok()) return fortran.status();
  if (*fortran != "False") {
    return Bad(path,
               "Fortran-ordered arrays are not supported; save a "
               "C-ordered array (np.ascontiguousarray)");
  }
  auto shape = DictValue(path, dict, "shape");
  if (!shape.ok()) return shape.status();
  absl::string_view inner = absl::StripSuffix(absl::StripPrefix(*shape, "("), ")");
  for (absl::string_view part : absl::StrSplit(inner, ',', absl::SkipWhitespace())) {
    int64_t dim;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &dim) || dim < 0) {
      return Bad(path, absl::StrCat("bad npy shape ", *shape));
    }
    h.shape.push_back(dim);
  }
  return h;
}

template <typename T>
constexpr bool kIsFloat = std::is_floating_point_v<T>;

}  // namespace

template <>
const char* NpyDescr<float>() {
  return "<f4";
}
template <>
const char* NpyDescr<double>() {
  return "<f8";
}
template <>
const char* NpyDescr<int32_t>() {
  return "<i4";
}
template <>
const char* NpyDescr<int64_t>() {
  return "<i8";
}
template <>
const char* NpyDescr<uint64_t>() {
  return "<u8";
}
template <>
const char* NpyDescr<uint8_t>() {
  return "|u1";
}

template <typename T>
absl::StatusOr<NpyArray<T>> ReadNpy(FileSystem& fs, const std::string& path, int rank) {
  auto file = fs.OpenForRead(path);
  if (!file.ok()) return file.status();
  ReadableFile& in = **file;
  const uint64_t file_size = in.size();
  auto header = ParseHeader(in);
  if (!header.ok()) return header.status();

  const std::string want = NpyDescr<T>();
  const std::string& got = header->descr;
  bool signed_as_unsigned = false;
  if (got != want) {
    if (!got.empty() && got[0] == '>') {
      return Bad(path,
                 absl::StrCat("big-endian dtype '", got, "' is not supported; expected '",
                              want, "' (little-endian)"));
    }
    if (std::is_same_v<T, uint64_t> && got == "<i8") {
      signed_as_unsigned = true;
    } else if (std::is_same_v<T, int64_t> && got == "<u8") {
      signed_as_unsigned = true;
    } else {
      // The common case: ids saved as numpy int32 (or another integer).
      const bool ids = std::is_same_v<T, uint64_t> || std::is_same_v<T, int64_t>;
      const bool integer = got.size() >= 2 && (got[1] == 'i' || got[1] == 'u');
      if (ids && integer) {
        return Bad(path,
                   absl::StrCat("dtype is '", got, "', expected '", want,
                                "': 64-bit integers are required; save the array "
                                "with .astype(np.",
                                std::is_same_v<T, uint64_t> ? "uint64" : "int64", ")"));
      }
      return Bad(path, absl::StrCat("dtype is '", got, "', expected '", want, "'"));
    }
  }
  if (rank >= 0 && static_cast<int>(header->shape.size()) != rank) {
    return Bad(path,
               absl::StrCat("array has ", header->shape.size(), " dimensions (shape (",
                            absl::StrJoin(header->shape, ", "), ")), expected ", rank));
  }
  uint64_t count = 1;
  uint64_t bytes = 0;
  bool overflow = false;
  for (int64_t dim : header->shape) {
    overflow |= __builtin_mul_overflow(count, static_cast<uint64_t>(dim), &count);
  }
  overflow |= __builtin_mul_overflow(count, uint64_t{sizeof(T)}, &bytes);
  if (overflow) {
    return Bad(path, absl::StrCat("shape (", absl::StrJoin(header->shape, ", "),
                                  ") is too large"));
  }
  const uint64_t available = file_size - header->data_offset;
  if (available < bytes) {
    return Bad(path,
               absl::StrCat("truncated: shape (", absl::StrJoin(header->shape, ", "),
                            ") needs ", bytes, " bytes of data, file has ", available));
  }
  if (available > bytes) {
    return Bad(
        path, absl::StrCat("has ", available - bytes, " bytes after the data for shape (",
                           absl::StrJoin(header->shape, ", "), ")"));
  }
  NpyArray<T> array;
  array.shape = header->shape;
  array.data.resize(count);
  if (count > 0) {
    absl::Status read = ReadExactly(in, array.data.data(), bytes, "truncated data");
    if (!read.ok()) return read;
  }
  if constexpr (kIsFloat<T>) {
    for (uint64_t i = 0; i < count; ++i) {
      if (!std::isfinite(array.data[i])) {
        return Bad(path, absl::StrCat("element ", i, " (row ",
                                      i / std::max<int64_t>(1, array.cols()), ") is ",
                                      array.data[i], "; NaN and Inf are not allowed"));
      }
    }
  }
  if (signed_as_unsigned) {
    for (uint64_t i = 0; i < count; ++i) {
      if (static_cast<int64_t>(array.data[i]) < 0) {
        return Bad(path, absl::StrCat("dtype '", got, "': element ", i, " does not fit '",
                                      want, "'"));
      }
    }
  }
  return array;
}

template <typename T>
absl::Status WriteNpy(FileSystem& fs, const std::string& path, absl::Span<const T> data,
                      const std::vector<int64_t>& shape) {
  uint64_t count = 1;
  for (int64_t dim : shape) count *= static_cast<uint64_t>(dim);
  if (count != data.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": shape (", absl::StrJoin(shape, ", "), ") does not match ",
                     data.size(), " elements"));
  }
  std::string shape_text = absl::StrJoin(shape, ", ");
  if (shape.size() == 1) shape_text += ",";
  std::string dict =
      absl::StrCat("{'descr': '", NpyDescr<T>(), "', 'fortran_order': False, 'shape': (",
                   shape_text, "), }");
  // Pad with spaces so that magic + header is a multiple of 64 bytes.
  const size_t unpadded = 10 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict.push_back('\n');
  if (dict.size() > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": npy header too long"));
  }
  std::string head(kMagic, kMagicLen);
  head.push_back(1);
  head.push_back(0);
  head.push_back(static_cast<char>(dict.size() & 0xff));
  head.push_back(static_cast<char>(dict.size() >> 8));
  head.append(dict);
  const absl::string_view body(reinterpret_cast<const char*>(data.data()),
                               data.size() * sizeof(T));
  return WriteFileAtomically(fs, path, {head, body});
}

#define FEEDRANK_NPY_INSTANTIATE(T)                                                      \
  template absl::StatusOr<NpyArray<T>> ReadNpy<T>(FileSystem&, const std::string&, int); \
  template absl::Status WriteNpy<T>(FileSystem&, const std::string&,                     \
                                    absl::Span<const T>, const std::vector<int64_t>&);
FEEDRANK_NPY_INSTANTIATE(float)
FEEDRANK_NPY_INSTANTIATE(double)
FEEDRANK_NPY_INSTANTIATE(int32_t)
FEEDRANK_NPY_INSTANTIATE(int64_t)
FEEDRANK_NPY_INSTANTIATE(uint64_t)
FEEDRANK_NPY_INSTANTIATE(uint8_t)
#undef FEEDRANK_NPY_INSTANTIATE

}  // namespace feedrank
